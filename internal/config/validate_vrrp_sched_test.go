package config

import (
	"strings"
	"testing"
)

func TestVRRPSchedulingKeys(t *testing.T) {
	with := func(keys string) string { return strings.Replace(base, "vrrp:\n", "vrrp:\n"+keys, 1) }
	c, diags := Parse("n.yaml", []byte(with("  realtime_priority: 10\n  lock_memory: true\n")), Options{})
	if c == nil || len(diags) != 0 {
		t.Fatalf("valid scheduling keys refused: %v", diags)
	}
	if c.VRRP.RealtimePriority != 10 || !c.VRRP.LockMemory {
		t.Errorf("decoded %+v", c.VRRP)
	}
	for _, p := range []string{"-1", "100"} {
		_, diags := Parse("n.yaml", []byte(with("  realtime_priority: "+p+"\n")), Options{})
		if !strings.Contains(diags.String(), "vrrp.realtime_priority: "+p+" is not from 0 (off) to 99") {
			t.Errorf("priority %s: diagnostics %q", p, diags)
		}
	}
	_, diags = Parse("n.yaml", []byte("node: n\nvrrp:\n  lock_memory: true\n"), Options{})
	if len(diags.Errors()) != 0 || !strings.Contains(diags.String(), "warning: vrrp: realtime_priority and lock_memory apply only") {
		t.Errorf("no instances: %q", diags)
	}
	short := strings.Replace(base, "      priority: 150\n", "      priority: 150\n      advert_interval: 50ms\n", 1)
	_, diags = Parse("n.yaml", []byte(short), Options{})
	if len(diags.Errors()) != 0 || !strings.Contains(diags.String(), "warning: vrrp.instances[0].advert_interval: 50ms without vrrp.realtime_priority") {
		t.Errorf("50 ms without real time: %q", diags)
	}
	_, diags = Parse("n.yaml", []byte(strings.Replace(short, "vrrp:\n", "vrrp:\n  realtime_priority: 1\n", 1)), Options{})
	if len(diags) != 0 {
		t.Errorf("50 ms in real time: %q", diags)
	}
}
