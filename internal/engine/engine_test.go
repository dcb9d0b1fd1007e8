package engine

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"halb/internal/clock/clocktest"
	"halb/internal/config"
	"halb/internal/dataplane"
	"halb/internal/event"
	"halb/internal/vrrp/fsm"
)

// fakeDataplane records every state it is given and fails on demand.
type fakeDataplane struct {
	mu     sync.Mutex
	states []dataplane.State
	fail   int // fail this many calls
	closed bool
}

func (f *fakeDataplane) Reconcile(_ context.Context, s dataplane.State) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail > 0 {
		f.fail--
		return errors.New("netlink: device busy")
	}
	f.states = append(f.states, s)
	return nil
}

func (f *fakeDataplane) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	return nil
}

func (f *fakeDataplane) last() (dataplane.State, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.states) == 0 {
		return dataplane.State{}, 0
	}
	return f.states[len(f.states)-1], len(f.states)
}

// fakeSource is an announcer and a health checker driven by the test.
type fakeSource struct {
	vrrp     chan event.VRRP
	health   chan event.Health
	reloads  chan *config.Config
	released chan struct{}
}

func newFakeSource() *fakeSource {
	return &fakeSource{vrrp: make(chan event.VRRP), health: make(chan event.Health),
		reloads: make(chan *config.Config, 4), released: make(chan struct{})}
}

type fakeAnnouncer struct{ *fakeSource }

func (f fakeAnnouncer) Run(ctx context.Context, out chan<- event.VRRP) error {
	for {
		select {
		case <-ctx.Done():
			close(f.released)
			return nil
		case ev := <-f.vrrp:
			out <- ev
		}
	}
}

func (f fakeAnnouncer) Reload(cfg *config.Config) error { f.reloads <- cfg; return nil }

type fakeChecker struct{ *fakeSource }

func (f fakeChecker) Run(ctx context.Context, out chan<- event.Health) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev := <-f.health:
			out <- ev
		}
	}
}

func (f fakeChecker) Reload(*config.Config) error { return nil }

const loopConfig = `node: lb-t
vrrp:
  instances:
    - {name: web-a, interface: eth0, vrid: 9, priority: 150, vips: [192.0.2.9/24]}
services:
  - {name: web, vips: [192.0.2.9], ports: [80], pool: www}
pools:
  www:
    check: {type: tcp, port: 80}
    servers:
      - {address: 198.51.100.11, weight: 1}
      - {address: 198.51.100.12, weight: 1}
`

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func weights(s dataplane.State) string {
	var out []string
	for _, vs := range s.Services {
		for _, r := range vs.Reals {
			out = append(out, r.Addr.String()+"="+string(rune('0'+r.Weight)))
		}
	}
	return strings.Join(out, " ")
}

