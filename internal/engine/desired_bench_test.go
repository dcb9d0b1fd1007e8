package engine

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"halb/internal/config"
	"halb/internal/dataplane"
)

// largeConfig is n TCP services on 192.0.2.x:port, each with a pool of
// its own of four checked servers, direct routing.
func largeConfig(b *testing.B, n int) *config.Config {
	b.Helper()
	var src strings.Builder
	src.WriteString("node: bench\nservices:\n")
	for i := range n {
		fmt.Fprintf(&src, "  - {name: s%d, vips: [192.0.2.%d], ports: [%d], forward: dr, pool: p%d}\n", i, 1+i/50, 1000+i%50, i)
	}
	src.WriteString("pools:\n")
	for i := range n {
		fmt.Fprintf(&src, "  p%d:\n    check: {type: tcp}\n    servers:\n", i)
		for j := range 4 {
			fmt.Fprintf(&src, "      - {address: 198.51.100.%d}\n", 11+j)
		}
	}
	c, diags := config.Parse("bench.yaml", []byte(src.String()), config.Options{Hostname: "bench"})
	if c == nil {
		b.Fatal(diags)
	}
	return c
}

// BenchmarkUpdateOneServerChange10k is the engine's share of a health
// change on 10,000 services × 4 reals, each service with a pool of its
// own: the desired state updated for the changed pool, and its difference
// to the previous one.
func BenchmarkUpdateOneServerChange10k(b *testing.B) {
	cfg := largeConfig(b, 10000)
	ref := ServerRef{Pool: "p5000", Addr: netip.MustParseAddr("198.51.100.11")}
	in := func(up bool) Inputs {
		return Inputs{Config: cfg, Health: map[ServerRef]ServerHealth{ref: {Up: up, Weight: -1}}}
	}
	ev := Desired(in(true))
	up := false
	for b.Loop() {
		before := ev.State
		ev.Update(in(up), []string{ref.Pool})
		if d := dataplane.Compute(before, ev.State); d.Size() != 1 {
			b.Fatalf("%d changes", d.Size())
		}
		up = !up
	}
}

// BenchmarkDesired10k is the desired state of 10,000 services × 4 reals
// computed from scratch (start and reload).
func BenchmarkDesired10k(b *testing.B) {
	cfg := largeConfig(b, 10000)
	for b.Loop() {
		Desired(Inputs{Config: cfg})
	}
}
