package daemon

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"halb/internal/api"
	"halb/internal/dataplane"
	"halb/internal/dataplane/ipvs"
	"halb/internal/lab/vm"
	"halb/internal/metrics"
)

// TestVMDaemon boots the IPVS VM and runs TestGuestDaemon* there.
func TestVMDaemon(t *testing.T) {
	vm.RunTests(t, "^TestGuestDaemon")
}

// TestGuestDaemonIPVSCounters: the metrics read the real kernel's IPVS
// counters through the data plane, after real connections.
func TestGuestDaemonIPVSCounters(t *testing.T) {
	vm.RequireGuest(t)
	for _, c := range [][]string{
		{"ip", "link", "set", "lo", "up"},
		{"ip", "link", "add", "halbops0", "type", "dummy"},
		{"ip", "addr", "add", "192.0.2.9/32", "dev", "halbops0"},
		{"ip", "addr", "add", "198.51.100.11/32", "dev", "halbops0"},
		{"ip", "link", "set", "halbops0", "up"},
	} {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v: %s", c, err, out)
		}
	}
	ln, err := net.Listen("tcp", "198.51.100.11:8080")
	if err != nil {
		t.Fatal(err)
	}
	backend := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") }))
	backend.Listener = ln
	backend.Start()
	defer backend.Close()

	d, err := ipvs.New(ipvs.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))), ipvs.WithStateDir(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	key := dataplane.ServiceKey{Family: 4, Protocol: "tcp", Addr: netip.MustParseAddr("192.0.2.9"), Port: 80}
	want := dataplane.State{Services: []dataplane.VirtualService{{Key: key, Service: "web", Scheduler: "rr",
		Reals: []dataplane.Real{{Addr: netip.MustParseAddr("198.51.100.11"), Port: 8080, Weight: 1, Forward: "nat"}}}}}
	if err := d.Reconcile(context.Background(), want); err != nil {
		t.Fatal(err)
	}
	defer d.Reconcile(context.Background(), dataplane.State{})

	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	for range 5 {
		resp, err := client.Get("http://192.0.2.9/")
		if err != nil {
			t.Fatalf("through IPVS: %v", err)
		}
		resp.Body.Close()
	}

	m := metrics.New(func(context.Context) (api.Status, error) { return api.Status{}, nil })
	m.AddCounterSource(ipvsCounters{d})
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	// The kernel folds its per-CPU counters every 2 s.
	var conns float64
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		resp, err := http.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		p := expfmt.NewTextParser(model.UTF8Validation)
		fams, err := p.TextToMetricFamilies(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range fams["halb_service_connections_total"].GetMetric() {
			if strings.Contains(s.String(), "tcp 192.0.2.9:80") {
				conns = s.GetCounter().GetValue()
			}
		}
		if conns == 5 {
			var bytesIn float64
			for _, s := range fams["halb_service_bytes_total"].GetMetric() {
				if strings.Contains(s.String(), `"in"`) {
					bytesIn = s.GetCounter().GetValue()
				}
			}
			if bytesIn == 0 {
				t.Error("no bytes counted in")
			}
			if len(fams["halb_server_active_connections"].GetMetric()) != 1 {
				t.Error("no real server in the counters")
			}
			return
		}
	}
	t.Errorf("halb_service_connections_total for tcp 192.0.2.9:80 = %v, want the 5 connections made", conns)
}
