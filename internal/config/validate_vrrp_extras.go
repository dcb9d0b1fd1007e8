package config

// instanceExtras checks the settings of an instance that follow
// keepalived's less common keywords.
func (v *validator) instanceExtras(p string, in Instance) {
	if in.GARP.LowerPriorityCount < 0 {
		v.errorAt(p+".garp.lower_priority_count", "must not be negative")
	}
	if in.GARP.LowerPriorityDelay < 0 {
		v.errorAt(p+".garp.lower_priority_delay", "must not be negative")
	}
}
