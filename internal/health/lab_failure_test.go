package health

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"halb/internal/config"
	"halb/internal/engine"
	"halb/internal/event"
	"halb/internal/lab/labtest"
)

const failureConfig = `
services:
  - {name: www, vips: [192.0.2.9], ports: [80], pool: www}
  - {name: www2, vips: [192.0.2.10], ports: [80], pool: www2}
pools:
  www:
    initial_state: down
    check: {type: http, path: /healthz, interval: 1s, timeout: 500ms, rise: 2, fall: 3}
    servers: [{address: 198.51.100.11, weight: 4}]
  www2:
    on_failure: remove
    initial_state: down
    check: {type: http, path: /healthz, interval: 1s, timeout: 500ms, rise: 2, fall: 3}
    servers: [{address: 198.51.100.11, weight: 4}]
`

// TestLabFailureModes takes a real nginx down in every way a server goes
// down (failing health URL, killed, blackholed, slowed) and back, and
// checks each transition, its timing in check intervals, its reason, and
// what the engine derives from it (inhibit vs remove).
func TestLabFailureModes(t *testing.T) {
	r := newRig(t)
	labtest.RequireTool(t, "nft")
	n := r.startNginx()
	cfg := parse(t, failureConfig)
	rec := r.check(cfg)
	const interval, timeout = time.Second, 500 * time.Millisecond
	downBound := 2*(3*interval+timeout) + time.Second
	upBound := 2*(2*interval+timeout) + time.Second

	ev, _ := rec.wait(0, "www", true, upBound)
	checkEngine(t, cfg, ev, 4)

	steps := []struct {
		name         string
		down, repair func()
		reason       string
	}{
		{"health URL gone", func() { os.Remove(filepath.Join(n.dir, "www/healthz")) },
			func() { os.WriteFile(filepath.Join(n.dir, "www/healthz"), []byte("ok\n"), 0o644) },
			"HTTP 404 from 198.51.100.11:80 /healthz, 3rd failure in a row"},
		{"killed", n.stop, n.start,
			"HTTP 198.51.100.11:80 /healthz: connection refused, 3rd failure in a row"},
		{"blackholed", func() {
			r.run(r.be, "nft", "add table inet halbtest; add chain inet halbtest in { type filter hook input priority 0; policy accept; }; add rule inet halbtest in tcp dport 80 drop")
		}, func() { r.run(r.be, "nft", "delete table inet halbtest") },
			"HTTP 198.51.100.11:80 /healthz: connect timeout after 500ms, 3rd failure in a row"},
		// The kernel here has no netem; a stopped nginx is the slow server:
		// the kernel still accepts connections, the answer never comes in time.
		{"hung", func() { n.signal(syscall.SIGSTOP) }, func() { n.signal(syscall.SIGCONT) },
			"HTTP 198.51.100.11:80 /healthz: response timeout after 500ms, 3rd failure in a row"},
	}
	for _, s := range steps {
		from := rec.mark()
		began := time.Now()
		s.down()
		ev, at := rec.wait(from, "www", false, downBound)
		took := at.Sub(began)
		t.Logf("%-15s DOWN after %5.2f intervals: %s", s.name, took.Seconds()/interval.Seconds(), ev.Reason)
		if ev.Reason != s.reason {
			t.Errorf("%s: reason %q, want %q", s.name, ev.Reason, s.reason)
		}
		if ev.Consecutive != 3 {
			t.Errorf("%s: consecutive %d, want 3", s.name, ev.Consecutive)
		}
		if ev2, _ := rec.wait(from, "www2", false, time.Second); ev2.Reason != ev.Reason {
			t.Errorf("%s: the pools sharing the check disagree: %q vs %q", s.name, ev2.Reason, ev.Reason)
		}
		checkEngine(t, cfg, ev, 0)
		from = rec.mark()
		began = time.Now()
		s.repair()
		ev, at = rec.wait(from, "www", true, upBound)
		t.Logf("%-15s UP   after %5.2f intervals: %s", s.name, at.Sub(began).Seconds()/interval.Seconds(), ev.Reason)
		if !strings.HasSuffix(ev.Reason, "2nd success in a row") {
			t.Errorf("%s: recovery reason %q", s.name, ev.Reason)
		}
		checkEngine(t, cfg, ev, 4)
	}
}

// checkEngine feeds the latest event of both pools to engine.Desired and
// checks the weight of the real server: want in the inhibit pool, and
// present (want > 0) or absent in the remove pool.
func checkEngine(t *testing.T, cfg *config.Config, ev event.Health, want int) {
	t.Helper()
	addr := netip.MustParseAddr("198.51.100.11")
	health := map[engine.ServerRef]engine.ServerHealth{}
	for _, pool := range []string{"www", "www2"} {
		health[engine.ServerRef{Pool: pool, Addr: addr}] = engine.ServerHealth{Up: ev.Up, Weight: ev.Weight, Reason: ev.Reason}
	}
	eval := engine.Desired(engine.Inputs{Config: cfg, Health: health})
	for _, vs := range eval.State.Services {
		var reals []string
		found := false
		for _, real := range vs.Reals {
			reals = append(reals, real.Addr.String())
			if real.Addr == addr {
				found = true
				if real.Weight != want {
					t.Errorf("service %s: real weight %d, want %d", vs.Service, real.Weight, want)
				}
			}
		}
		if wantFound := vs.Service == "www" || want > 0; found != wantFound {
			t.Errorf("service %s: reals %v; server present=%v, want %v", vs.Service, reals, found, wantFound)
		}
	}
}
