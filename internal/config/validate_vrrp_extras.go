package config

import (
	"fmt"
	"slices"
)

// instanceExtras checks the settings of an instance that follow
// keepalived's less common keywords.
func (v *validator) instanceExtras(p string, in Instance) {
	if in.GARP.LowerPriorityCount < 0 {
		v.errorAt(p+".garp.lower_priority_count", "must not be negative")
	}
	if in.GARP.LowerPriorityDelay < 0 {
		v.errorAt(p+".garp.lower_priority_delay", "must not be negative")
	}
	v.routes(p+".routes", in.Routes)
	v.rules(p+".rules", in.Rules)
	if in.VMAC && (len(in.VMACName) > 15 || in.VMACName == in.Interface) {
		v.errorAt(p+".vmac_name", "%q is not a name for a new interface (at most 15 characters)", in.VMACName)
	}
	for j, vip := range in.VIPs {
		o, ok := in.VIPOption(vip.Addr())
		if !ok {
			continue
		}
		vp := fmt.Sprintf("%s.vips[%d]", p, j)
		if !slices.Contains(scopeNames, o.Scope) {
			v.errorAt(vp+".scope", "%q is not global, site, link, host or nowhere", o.Scope)
		}
		if o.Broadcast.IsValid() && (!o.Broadcast.Is4() || !vip.Addr().Is4()) {
			v.errorAt(vp+".broadcast", "a broadcast address is IPv4, for an IPv4 address")
		}
		if len(o.Label) > 15 {
			v.errorAt(vp+".label", "%q is longer than 15 characters", o.Label)
		}
	}
}

var scopeNames = []string{"", "global", "site", "link", "host", "nowhere"}

// routes checks routes at path p ("….routes").
func (v *validator) routes(p string, routes []Route) {
	for i, r := range routes {
		rp := fmt.Sprintf("%s[%d]", p, i)
		if !r.To.IsValid() {
			v.errorAt(rp, "a route needs to (a destination such as 0.0.0.0/0)")
			continue
		}
		if r.Via.IsValid() && r.Via.Is4() != r.To.Addr().Is4() {
			v.errorAt(rp+".via", "%s is not of the destination's address family", r.Via)
		}
		if r.Src.IsValid() && r.Src.Is4() != r.To.Addr().Is4() {
			v.errorAt(rp+".src", "%s is not of the destination's address family", r.Src)
		}
		if !slices.Contains(scopeNames, r.Scope) {
			v.errorAt(rp+".scope", "%q is not global, site, link, host or nowhere", r.Scope)
		}
		if !slices.Contains([]string{"", "unicast", "blackhole", "unreachable", "prohibit"}, r.Type) {
			v.errorAt(rp+".type", "%q is not unicast, blackhole, unreachable or prohibit", r.Type)
		}
		if r.Table < 0 || r.Metric < 0 {
			v.errorAt(rp, "table and metric must not be negative")
		}
		if n, ok := RouteProtocol(r.Protocol); r.Protocol != "" && !ok {
			v.errorAt(rp+".protocol", "%q is not a route protocol: a number 1-255 or a name of iproute2's rt_protos (boot, static, bird, keepalived, …)", r.Protocol)
		} else if r.Protocol != "" && n == 0 {
			v.errorAt(rp+".protocol", "%q is protocol 0 (unspec), which halb cannot add a route with: leave protocol out for boot", r.Protocol)
		}
	}
}

// rules checks rules at path p ("….rules").
func (v *validator) rules(p string, rules []Rule) {
	for i, r := range rules {
		rp := fmt.Sprintf("%s[%d]", p, i)
		if r.Table <= 0 {
			v.errorAt(rp+".table", "a rule needs a table (a number from 1)")
		}
		if r.From.IsValid() && r.To.IsValid() && r.From.Addr().Is4() != r.To.Addr().Is4() {
			v.errorAt(rp+".to", "%s is not of from's address family", r.To)
		}
		if r.Family != 0 && r.Family != 4 && r.Family != 6 {
			v.errorAt(rp+".family", "%d is not 4 or 6", r.Family)
		}
		if r.Priority < 0 {
			v.errorAt(rp+".priority", "must not be negative")
		}
	}
}

// vrrpExtras checks the VRRP settings that follow keepalived's less
// common global keywords.
func (v *validator) vrrpExtras() {
	v.static()
	v.multicastGroups()
	v.processes()
}

// static checks vrrp.static.
func (v *validator) static() {
	s := v.c.VRRP.Static
	for i, a := range s.Addresses {
		ap := fmt.Sprintf("vrrp.static.addresses[%d]", i)
		if !a.Address.IsValid() || a.Dev == "" {
			v.errorAt(ap, "a static address needs an address and a dev")
		}
		if a.Excluded {
			v.errorAt(ap+".excluded", "only an instance's VIPs are listed in adverts")
		}
		if !slices.Contains(scopeNames, a.Scope) {
			v.errorAt(ap+".scope", "%q is not global, site, link, host or nowhere", a.Scope)
		}
	}
	v.routes("vrrp.static.routes", s.Routes)
	v.rules("vrrp.static.rules", s.Rules)
}

// multicastGroups checks vrrp.multicast_group4 and 6.
func (v *validator) multicastGroups() {
	if g := v.c.VRRP.MulticastGroup4; g.IsValid() && (!g.Is4() || !g.IsMulticast()) {
		v.errorAt("vrrp.multicast_group4", "%s is not an IPv4 multicast address", g)
	}
	if g := v.c.VRRP.MulticastGroup6; g.IsValid() && (!g.Is6() || !g.IsMulticast()) {
		v.errorAt("vrrp.multicast_group6", "%s is not an IPv6 multicast address", g)
	}
}

// processes checks vrrp.processes and what instances track of them.
func (v *validator) processes() {
	names := map[string]bool{}
	for i, p := range v.c.VRRP.Processes {
		pp := fmt.Sprintf("vrrp.processes[%d]", i)
		if p.Name == "" || names[p.Name] {
			v.errorAt(pp+".name", "a process needs a name of its own")
		}
		names[p.Name] = true
		if p.Command == "" {
			v.errorAt(pp+".command", "needs the process name or path to look for")
		}
		if p.Quorum < 0 || p.QuorumMax < 0 || p.QuorumMax > 0 && p.QuorumMax < p.Quorum {
			v.errorAt(pp, "quorum %d and quorum_max %d: want 0 ≤ quorum ≤ quorum_max (0: no maximum)", p.Quorum, p.QuorumMax)
		}
		if p.Interval < Duration(10e6) {
			v.errorAt(pp+".interval", "%s is shorter than 10ms", p.Interval)
		}
		if p.Weight < -253 || p.Weight > 253 {
			v.errorAt(pp+".weight", "%d is not from -253 to 253", p.Weight)
		}
	}
	for i, in := range v.c.VRRP.Instances {
		for j, t := range in.TrackProcesses {
			if !names[t.Name] {
				v.errorAt(fmt.Sprintf("vrrp.instances[%d].track_processes[%d]", i, j), "no process named %q in vrrp.processes", t.Name)
			}
		}
	}
}
