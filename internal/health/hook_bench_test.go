package health

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"halb/internal/config"
	"halb/internal/event"
)

// BenchmarkResult is what the scheduler spends on one check result of a
// 10,000-server configuration (40 pools of 250 on their own ports: 10,000
// probes), without a result hook and with one that counts.
func BenchmarkResult(b *testing.B) {
	var y strings.Builder
	y.WriteString("services:\n")
	for p := range 40 {
		fmt.Fprintf(&y, "  - {name: s%d, vips: [192.0.2.9], ports: [%d], pool: p%d}\n", p, 1000+p, p)
	}
	y.WriteString("pools:\n")
	for p := range 40 {
		fmt.Fprintf(&y, "  p%d:\n    check: {type: tcp, interval: 2s, timeout: 1s}\n    servers:\n", p)
		for i := range 250 {
			fmt.Fprintf(&y, "      - {address: 198.51.100.%d}\n", 1+i)
		}
	}
	for _, bc := range []struct {
		name string
		opts []Option
	}{
		{"nohook", nil},
		{"hook", []Option{WithResultHook(func(r CheckResult) { benchSink += len(r.Servers) })}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			cfg, diags := config.Parse("bench.yaml", []byte(y.String()), config.Options{Hostname: "lb-test"})
			if diags.HasErrors() {
				b.Fatalf("config: %v", diags)
			}
			c := New(cfg, bc.opts...)
			events := make(chan event.Health, 1024)
			ctx, cancel := context.WithCancel(b.Context())
			defer cancel()
			go func() {
				for range events {
				}
			}()
			defer close(events)
			s := newScheduler(c, ctx, events)
			s.apply(cfg)
			probes := make([]*probe, 0, len(s.probes))
			for _, p := range s.probes {
				probes = append(probes, p)
			}
			r := pass("ok")
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				p := probes[i%len(probes)]
				s.inflight++
				p.running = true
				s.onResult(probeResult{p: p, r: r})
				i++
			}
			b.ReportMetric(float64(len(probes)), "probes")
		})
	}
}

var benchSink int
