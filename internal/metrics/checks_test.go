package metrics

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"halb/internal/api"
)

func TestHealthCheckCounts(t *testing.T) {
	m := New(func(context.Context) (api.Status, error) { return api.Status{}, errors.New("not running") })
	// 198.51.100.11: 7 passes of 2 ms and 3 failures of 3 s (timeouts);
	// 198.51.100.12: 5 failures of 2 ms; a tcp check on two pools' server:
	// 4 passes of 0.5 ms.
	for i := range 10 {
		ok := i < 7
		d := 2 * time.Millisecond
		if !ok {
			d = 3 * time.Second
		}
		m.ObserveCheck("http", d)
		m.CountCheck("www", "198.51.100.11", "http", ok)
	}
	for range 5 {
		m.ObserveCheck("http", 2*time.Millisecond)
		m.CountCheck("www", "198.51.100.12", "http", false)
	}
	for range 4 {
		m.ObserveCheck("tcp", 500*time.Microsecond)
		m.CountCheck("api", "198.51.100.13:8080", "tcp", true)
		m.CountCheck("web", "[2001:db8::13]:8080", "tcp", true)
	}
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	fams := scrape(t, srv.URL+"/metrics")

	counts := []struct {
		pool, addr, port, typ, result string
		want                          float64
	}{
		{"www", "198.51.100.11", "", "http", "ok", 7},
		{"www", "198.51.100.11", "", "http", "fail", 3},
		{"www", "198.51.100.12", "", "http", "fail", 5},
		{"api", "198.51.100.13", "8080", "tcp", "ok", 4},
		{"web", "2001:db8::13", "8080", "tcp", "ok", 4},
		// Both results of a checked server are exported, from zero.
		{"www", "198.51.100.12", "", "http", "ok", 0},
		{"api", "198.51.100.13", "8080", "tcp", "fail", 0},
		{"web", "2001:db8::13", "8080", "tcp", "fail", 0},
	}
	for _, c := range counts {
		if v := value(t, fams, "halb_server_checks_total", "pool", c.pool, "address", c.addr, "port", c.port, "type", c.typ, "result", c.result); v != c.want {
			t.Errorf("checks_total{%s %s %s %s} = %v, want %v", c.addr, c.port, c.pool, c.result, v, c.want)
		}
	}
	if n := len(fams["halb_server_checks_total"].GetMetric()); n != len(counts) {
		t.Errorf("%d checks_total series, want %d", n, len(counts))
	}

	hist := func(typ string) *dto.Histogram {
		for _, s := range fams["halb_health_check_duration_seconds"].GetMetric() {
			if s.GetLabel()[0].GetValue() == typ {
				return s.GetHistogram()
			}
		}
		t.Fatalf("no duration histogram for %s", typ)
		return nil
	}
	if n := len(fams["halb_health_check_duration_seconds"].GetMetric()); n != 2 {
		t.Errorf("%d histograms, want one per check type (2)", n)
	}
	cumulative := func(h *dto.Histogram) string {
		s := ""
		for _, b := range h.GetBucket() {
			s += fmt.Sprintf("%g:%d ", b.GetUpperBound(), b.GetCumulativeCount())
		}
		return s
	}
	http := hist("http")
	if http.GetSampleCount() != 15 {
		t.Errorf("http checks observed %d, want 15", http.GetSampleCount())
	}
	if want := 12*0.002 + 3*3.0; http.GetSampleSum() < want-1e-9 || http.GetSampleSum() > want+1e-9 {
		t.Errorf("http duration sum %v, want %v", http.GetSampleSum(), want)
	}
	if got, want := cumulative(http), "0.001:0 0.0025:12 0.005:12 0.01:12 0.025:12 0.05:12 0.1:12 0.25:12 0.5:12 1:12 2.5:12 5:15 10:15 +Inf:15 "; got != want {
		t.Errorf("http buckets\n got %s\nwant %s", got, want)
	}
	tcp := hist("tcp")
	if got, want := cumulative(tcp), "0.001:4 0.0025:4 0.005:4 0.01:4 0.025:4 0.05:4 0.1:4 0.25:4 0.5:4 1:4 2.5:4 5:4 10:4 +Inf:4 "; tcp.GetSampleCount() != 4 || got != want {
		t.Errorf("tcp: %d observed, buckets %s", tcp.GetSampleCount(), got)
	}
}
