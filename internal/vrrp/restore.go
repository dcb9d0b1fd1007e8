package vrrp

import (
	"fmt"

	"halb/internal/netif"
	"halb/internal/vrrp/fsm"
)

// addrChange puts back a VIP that was removed from its interface (by
// hand, or by another program) while its instance is master, announces
// it, and reports it.
func (r *runner) addrChange(ac netif.AddrChange) {
	if !ac.Removed {
		return
	}
	for _, ins := range r.instances {
		if ins.m.State != fsm.Master {
			continue
		}
		in := ins.cfg
		for _, s := range ins.sets {
			if s.dev != ac.Ifname {
				continue
			}
			for _, a := range s.addrs {
				if a.Prefix.Addr() != ac.Prefix.Addr() {
					continue
				}
				r.log.Warn("VIP removed from its interface while master; putting it back", "instance", in.Name,
					"vip", a.Prefix, "interface", s.dev)
				back := []vipSet{{dev: s.dev, addrs: []netif.Address{a}}}
				r.netq <- func() {
					if r.addVIPs(in, back) {
						r.announce(in, back, in.GARP.Count)
					}
				}
				r.notice(ins, fmt.Sprintf("VIP %s was removed from %s while master; put back", a.Prefix, s.dev), r.clock.Now())
			}
		}
	}
}
