package config

import (
	"fmt"
	"net/netip"
	"slices"
)

// bgpScheduling warns of a service on a BGP-announced VIP whose IPVS
// scheduler does not pick a real server from the flow alone: when the
// router's ECMP moves a flow to another node, that node picks anew and
// the connection breaks. nftables needs no warning (its Maglev lookup is
// the same on every node).
func (v *validator) bgpScheduling() {
	c := v.c
	if !c.BGP.Enabled() || (c.Dataplane != "auto" && c.Dataplane != "ipvs") {
		return
	}
	announced := c.BGPVIPs()
	for i, s := range c.Services {
		if s.Scheduler == "mh" || s.Scheduler == "sh" {
			continue
		}
		j := slices.IndexFunc(s.VIPs, func(a netip.Addr) bool { return slices.Contains(announced, a) })
		if j < 0 {
			continue
		}
		p := fmt.Sprintf("services[%d].scheduler", i)
		v.warnf(p, "%s: %s on BGP-announced VIP %s: with dataplane ipvs (auto picks it when the kernel has IPVS), "+
			"a flow the router's ECMP moves to another node is sent there to another real server, and breaks, "+
			"unless the scheduler is mh with scheduler_flags [mh-port]; halb changes no scheduler itself "+
			"(it only sets net.ipv4.vs.sloppy_tcp and sloppy_sctp): choose mh, or dataplane nftables", p, s.Scheduler, s.VIPs[j])
	}
}
