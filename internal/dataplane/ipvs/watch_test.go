package ipvs

import (
	"context"
	"strings"
	"testing"
	"time"

	"halb/internal/clock/clocktest"
	"halb/internal/dataplane"
)

// watched is a data plane whose Watch runs on a fake clock.
type watched struct {
	d       *Dataplane
	k       *fakeKernel
	clk     *clocktest.Clock
	reasons chan string
}

const testEvery = 3 * time.Second

func startWatch(t *testing.T) *watched {
	t.Helper()
	w := &watched{k: newFakeKernel(), clk: clocktest.New(time.Time{}), reasons: make(chan string, 10)}
	w.d = newTestDataplane(t, w.k, t.TempDir(), WithClock(w.clk), WithVerifyEvery(testEvery))
	if err := w.d.Reconcile(context.Background(), siteState()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.d.Watch(ctx, func(r string) { w.reasons <- r }) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Watch: %v", err)
		}
	})
	w.armed(t)
	return w
}

// armed waits until Watch waits for its next period.
func (w *watched) armed(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for w.clk.Timers() != 1 {
		if time.Now().After(deadline) {
			t.Fatal("Watch does not wait for its period")
		}
		time.Sleep(time.Millisecond)
	}
}

// period lets one verification period pass, and returns what Watch
// reported ("" for nothing).
func (w *watched) period(t *testing.T) string {
	t.Helper()
	w.clk.Advance(testEvery)
	w.armed(t)
	select {
	case r := <-w.reasons:
		return r
	default:
		return ""
	}
}

func (w *watched) lists() int {
	w.k.mu.Lock()
	defer w.k.mu.Unlock()
	n := 0
	for _, op := range w.k.ops {
		if op == "list" {
			n++
		}
	}
	return n
}

// byHand changes the kernel as ipvsadm would.
func (w *watched) byHand(t *testing.T, r request) {
	t.Helper()
	if err := w.k.Apply([]request{r})[0]; err != nil {
		t.Fatal(err)
	}
}

// TestWatchRestoresByHand: a service deleted by hand, a real server's
// weight edited by hand and a real server deleted by hand are each
// reported at the next period, and the next Reconcile puts them back,
// counting what it put back. Nothing is reported when nothing changed, or
// for a service that is not halb's.
func TestWatchRestoresByHand(t *testing.T) {
	w := startWatch(t)
	site := siteState()
	http := site.Services[0]
	edited := http.Reals[1]
	edited.Weight = 7
	for _, tc := range []struct {
		name    string
		by      request
		reason  string
		changes int
	}{
		{"service deleted", request{cmd: cmdDelService, svc: toKernel(http)},
			"ipvs service tcp 192.0.2.9:80 deleted by another process (and 2 more differences)", 3},
		{"weight edited", request{cmd: cmdSetDest, svc: toKernel(http), dest: realToKernel(edited)},
			"real 198.51.100.12:80 of ipvs service tcp 192.0.2.9:80 changed by another process", 1},
		{"real deleted", request{cmd: cmdDelDest, svc: toKernel(http), dest: realToKernel(http.Reals[0])},
			"real 198.51.100.11:80 of ipvs service tcp 192.0.2.9:80 deleted by another process", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if r := w.period(t); r != "" {
				t.Fatalf("nothing changed, yet Watch reported %q", r)
			}
			w.byHand(t, tc.by)
			before := w.lists()
			w.clk.Advance(testEvery - time.Millisecond)
			if w.lists() != before {
				t.Fatal("the kernel was read before the period was over")
			}
			w.clk.Advance(time.Millisecond)
			w.armed(t)
			if r := <-w.reasons; r != tc.reason {
				t.Errorf("reason %q, want %q", r, tc.reason)
			}
			if err := w.d.Reconcile(context.Background(), site); err != nil {
				t.Fatal(err)
			}
			assertKernel(t, w.k, site)
			if n := w.d.Changes(); n != tc.changes {
				t.Errorf("Changes() = %d after the restore, want %d", n, tc.changes)
			}
		})
	}

	// Another's service is no business of halb's.
	other := dataplane.VirtualService{Key: dataplane.ServiceKey{Family: 4, Protocol: "tcp", Addr: vip4, Port: 8080}, Scheduler: "rr"}
	w.byHand(t, request{cmd: cmdNewService, svc: toKernel(other)})
	if r := w.period(t); r != "" {
		t.Errorf("another's service added: Watch reported %q", r)
	}
}

// TestWatchReadFails: a read that fails (as when a service goes between
// the list and its real servers' dump) is made again at once; one that
// fails again is tried at the next period.
func TestWatchReadFails(t *testing.T) {
	w := startWatch(t)
	http := siteState().Services[0]
	w.byHand(t, request{cmd: cmdDelService, svc: toKernel(http)})
	w.k.mu.Lock()
	w.k.fail["list"] = 1
	w.k.mu.Unlock()
	if r := w.period(t); !strings.Contains(r, "tcp 192.0.2.9:80 deleted") {
		t.Fatalf("a read failing once: the period reported %q, want the deleted service", r)
	}
	if err := w.d.Reconcile(context.Background(), siteState()); err != nil {
		t.Fatal(err)
	}
	w.byHand(t, request{cmd: cmdDelService, svc: toKernel(http)})
	w.k.mu.Lock()
	w.k.fail["list"] = 2
	w.k.mu.Unlock()
	if r := w.period(t); r != "" {
		t.Fatalf("a read failing twice reported %q", r)
	}
	if r := w.period(t); !strings.Contains(r, "tcp 192.0.2.9:80 deleted") {
		t.Errorf("the next period reported %q, want the deleted service", r)
	}
}

// TestDescribeDrift names a real server added by hand, and a service
// edited by hand.
func TestDescribeDrift(t *testing.T) {
	http := siteState().Services[0]
	for _, tc := range []struct {
		diff dataplane.Diff
		want string
	}{
		{dataplane.Diff{Reals: []dataplane.RealChange{{Op: dataplane.Delete, Service: http.Key, Have: http.Reals[0]}}},
			"real 198.51.100.11:80 added to ipvs service tcp 192.0.2.9:80 by another process"},
		{dataplane.Diff{Services: []dataplane.ServiceChange{{Op: dataplane.Update, Have: http, Want: http}}},
			"ipvs service tcp 192.0.2.9:80 changed by another process"},
	} {
		if got := describeDrift(tc.diff); got != tc.want {
			t.Errorf("describeDrift = %q, want %q", got, tc.want)
		}
	}
}
