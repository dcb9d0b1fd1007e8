package health

import (
	"context"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"halb/internal/clock/clocktest"
	"halb/internal/config"
	"halb/internal/event"
)

// fakeTarget is a server whose health the test sets.
type fakeTarget struct {
	ok      atomic.Bool
	weight  atomic.Int64
	calls   atomic.Int64
	running atomic.Int64
	block   chan struct{} // when set, probes wait on it
}

type fakeNet struct {
	mu      sync.Mutex
	targets map[netip.AddrPort]*fakeTarget
}

func (n *fakeNet) target(ap netip.AddrPort) *fakeTarget {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.targets == nil {
		n.targets = map[netip.AddrPort]*fakeTarget{}
	}
	t := n.targets[ap]
	if t == nil {
		t = &fakeTarget{}
		t.ok.Store(true)
		t.weight.Store(-1)
		n.targets[ap] = t
	}
	return t
}

func (n *fakeNet) newProber(spec probeSpec, _ netEnv) prober {
	return onGoroutine{fakeProber{spec: spec, t: n.target(spec.target)}}
}

type fakeProber struct {
	spec probeSpec
	t    *fakeTarget
}

func (p fakeProber) probe(ctx context.Context) Result {
	p.t.calls.Add(1)
	p.t.running.Add(1)
	defer p.t.running.Add(-1)
	if p.t.block != nil {
		select {
		case <-p.t.block:
		case <-ctx.Done():
			return fail("fake %s: timeout", p.spec.target)
		}
	}
	if p.t.ok.Load() {
		r := pass("fake %s ok", p.spec.target)
		r.Weight = int(p.t.weight.Load())
		return r
	}
	return fail("fake %s refused", p.spec.target)
}

// harness runs a Checker with a fake clock and fake targets inside a
// synctest bubble and records its events.
type harness struct {
	t      *testing.T
	clk    *clocktest.Clock
	net    *fakeNet
	c      *Checker
	mu     sync.Mutex
	events []event.Health
	cancel context.CancelFunc
	done   chan error
}

func startHarness(t *testing.T, cfg *config.Config, opts ...Option) *harness {
	return startHarnessWith(t, cfg, &fakeNet{}, opts...)
}

func startHarnessWith(t *testing.T, cfg *config.Config, fn *fakeNet, opts ...Option) *harness {
	h := &harness{t: t, clk: clocktest.New(time.Time{}), net: fn, done: make(chan error, 1)}
	h.c = New(cfg, append([]Option{WithClock(h.clk)}, opts...)...)
	if fn != nil {
		h.c.newProber = fn.newProber
	}
	ctx, cancel := context.WithCancel(t.Context())
	h.cancel = cancel
	evc := make(chan event.Health)
	go func() {
		for ev := range evc {
			h.mu.Lock()
			h.events = append(h.events, ev)
			h.mu.Unlock()
		}
	}()
	go func() {
		h.done <- h.c.Run(ctx, evc)
		close(evc)
	}()
	synctest.Wait()
	t.Cleanup(h.stop)
	return h
}

func (h *harness) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	h.cancel = nil
	if err := <-h.done; err != nil {
		h.t.Errorf("Run: %v", err)
	}
}

// advance moves the fake time on in small steps, letting the checker
// settle after each.
func (h *harness) advance(d time.Duration) {
	const step = 10 * time.Millisecond
	for ; d > 0; d -= step {
		h.clk.Advance(min(step, d))
		synctest.Wait()
	}
}

// take returns and forgets the events seen so far.
func (h *harness) take() []event.Health {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := h.events
	h.events = nil
	return out
}

// parse builds a validated configuration from YAML.
func parse(t *testing.T, yaml string) *config.Config {
	t.Helper()
	cfg, diags := config.Parse("test.yaml", []byte(yaml), config.Options{Hostname: "lb-test"})
	if diags.HasErrors() {
		t.Fatalf("config: %v", diags)
	}
	return cfg
}
