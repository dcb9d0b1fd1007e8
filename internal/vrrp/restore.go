package vrrp

import (
	"fmt"
	"net/netip"

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
		in := ins.cfg
		if ins.m.State != fsm.Master || in.Interface != ac.Ifname {
			continue
		}
		for _, vip := range in.VIPs {
			if vip.Addr() != ac.Prefix.Addr() {
				continue
			}
			r.log.Warn("VIP removed from its interface while master; putting it back", "instance", in.Name,
				"vip", vip, "interface", in.Interface)
			r.netq <- func() {
				if err := r.net.AddAddrs(in.Interface, []netip.Prefix{vip}); err != nil {
					r.log.Error("putting back a VIP failed", "instance", in.Name, "vip", vip, "err", err)
					return
				}
				r.announce(in, []netip.Addr{vip.Addr()}, in.GARP.Count)
			}
			r.notice(ins, fmt.Sprintf("VIP %s was removed from %s while master; put back", vip, in.Interface), r.clock.Now())
		}
	}
}
