package vrrp

import (
	"errors"
	"slices"

	"halb/internal/config"
	"halb/internal/netif"
)

// routing is a set of routes and rules halb adds and removes together.
type routing struct {
	routes []netif.Route
	rules  []netif.Rule
}

func (rt routing) empty() bool { return len(rt.routes) == 0 && len(rt.rules) == 0 }

// routingOf converts configured routes and rules.
func routingOf(routes []config.Route, rules []config.Rule) routing {
	var rt routing
	for _, r := range routes {
		rt.routes = append(rt.routes, netif.Route{To: r.To, Via: r.Via, Dev: r.Dev, Src: r.Src, Table: r.Table,
			Metric: r.Metric, Scope: r.Scope, Type: r.Type, Protocol: r.ProtocolNumber()})
	}
	for _, r := range rules {
		rt.rules = append(rt.rules, netif.Rule{From: r.From, To: r.To, Table: r.Table, Priority: r.Priority,
			Mark: r.FWMark, IIF: r.IIF, OIF: r.OIF, IPv6: r.Family == 6})
	}
	return rt
}

// AddRouting adds routes, then rules (netif).
func (kernelNet) AddRouting(routes []netif.Route, rules []netif.Rule) error {
	var errs []error
	for _, r := range routes {
		errs = append(errs, netif.AddRoute(r))
	}
	for _, r := range rules {
		errs = append(errs, netif.AddRule(r))
	}
	return errors.Join(errs...)
}

// RemoveRouting removes rules, then routes (netif).
func (kernelNet) RemoveRouting(routes []netif.Route, rules []netif.Rule) error {
	var errs []error
	for _, r := range rules {
		errs = append(errs, netif.RemoveRule(r))
	}
	for _, r := range routes {
		errs = append(errs, netif.RemoveRoute(r))
	}
	return errors.Join(errs...)
}

// staticSets groups the static addresses by interface.
func staticSets(s config.Static) []vipSet {
	var sets []vipSet
	for _, o := range s.Addresses {
		a := netif.Address{Prefix: o.Address, Scope: o.Scope, Label: o.Label, Broadcast: o.Broadcast}
		i := 0
		for i < len(sets) && sets[i].dev != o.Dev {
			i++
		}
		if i == len(sets) {
			sets = append(sets, vipSet{dev: o.Dev})
		}
		sets[i].addrs = append(sets[i].addrs, a)
	}
	return sets
}

// static holds what vrrp.static adds while halb runs.
type static struct {
	sets []vipSet
	rt   routing
}

func staticOf(cfg *config.Config) static {
	if cfg == nil {
		return static{}
	}
	s := cfg.VRRP.Static
	return static{sets: staticSets(s), rt: routingOf(s.Routes, s.Rules)}
}

// setStatic replaces the static addresses, routes and rules of old by
// those of cfg, when they differ; it runs the changes on netq.
func (r *runner) setStatic(old, cfg *config.Config) {
	var before config.Static
	if old != nil {
		before = old.VRRP.Static
	}
	if staticEqual(before, cfg.VRRP.Static) && old != nil {
		return
	}
	was, now := staticOf(old), staticOf(cfg)
	in := config.Instance{Name: "(static)"}
	r.netq <- func() {
		r.removeStatic(was)
		if !r.addVIPs(in, now.sets) {
			return
		}
		if now.rt.empty() {
			return
		}
		if err := r.net.AddRouting(now.rt.routes, now.rt.rules); err != nil {
			r.log.Error("adding static routes or rules failed", "err", err)
		}
	}
}

// removeStatic removes what st added, logging failures.
func (r *runner) removeStatic(st static) {
	r.removeRouting(config.Instance{Name: "(static)"}, st.rt, "removing static routes or rules failed")
	r.removeVIPs(config.Instance{Name: "(static)"}, st.sets, "removing static addresses failed")
}

func staticEqual(a, b config.Static) bool {
	return slices.Equal(a.Addresses, b.Addresses) && slices.Equal(a.Routes, b.Routes) && slices.Equal(a.Rules, b.Rules)
}

// removeRouting removes rt of instance in, logging a failure as what.
func (r *runner) removeRouting(in config.Instance, rt routing, what string) {
	if rt.empty() {
		return
	}
	if err := r.net.RemoveRouting(rt.routes, rt.rules); err != nil {
		r.log.Error(what, "instance", in.Name, "err", err)
	}
}
