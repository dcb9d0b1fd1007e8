package notify

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"halb/internal/api"
	"halb/internal/event"
)

// BenchmarkSink is what a notifier costs the engine goroutine per event.
func BenchmarkSink(b *testing.B) {
	n := New(Options{Node: "lb-a"})
	r := healthEvent(1, t0, 12, false)
	go func() {
		for range n.in {
		}
	}()
	b.ReportAllocs()
	for b.Loop() {
		n.Sink(r)
	}
}

// BenchmarkCompose builds one message for a failover of six instances in
// a site of 20 services × 10 servers.
func BenchmarkCompose(b *testing.B) {
	st := siteStatus()
	st.Services = nil
	for s := range 20 {
		svc := api.Service{Name: fmt.Sprintf("svc%d", s), Protocol: "tcp", VIP: "192.0.2.9", Port: uint16(1000 + s), Pool: "www"}
		for i := range 10 {
			svc.Servers = append(svc.Servers, api.Server{Address: netip.AddrFrom4([4]byte{198, 51, 100, byte(i + 1)}).String(), Weight: 1, Healthy: true})
		}
		st.Services = append(st.Services, svc)
	}
	var evs []event.Record
	for i := range 6 {
		evs = append(evs, vrrpEvent(uint64(i), t0, fmt.Sprintf("v%d", i), "BACKUP", "MASTER", "master down timer expired"))
	}
	evs = append(evs, healthEvent(7, t0, 3, false))
	b.ReportAllocs()
	for b.Loop() {
		Compose("lb-a", Batch{Events: evs}, st, t0.Add(time.Second))
	}
}
