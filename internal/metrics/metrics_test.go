package metrics

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"halb/internal/api"
	"halb/internal/dataplane"
	"halb/internal/engine"
	"halb/internal/event"
	"halb/internal/metrics/livetest"
)

const site = `node: lb-a
vrrp:
  instances:
    - {name: web-a, interface: eth0, vrid: 9, priority: 150, vips: [192.0.2.9/24]}
    - {name: web-b, interface: eth0, vrid: 10, priority: 100, vips: [192.0.2.10/24]}
services:
  - {name: https, vips: [192.0.2.9], ports: [443], pool: www}
pools:
  www:
    quorum: 2
    check: {type: http, port: 80, path: /healthz}
    servers:
      - {address: 198.51.100.11}
      - {address: 198.51.100.12}
      - {address: 198.51.100.13}
`

// kernel is a CounterSource standing in for the IPVS statistics.
type kernel struct{ fail bool }

func (k kernel) Counters(context.Context) ([]ServiceCounters, error) {
	if k.fail {
		return nil, errors.New("netlink: no such family")
	}
	return []ServiceCounters{{Key: dataplane.ServiceKey{Family: 4, Protocol: "tcp", Addr: netip.MustParseAddr("192.0.2.9"), Port: 443},
		Service: "https", Connections: 42, BytesIn: 1000, BytesOut: 9000,
		Reals: []RealCounters{{Addr: netip.MustParseAddr("198.51.100.11"), ActiveConns: 7, InactiveConns: 2, Connections: 30},
			{Addr: netip.MustParseAddr("198.51.100.12"), Port: 8080, ActiveConns: 5}}}}, nil
}

// scrape fetches /metrics and parses it with the Prometheus text parser.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("scrape: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing the exposition: %v", err)
	}
	return fams
}

