package api

import (
	"encoding/json"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"halb/internal/engine"
)

// TestFromEngine: the status document of an engine snapshot, field by
// field — empty lists are [], an unknown master and a mark service's
// missing VIP are "", a single port has no port_end and a server whose
// health never changed no last_change.
func TestFromEngine(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tt := range []struct {
		name string
		in   engine.Status
		want string
	}{
		{"empty", engine.Status{Node: "lb-a"}, `{"schema_version":1,"node":"lb-a","version":"","dataplane":"","config":"",` +
			`"started":"0001-01-01T00:00:00Z","reloaded":"0001-01-01T00:00:00Z","vrrp":[],"services":[],"pools":[],` +
			`"last_reconcile":{"changes":0},"last_reload":{"at":"0001-01-01T00:00:00Z","applied":true,"errors":[]},"events":[]}`},
		{"full", engine.Status{Node: "lb-a", Version: "v1", Dataplane: "none", Config: "/etc/halb.yaml",
			Started: at, Reloaded: at, LastReconcile: engine.Reconcile{At: at, Changes: 2, Error: "boom"},
			VRRP: []engine.InstanceState{
				{Name: "a", Interface: "eth0", VRID: 1, State: "MASTER", Priority: 100, EffectivePriority: 90,
					Master: netip.MustParseAddr("192.0.2.1"), Since: at, Reason: "r", VIPs: []netip.Prefix{netip.MustParsePrefix("192.0.2.9/24")}},
				{Name: "b", State: "INIT", Since: at}},
			Services: []engine.ServiceState{
				{Name: "web", Protocol: "tcp", VIP: netip.MustParseAddr("192.0.2.9"), Family: 4, Port: 80, Mark: 3,
					Scheduler: "rr", Forward: "nat", Pool: "www", Servers: []engine.ServerState{
						{Address: netip.MustParseAddr("198.51.100.1"), Port: 8080, Weight: 2,
							ServerStatus: engine.ServerStatus{Healthy: true, EffectiveWeight: 2, Reason: "ok"},
							LastChange:   at, Latency: 1500 * time.Microsecond}}},
				{Name: "fw", Protocol: "tcp", Family: 6, Port: 1000, PortEnd: 2000, Pool: "p"}},
			Pools: []engine.PoolState{{Name: "www", Quorum: 1, HealthyWeight: 2, QuorumUp: true}}},
			`{"schema_version":1,"node":"lb-a","version":"v1","dataplane":"none","config":"/etc/halb.yaml",` +
				`"started":"2026-01-02T03:04:05Z","reloaded":"2026-01-02T03:04:05Z",` +
				`"vrrp":[{"name":"a","interface":"eth0","vrid":1,"state":"MASTER","priority":100,"effective_priority":90,` +
				`"master":"192.0.2.1","since":"2026-01-02T03:04:05Z","reason":"r","vips":["192.0.2.9/24"]},` +
				`{"name":"b","interface":"","vrid":0,"state":"INIT","priority":0,"effective_priority":0,` +
				`"master":"","since":"2026-01-02T03:04:05Z","reason":"","vips":[]}],` +
				`"services":[{"name":"web","protocol":"tcp","vip":"192.0.2.9","family":4,"port":80,"mark":3,` +
				`"scheduler":"rr","forward":"nat","pool":"www","servers":[{"address":"198.51.100.1","port":8080,"weight":2,` +
				`"effective_weight":2,"healthy":true,"reason":"ok","last_change":"2026-01-02T03:04:05Z","latency_ms":1.5,"last_check":"","last_check_ms":0,"consecutive":0}]},` +
				`{"name":"fw","protocol":"tcp","vip":"","family":6,"port":1000,"port_end":2000,"mark":0,` +
				`"scheduler":"","forward":"","pool":"p","servers":[]}],` +
				`"pools":[{"name":"www","quorum":1,"healthy_weight":2,"quorum_up":true,"sorry_active":false}],` +
				`"last_reconcile":{"at":"2026-01-02T03:04:05Z","changes":2,"error":"boom"},` +
				`"last_reload":{"at":"2026-01-02T03:04:05Z","applied":true,"errors":[]},"events":[]}`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := json.Marshal(FromEngine(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}

// TestWithChecks: a checked server's reason, latency and last check are
// the last check's, not its last change's; others keep theirs.
func TestWithChecks(t *testing.T) {
	st := Status{Services: []Service{{Pool: "www", Servers: []Server{
		{Address: "198.51.100.1", Reason: "TCP connect refused", LatencyMS: 1},
		{Address: "198.51.100.2", Port: 8080, Reason: "r2", Healthy: true},
		{Address: "198.51.100.3", Reason: "never checked"}}}}}
	got := st.WithChecks([]CheckResult{
		{Pool: "www", Address: "198.51.100.1", Reason: "TCP connect refused, 24th failure in a row", Duration: 2500 * time.Microsecond, Consecutive: 24},
		{Pool: "www", Address: "198.51.100.2", Port: 8080, OK: true, Reason: "TCP connect", Duration: time.Millisecond, Consecutive: 1},
		{Pool: "other", Address: "198.51.100.3", Reason: "another pool's"},
	})
	want := []Server{
		{Address: "198.51.100.1", Reason: "TCP connect refused, 24th failure in a row", LatencyMS: 2.5, LastCheck: "failed", LastCheckMS: 2.5, Consecutive: 24},
		{Address: "198.51.100.2", Port: 8080, Healthy: true, Reason: "TCP connect", LatencyMS: 1, LastCheck: "ok", LastCheckMS: 1, Consecutive: 1},
		{Address: "198.51.100.3", Reason: "never checked"},
	}
	for i, w := range want {
		if g := got.Services[0].Servers[i]; !reflect.DeepEqual(g, w) {
			t.Errorf("server %d: %+v, want %+v", i, g, w)
		}
	}
}
