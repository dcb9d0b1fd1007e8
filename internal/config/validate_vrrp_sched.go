package config

import (
	"fmt"
	"time"
)

// shortInterval is the advert interval below which a busy CPU can delay
// adverts past the master-down interval unless halb runs in real time.
const shortInterval = 100 * time.Millisecond

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
	if c.RealtimePriority == 0 {
		for i, in := range c.Instances {
			if d := in.AdvertInterval.D(); d > 0 && d < shortInterval {
				p := fmt.Sprintf("vrrp.instances[%d].advert_interval", i)
				v.warnf(p, "%s: %s without vrrp.realtime_priority: on a busy machine adverts can be late enough for a backup to take over", p, d)
			}
		}
	}
}
