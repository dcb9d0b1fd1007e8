package keepalived

import (
	"strings"
	"testing"
)

// TestSchedulingKeywords: vrrp_rt_priority and vrrp_no_swap become
// vrrp.realtime_priority and vrrp.lock_memory, and are rendered.
func TestSchedulingKeywords(t *testing.T) {
	cfg, diags, _ := loadString(t, `
global_defs {
    vrrp_rt_priority 20
    vrrp_no_swap
}
vrrp_instance A {
    interface eth0
    virtual_router_id 1
    virtual_ipaddress {
        192.0.2.1
    }
}
`)
	if cfg == nil {
		t.Fatalf("does not load:\n%s", diags)
	}
	if cfg.VRRP.RealtimePriority != 20 || !cfg.VRRP.LockMemory {
		t.Errorf("vrrp: realtime_priority %d, lock_memory %v; want 20, true", cfg.VRRP.RealtimePriority, cfg.VRRP.LockMemory)
	}
	if strings.Contains(diags.String(), "vrrp_rt_priority") || strings.Contains(diags.String(), "vrrp_no_swap") {
		t.Errorf("the keywords are reported as ignored:\n%s", diags)
	}
	out, err := RenderYAML(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "realtime_priority: 20") || !strings.Contains(string(out), "lock_memory: true") {
		t.Errorf("rendered:\n%s", out)
	}
	_, diags, _ = loadString(t, "global_defs {\n vrrp_rt_priority 100\n}\n")
	if !strings.Contains(diags.String(), "100") {
		t.Errorf("priority 100 accepted: %s", diags)
	}
}
