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
	for j, vip := range in.VIPs {
		o, ok := in.VIPOption(vip.Addr())
		if !ok {
			continue
		}
		vp := fmt.Sprintf("%s.vips[%d]", p, j)
		if o.Scope != "" && !slices.Contains([]string{"global", "site", "link", "host", "nowhere"}, o.Scope) {
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
