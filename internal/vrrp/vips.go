package vrrp

import (
	"net/netip"
	"slices"

	"halb/internal/config"
	"halb/internal/netif"
)

// vipSet is the VIPs of an instance that go on one interface.
type vipSet struct {
	dev   string
	addrs []netif.Address
}

// vipSets groups an instance's VIPs by interface, the instance's own
// (or its virtual MAC interface) first, with their options.
func vipSets(in config.Instance) []vipSet {
	first := in.Interface
	if in.VMAC {
		first = in.VMACName
	}
	sets := []vipSet{{dev: first}}
	for _, v := range in.VIPs {
		a := netif.Address{Prefix: v}
		if o, ok := in.VIPOption(v.Addr()); ok {
			a.Scope, a.Label, a.Broadcast = o.Scope, o.Label, o.Broadcast
		}
		dev := in.VIPDev(v)
		if in.VMAC && dev == in.Interface {
			dev = in.VMACName
		}
		i := 0
		for i < len(sets) && sets[i].dev != dev {
			i++
		}
		if i == len(sets) {
			sets = append(sets, vipSet{dev: dev})
		}
		sets[i].addrs = append(sets[i].addrs, a)
	}
	return sets
}

// srcDev is the interface whose address adverts are sent from: the
// instance's own, but for IPv6 the one they go out of (a link-local
// address belongs to its interface).
func srcDev(in config.Instance, sockDev string, fam int) string {
	if fam == 6 {
		return sockDev
	}
	return in.Interface
}

func (s vipSet) prefixes() []netip.Prefix {
	out := make([]netip.Prefix, len(s.addrs))
	for i, a := range s.addrs {
		out[i] = a.Prefix
	}
	return out
}

func (s vipSet) ips() []netip.Addr {
	out := make([]netip.Addr, len(s.addrs))
	for i, a := range s.addrs {
		out[i] = a.Prefix.Addr()
	}
	return out
}

// addVIPs adds the VIPs of sets; it runs on netq.
func (r *runner) addVIPs(in config.Instance, sets []vipSet) bool {
	for _, s := range sets {
		if len(s.addrs) == 0 {
			continue
		}
		if err := r.net.AddAddrs(s.dev, s.addrs); err != nil {
			r.log.Error("adding VIPs failed", "instance", in.Name, "interface", s.dev, "err", err)
			return false
		}
	}
	return true
}

// removeVIPs removes the VIPs of sets, logging failures as what.
func (r *runner) removeVIPs(in config.Instance, sets []vipSet, what string) {
	for _, s := range sets {
		if len(s.addrs) == 0 {
			continue
		}
		if err := r.net.RemoveAddrs(s.dev, s.prefixes()); err != nil {
			r.log.Error(what, "instance", in.Name, "interface", s.dev, "err", err)
		}
	}
}

// announce sends count announcements of the VIPs of sets, each on its
// interface; it runs on netq.
func (r *runner) announce(in config.Instance, sets []vipSet, count int) {
	for range count {
		for _, s := range sets {
			if len(s.addrs) == 0 {
				continue
			}
			if err := r.net.Announce(s.dev, s.ips()); err != nil {
				r.log.Warn("announcing VIPs failed", "instance", in.Name, "interface", s.dev, "err", err)
				return
			}
		}
	}
}

// setNoAccept drops (master) or accepts again the packets to the VIPs of
// an instance with no_accept; it queues the kernel's change on netq.
func (r *runner) setNoAccept(ins *instance, master bool) {
	if !ins.cfg.NoAccept {
		return
	}
	if r.noAccept == nil {
		r.noAccept = map[string][]netip.Addr{}
	}
	delete(r.noAccept, ins.cfg.Name)
	if master {
		for _, v := range ins.cfg.VIPs {
			r.noAccept[ins.cfg.Name] = append(r.noAccept[ins.cfg.Name], v.Addr())
		}
	}
	var all []netip.Addr
	for _, addrs := range r.noAccept {
		all = append(all, addrs...)
	}
	slices.SortFunc(all, netip.Addr.Compare)
	all = slices.Compact(all)
	if slices.Equal(all, r.dropped) {
		return
	}
	r.dropped = all
	r.netq <- func() {
		if err := r.net.SetDropped(all); err != nil {
			r.log.Error("no_accept: dropping packets to VIPs failed", "err", err)
		}
	}
}
