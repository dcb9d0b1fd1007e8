package health

import (
	"net/netip"
	"testing"

	"halb/internal/config"
)

// TestPlanServerChecks: each server is probed with its own checks when it
// has them, with the pool's otherwise, and not at all with an empty list.
func TestPlanServerChecks(t *testing.T) {
	src := "services:\n  - {name: web, vips: [192.0.2.9], ports: [80], forward: nat, pool: web}\n" +
		"pools:\n  web:\n    check: {type: tcp}\n    servers:\n" +
		"      - {address: 198.51.100.1}\n" +
		"      - address: 198.51.100.2\n        check: [{type: http, port: 8080, path: /a}, {type: tcp, port: 81}]\n" +
		"      - address: 198.51.100.3\n        check: []\n"
	cfg, diags := config.Parse("t.yaml", []byte(src), config.Options{Hostname: "h"})
	if cfg == nil {
		t.Fatalf("does not load: %s", diags)
	}
	probes, members := plan(cfg)
	targets := map[netip.Addr][]string{}
	for _, m := range members {
		for _, k := range m.probes {
			p := probes[k]
			targets[m.key.Addr] = append(targets[m.key.Addr], p.check.Type+" "+p.target.String())
		}
	}
	want := map[string][]string{
		"198.51.100.1": {"tcp 198.51.100.1:80"},
		"198.51.100.2": {"http 198.51.100.2:8080", "tcp 198.51.100.2:81"},
	}
	if len(targets) != len(want) {
		t.Fatalf("probed servers: %v, want %v", targets, want)
	}
	for addr, w := range want {
		got := targets[netip.MustParseAddr(addr)]
		if len(got) != len(w) {
			t.Errorf("%s: probes %v, want %v", addr, got, w)
			continue
		}
		for i := range w {
			if got[i] != w[i] {
				t.Errorf("%s: probes %v, want %v", addr, got, w)
			}
		}
	}
}
