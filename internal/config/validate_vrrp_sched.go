package config

// vrrpScheduling checks the keys that set how halb is scheduled for
// VRRP's sake.
func (v *validator) vrrpScheduling() {
	c := v.c.VRRP
	if c.RealtimePriority < 0 || c.RealtimePriority > 99 {
		v.errorf("vrrp.realtime_priority", "vrrp.realtime_priority: %d is not from 0 (off) to 99", c.RealtimePriority)
	}
	if (c.RealtimePriority > 0 || c.LockMemory) && len(c.Instances) == 0 {
		v.warnf("vrrp", "vrrp: realtime_priority and lock_memory apply only while VRRP instances run; there are none")
	}
}
