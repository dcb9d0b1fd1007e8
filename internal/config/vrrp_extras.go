package config

// vrrpExtraDefaults fills in the defaults of instance in (at path p)
// that follow other settings.
func (c *Config) vrrpExtraDefaults(p string, in *Instance) {
	if !c.has(p + ".garp.lower_priority_count") {
		in.GARP.LowerPriorityCount = in.GARP.Count
	}
	if !c.has(p + ".garp.lower_priority_delay") {
		in.GARP.LowerPriorityDelay = in.GARP.SecondBurst
	}
}
