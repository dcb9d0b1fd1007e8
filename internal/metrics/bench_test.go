package metrics

import (
	"context"
	"fmt"
	"io"
	"net/http/httptest"
	"testing"
	"time"

	"halb/internal/api"
	"halb/internal/event"
)

// BenchmarkScrape renders /metrics for a node with 100 services of 10
// servers each and 4 VRRP instances.
func BenchmarkScrape(b *testing.B) {
	st := api.Status{Node: "lb-a", Version: "bench", Dataplane: "none"}
	for i := range 4 {
		st.VRRP = append(st.VRRP, api.Instance{Name: fmt.Sprintf("vi%d", i), State: "MASTER", Priority: 100, EffectivePriority: 100})
	}
	for s := range 100 {
		svc := api.Service{Name: fmt.Sprintf("svc%d", s), Protocol: "tcp", VIP: "192.0.2.9", Port: uint16(1000 + s), Pool: fmt.Sprintf("p%d", s)}
		for i := range 10 {
			svc.Servers = append(svc.Servers, api.Server{Address: fmt.Sprintf("198.51.100.%d", i+1), Weight: 1, EffectiveWeight: 1, Healthy: true, LatencyMS: 1.2})
		}
		st.Services = append(st.Services, svc)
		st.Pools = append(st.Pools, api.Pool{Name: svc.Pool, Quorum: 1, HealthyWeight: 10, QuorumUp: true})
	}
	m := New(func(context.Context) (api.Status, error) { return st, nil })
	req := httptest.NewRequest("GET", "/metrics", nil)
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		m.Handler().ServeHTTP(w, req)
		io.Copy(io.Discard, w.Body)
	}
}

// BenchmarkOnEvent is what the metrics cost the engine goroutine per event.
func BenchmarkOnEvent(b *testing.B) {
	m := New(nil)
	r := event.Record{Kind: "health", Health: &event.Health{Pool: "www"}}
	b.ReportAllocs()
	for b.Loop() {
		m.OnEvent(r)
	}
}

// BenchmarkCheck is what the metrics cost the health scheduler per check
// result, cycling over 10,000 servers.
func BenchmarkCheck(b *testing.B) {
	m := New(nil)
	servers := make([]string, 10000)
	for i := range servers {
		servers[i] = fmt.Sprintf("198.51.%d.%d:80", 100+i/250, 1+i%250)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		s := servers[i%len(servers)]
		m.ObserveCheck("http", 2*time.Millisecond)
		m.CountCheck("www", s, "http", i%7 != 0)
		i++
	}
}