// value finds the sample of name whose labels include want.
func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, want ...string) float64 {
	t.Helper()
	f, ok := fams[name]
	if !ok {
		t.Fatalf("no metric %s", name)
	}
next:
	for _, m := range f.Metric {
		have := map[string]string{}
		for _, l := range m.Label {
			have[l.GetName()] = l.GetValue()
		}
		for i := 0; i+1 < len(want); i += 2 {
			if have[want[i]] != want[i+1] {
				continue next
			}
		}
		switch {
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	t.Fatalf("no sample of %s with labels %v", name, want)
	return 0
}

func TestMetricsFollowLiveState(t *testing.T) {
	var m *Metrics
	live := livetest.Start(t, site, func(dp dataplane.Dataplane) dataplane.Dataplane {
		m = New(nil)
		return m.Instrument(dp)
	}, engine.WithEventSink(func(r event.Record) { m.OnEvent(r) }))
	m.status = live.Status
	m.AddCounterSource(kernel{})
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()

	// Everything up at start (no result yet means up, as the checker has
	// not said otherwise), nothing master.
	f := scrape(t, srv.URL)
	if v := value(t, f, "halb_status_up"); v != 1 {
		t.Errorf("halb_status_up = %v", v)
	}
	if v := value(t, f, "halb_vrrp_state", "instance", "web-a", "state", "INIT"); v != 1 {
		t.Errorf("web-a INIT = %v before any VRRP event", v)
	}
	runs := value(t, f, "halb_reconcile_runs_total")
	if runs < 1 || value(t, f, "halb_reconcile_duration_seconds") != runs {
		t.Errorf("reconcile runs %v, duration samples %v", runs, value(t, f, "halb_reconcile_duration_seconds"))
	}

	at := time.Now()
	live.VRRP(event.VRRP{At: at, Instance: "web-a", VRID: 9, Old: "BACKUP", New: "MASTER", Priority: 150, EffectivePriority: 150,
		Master: netip.MustParseAddr("192.0.2.1"), Reason: "master down timer expired"})
	for _, last := range []byte{11, 12, 13} {
		live.Health(event.Health{At: at, Pool: "www", Addr: netip.AddrFrom4([4]byte{198, 51, 100, last}), Check: "http :80 /healthz",
			Up: last != 12, Weight: -1, Reason: "HTTP 503", Consecutive: 3, Latency: 2 * time.Millisecond})
	}
	live.Wait(t, func(st api.Status) bool { return len(st.Events) >= 4 })

	f = scrape(t, srv.URL)
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"halb_vrrp_state", []string{"instance", "web-a", "state", "MASTER"}, 1},
		{"halb_vrrp_state", []string{"instance", "web-a", "state", "BACKUP"}, 0},
		{"halb_vrrp_state", []string{"instance", "web-b", "state", "INIT"}, 1},
		{"halb_vrrp_priority", []string{"instance", "web-b"}, 100},
		{"halb_vrrp_transitions_total", []string{"instance", "web-a", "from", "BACKUP", "to", "MASTER"}, 1},
		{"halb_server_up", []string{"pool", "www", "address", "198.51.100.12", "port", ""}, 0},
		{"halb_server_up", []string{"pool", "www", "address", "198.51.100.11"}, 1},
		{"halb_server_effective_weight", []string{"pool", "www", "address", "198.51.100.12"}, 0},
		{"halb_server_transitions_total", []string{"pool", "www", "address", "198.51.100.12", "to", "down"}, 1},
		{"halb_server_check_latency_seconds", []string{"pool", "www", "address", "198.51.100.13"}, 0.002},
		{"halb_pool_servers", []string{"pool", "www", "state", "up"}, 2},
		{"halb_pool_servers", []string{"pool", "www", "state", "down"}, 1},
		{"halb_pool_healthy_weight", []string{"pool", "www"}, 2},
		{"halb_pool_quorum_up", []string{"pool", "www"}, 1},
		{"halb_events_total", []string{"kind", "health"}, 3},
		{"halb_service_connections_total", []string{"service", "https", "vs", "tcp 192.0.2.9:443"}, 42},
		{"halb_service_bytes_total", []string{"vs", "tcp 192.0.2.9:443", "direction", "out"}, 9000},
		{"halb_server_active_connections", []string{"vs", "tcp 192.0.2.9:443", "address", "198.51.100.11", "port", ""}, 7},
		{"halb_server_active_connections", []string{"vs", "tcp 192.0.2.9:443", "address", "198.51.100.12", "port", "8080"}, 5},
		{"halb_kernel_counters_up", nil, 1},
		{"halb_config_last_reload_successful", nil, 1},
		{"halb_info", []string{"node", "lb-a", "dataplane", "none", "go_version", runtime.Version()}, 1},
	} {
		if got := value(t, f, c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if value(t, f, "halb_reconcile_runs_total") <= runs {
		t.Error("events did not count reconcile runs")
	}

	// A second server down loses the quorum (2).
	live.Health(event.Health{At: at, Pool: "www", Addr: netip.MustParseAddr("198.51.100.11"), Up: false, Weight: -1, Reason: "connection refused"})
	live.Wait(t, func(st api.Status) bool { return !st.Pools[0].QuorumUp })
	f = scrape(t, srv.URL)
	if v := value(t, f, "halb_pool_quorum_up", "pool", "www"); v != 0 {
		t.Errorf("quorum up = %v after losing two of three", v)
	}
	if v := value(t, f, "halb_events_total", "kind", "quorum"); v != 1 {
		t.Errorf("quorum events = %v", v)
	}
}

func TestMetricsWhenSourcesFail(t *testing.T) {
	m := New(func(context.Context) (api.Status, error) { return api.Status{}, errors.New("engine is not running") })
	m.AddCounterSource(kernel{fail: true})
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	f := scrape(t, srv.URL)
	if v := value(t, f, "halb_status_up"); v != 0 {
		t.Errorf("halb_status_up = %v with a dead engine", v)
	}
	if v := value(t, f, "halb_kernel_counters_up"); v != 0 {
		t.Errorf("halb_kernel_counters_up = %v with failing counters", v)
	}
	if _, ok := f["halb_server_up"]; ok {
		t.Error("server metrics invented without a status")
	}
	if !strings.HasPrefix(f["halb_status_up"].GetHelp(), "1 when") {
		t.Error("help text missing")
	}
}

// adverts is a VRRPSource of one instance.
type adverts string

func (a adverts) VRRPCounters() []VRRPCounters {
	return []VRRPCounters{{Instance: string(a), AdvertsSent: 3, Rejected: map[string]uint64{"ttl": 1}}}
}

// TestSourcesAddUp: every source added is read; the kernel counters are
// up only when every counter source could be read.
func TestSourcesAddUp(t *testing.T) {
	m := New(func(context.Context) (api.Status, error) { return api.Status{}, errors.New("engine is not running") })
	m.AddVRRPSource(adverts("a"))
	m.AddVRRPSource(adverts("b"))
	m.AddCounterSource(kernel{})
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	f := scrape(t, srv.URL)
	for _, in := range []string{"a", "b"} {
		if v := value(t, f, "halb_vrrp_adverts_sent_total", "instance", in); v != 3 {
			t.Errorf("adverts sent by %s = %v, want 3", in, v)
		}
		if v := value(t, f, "halb_vrrp_adverts_rejected_total", "instance", in, "reason", "ttl"); v != 1 {
			t.Errorf("adverts of %s rejected for ttl = %v, want 1", in, v)
		}
	}
	if v := value(t, f, "halb_kernel_counters_up"); v != 1 {
		t.Errorf("halb_kernel_counters_up = %v with one good source", v)
	}
	m.AddCounterSource(kernel{fail: true})
	f = scrape(t, srv.URL)
	if v := value(t, f, "halb_kernel_counters_up"); v != 0 {
		t.Errorf("halb_kernel_counters_up = %v with a failing source among two", v)
	}
	if _, ok := f["halb_service_connections_total"]; ok {
		t.Error("service counters shown when a source failed")
	}
}

// TestReloadGauges: a refused reload is 0 in
// halb_config_last_reload_successful; the success timestamp stays the
// last configuration loaded.
func TestReloadGauges(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, applied := range []bool{true, false} {
		got := map[*prometheus.Desc]float64{}
		collectStatus(api.Status{Reloaded: at, LastReload: api.Reload{Applied: applied}}, func(d *prometheus.Desc, v float64, _ ...string) { got[d] = v })
		if got[dReloadOK] != b2f(applied) || got[dReloadOKAt] != float64(at.Unix()) {
			t.Errorf("applied %t: successful %v, success timestamp %v", applied, got[dReloadOK], got[dReloadOKAt])
		}
	}
}

type bgpState struct{}

func (bgpState) BGPState() ([]BGPSession, []BGPVIP) {
	return []BGPSession{{Peer: "192.0.2.1", Established: true}, {Peer: "192.0.2.2"}},
		[]BGPVIP{{VIP: "203.0.113.10", Announced: true}, {VIP: "203.0.113.11"}}
}

// TestBGPSource: each session and each VIP of the announce lists is a
// gauge, 1 when up or announced.
func TestBGPSource(t *testing.T) {
	m := New(func(context.Context) (api.Status, error) { return api.Status{}, nil })
	m.AddBGPSource(bgpState{})
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	f := scrape(t, srv.URL)
	for _, c := range []struct {
		name, label, value string
		want               float64
	}{
		{"halb_bgp_session_up", "peer", "192.0.2.1", 1},
		{"halb_bgp_session_up", "peer", "192.0.2.2", 0},
		{"halb_bgp_announced", "vip", "203.0.113.10", 1},
		{"halb_bgp_announced", "vip", "203.0.113.11", 0},
	} {
		if v := value(t, f, c.name, c.label, c.value); v != c.want {
			t.Errorf("%s{%s=%q} = %v, want %v", c.name, c.label, c.value, v, c.want)
		}
	}
}
