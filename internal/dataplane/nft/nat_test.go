package nft

import (
	"fmt"
	"math"
	"testing"

	"halb/internal/config"
	"halb/internal/dataplane"
	"halb/internal/engine"
)

const natConfig = `
node: lb
services:
  - name: web
    protocol: tcp
    vips: [203.0.113.10]
    ports: [80]
    mark: none
    forward: nat
    %s
    pool: web
pools:
  web:
    on_failure: %s
    servers:
      - {address: 198.51.100.21, weight: 1}
      - {address: 198.51.100.22, weight: 2}
      - {address: 198.51.100.23, weight: 3}
`

func natState(t testing.TB, extra, onFailure string, down ...string) dataplane.State {
	t.Helper()
	cfg, diags := config.Parse("nat.yaml", []byte(fmt.Sprintf(natConfig, extra, onFailure)), config.Options{Hostname: "lb"})
	if cfg == nil {
		t.Fatalf("config: %s", diags)
	}
	in := engine.Inputs{Config: cfg, Health: map[engine.ServerRef]engine.ServerHealth{}}
	for _, s := range cfg.Pools["web"].Servers {
		in.Health[engine.ServerRef{Pool: "web", Addr: s.Address, Port: s.Port}] = engine.ServerHealth{Up: true, Weight: -1}
	}
	for _, a := range down {
		for ref := range in.Health {
			if ref.Addr.String() == a {
				in.Health[ref] = engine.ServerHealth{Up: false, Weight: -1, Reason: "test"}
			}
		}
	}
	return engine.Desired(in).State
}

// TestNATDistributionByWeight: 1,200 connections through the LB spread
// 1:2:3 over three backends.
func TestNATDistributionByWeight(t *testing.T) {
	l := newNATLab(t, 3)
	d := nsDataplane(t, l.lb, WithMode(LoadBalance))
	reconcile(t, d, natState(t, "", "inhibit"))
	cl := newDialer(t, l.client)
	const n = 1200
	count := map[string]int{}
	for i := range n {
		name, err := cl.hit("", "203.0.113.10:80")
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		count[name]++
	}
	t.Logf("distribution over %d connections: %v", n, count)
	for i, w := range []float64{1, 2, 3} {
		name := fmt.Sprintf("198.51.100.%d", 21+i)
		want := n * w / 6
		if got := float64(count[name]); math.Abs(got-want) > 0.05*n {
			t.Errorf("%s (weight %v) got %v connections, want %v ± %v", name, w, got, want, 0.05*n)
		}
	}
}