func TestEngineLoop(t *testing.T) {
	cfg := loadString(t, loopConfig)
	dp := &fakeDataplane{fail: 1}
	src := newFakeSource()
	eng := New(cfg, dp, "fake", WithAnnouncer(fakeAnnouncer{src}), WithHealthChecker(fakeChecker{src}),
		WithRetryInterval(10*time.Millisecond))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- eng.Run(ctx) }()

	// The first reconcile fails and is retried.
	eventually(t, "the retried first reconcile", func() bool { _, n := dp.last(); return n >= 1 })
	st, err := eng.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.LastReconcile.Error != "" {
		t.Fatalf("status still shows the error after a successful retry: %q", st.LastReconcile.Error)
	}

	src.vrrp <- event.VRRP{Instance: "web-a", VRID: 9, Old: fsm.Backup.String(), New: fsm.Master.String(), Priority: 150,
		EffectivePriority: 150, Master: netip.MustParseAddr("192.0.2.11"), Reason: "master down timer expired"}
	// The two sources are independent; wait for the first so that the
	// event order below is known.
	eventually(t, "the VRRP event", func() bool {
		st, err := eng.Status(ctx)
		return err == nil && st.VRRP[0].State == fsm.Master.String()
	})
	src.health <- event.Health{Pool: "www", Addr: netip.MustParseAddr("198.51.100.12"), Up: false, Weight: -1,
		Reason: "connect refused by 198.51.100.12:80"}
	eventually(t, "the health change in the data plane", func() bool {
		s, _ := dp.last()
		return weights(s) == "198.51.100.11=1 198.51.100.12=0"
	})
	st, _ = eng.Status(ctx)
	if st.VRRP[0].State != fsm.Master.String() || st.VRRP[0].Master.String() != "192.0.2.11" {
		t.Errorf("vrrp status: %+v", st.VRRP[0])
	}
	srv := st.Services[0].Servers[1]
	if srv.Healthy || srv.EffectiveWeight != 0 || srv.Reason != "connect refused by 198.51.100.12:80" {
		t.Errorf("server status: %+v", srv)
	}

	// Reload with a new weight: the announcer sees the new config, the
	// data plane the new weight.
	cfg2 := loadString(t, strings.Replace(loopConfig, "{address: 198.51.100.11, weight: 1}", "{address: 198.51.100.11, weight: 5}", 1))
	if err := eng.Reload(ctx, cfg2); err != nil {
		t.Fatal(err)
	}
	if got := <-src.reloads; got != cfg2 {
		t.Error("announcer did not get the new configuration")
	}
	if s, _ := dp.last(); weights(s) != "198.51.100.11=5 198.51.100.12=0" {
		t.Errorf("after reload: %s", weights(s))
	}
	evs, _ := eng.Events(ctx, 0)
	var kinds []string
	for _, e := range evs {
		kinds = append(kinds, e.Kind)
	}
	if got := strings.Join(kinds, ","); got != "dataplane,vrrp,health,reload" {
		t.Errorf("event kinds: %s", got)
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	select {
	case <-src.released:
	default:
		t.Error("Run returned before the announcer released its VIPs")
	}
	if !dp.closed {
		t.Error("data plane not closed")
	}
}

// TestEngineRetryBackoff: a failing reconcile is retried on the engine's
// clock after the retry interval, then after twice as long each time.
func TestEngineRetryBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dp := &fakeDataplane{fail: 3}
		clk := clocktest.New(time.Time{})
		eng := New(loadString(t, loopConfig), dp, "fake", WithClock(clk), WithRetryInterval(time.Second),
			WithLogger(slog.New(slog.DiscardHandler)))
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- eng.Run(ctx) }()
		calls := func() int {
			dp.mu.Lock()
			defer dp.mu.Unlock()
			return 3 - dp.fail + len(dp.states)
		}
		synctest.Wait()
		for _, wait := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second} {
			n := calls()
			clk.Advance(wait - time.Millisecond)
			synctest.Wait()
			if calls() != n {
				t.Fatalf("retried before %s", wait)
			}
			clk.Advance(time.Millisecond)
			synctest.Wait()
			if calls() != n+1 {
				t.Fatalf("not retried after %s", wait)
			}
		}
		clk.Advance(time.Hour)
		synctest.Wait()
		if _, n := dp.last(); n != 1 || calls() != 4 {
			t.Fatalf("%d calls, %d successful; want 4, the last one successful", calls(), n)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
}

// countingDataplane tells how many changes its reconciles made, as the
// nftables data plane does.
type countingDataplane struct {
	fakeDataplane
	changes int
}

func (c *countingDataplane) Changes() int { return c.changes }

// TestLastReconcileCountsKernelChanges: with a data plane that counts its
// kernel changes, last_reconcile.changes is its count (0 when a restart
// finds the kernel as wanted), not the size of the state.
func TestLastReconcileCountsKernelChanges(t *testing.T) {
	cfg := loadString(t, loopConfig)
	for _, dp := range []dataplane.Dataplane{&countingDataplane{}, &fakeDataplane{}} {
		eng := New(cfg, dp, "fake", WithRetryInterval(10*time.Millisecond))
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- eng.Run(ctx) }()
		var st Status
		eventually(t, "the first reconcile", func() bool {
			var err error
			st, err = eng.Status(ctx)
			return err == nil && !st.LastReconcile.At.IsZero()
		})
		cancel()
		<-done
		_, counts := dp.(*countingDataplane)
		if counts && st.LastReconcile.Changes != 0 || !counts && st.LastReconcile.Changes == 0 {
			t.Errorf("%T: last reconcile changes %d", dp, st.LastReconcile.Changes)
		}
	}
}
