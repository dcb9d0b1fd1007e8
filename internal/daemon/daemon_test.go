package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"halb/internal/config"
	"halb/internal/dataplane"
	"halb/internal/engine"
	"halb/internal/event"
	"halb/internal/metrics"
	"halb/internal/notify"
)

// fakePlane is a data plane that keeps the states it is given.
type fakePlane struct {
	mu     sync.Mutex
	states []dataplane.State
}

func (p *fakePlane) Reconcile(_ context.Context, want dataplane.State) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.states = append(p.states, want)
	return nil
}

func (p *fakePlane) Close() error { return nil }

// changes counts the reconciles that changed the state.
func (p *fakePlane) changes() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for i := range p.states {
		if i == 0 || dataplane.Compute(p.states[i-1], p.states[i]).Size() > 0 {
			n++
		}
	}
	return n
}

// fakePart is an announcer or a health checker that runs until stopped
// and keeps the configurations it is reloaded with.
type fakePart[T any] struct {
	mu      sync.Mutex
	reloads []*config.Config
	err     error // what Run returns
}

func (f *fakePart[T]) Run(ctx context.Context, _ chan<- T) error {
	if f.err != nil {
		return f.err
	}
	<-ctx.Done()
	return nil
}

func (f *fakePart[T]) Reload(cfg *config.Config) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reloads = append(f.reloads, cfg)
	return nil
}

func (f *fakePart[T]) reloaded() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.reloads)
}

// fakeNotifier keeps the events it is given while it runs.
type fakeNotifier struct {
	name    string
	mu      sync.Mutex
	events  []event.Record
	stopped bool
}

func (n *fakeNotifier) Sink(r event.Record) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.events = append(n.events, r)
}

func (n *fakeNotifier) Run(ctx context.Context) {
	<-ctx.Done()
	n.mu.Lock()
	n.stopped = true
	n.mu.Unlock()
}

func (n *fakeNotifier) Stats() []notify.Stats { return []notify.Stats{{Name: n.name}} }

func (n *fakeNotifier) state() (kinds []string, stopped bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, e := range n.events {
		kinds = append(kinds, e.Kind)
	}
	return kinds, n.stopped
}

// harness is a daemon on fake parts, and what they were asked for.
type harness struct {
	t   *testing.T
	dir string
	d   *Daemon
	dp  *fakePlane

	mu         sync.Mutex
	next       string // the configuration Load reads
	notifiers  []*fakeNotifier
	listens    []string       // the addresses asked for
	lns        []net.Listener // what was opened in their place
	announcers []*fakePart[event.VRRP]
	lo         *fakeLoopback
}

// yaml is a configuration: node, one service, a webhook per notify, the
// metrics address and extra lines.
func (h *harness) yaml(hook, metrics string, extra ...string) string {
	return fmt.Sprintf(`node: lb-a
dataplane: none
state_dir: %s
services:
  - {name: web, vips: [192.0.2.9], ports: [80], forward: nat, pool: www}
pools:
  www:
    servers: [{address: 198.51.100.11}]
notify:
  webhooks: [{url: %q}]
api: {socket: %s, metrics: %q}
`, filepath.Join(h.dir, "state"), hook, filepath.Join(h.dir, "halb.sock"), metrics) + strings.Join(extra, "")
}

// start runs a daemon on src (socket and state in the test's directory)
// with the command line's overrides ov (nil: none) until the test ends.
func start(t *testing.T, src func(h *harness) string, ov func(h *harness) Overrides) *harness {
	t.Helper()
	h := &harness{t: t, dir: t.TempDir(), dp: &fakePlane{}, lo: &fakeLoopback{}}
	h.next = src(h)
	var overrides Overrides
	if ov != nil {
		overrides = ov(h)
	}
	cfg, diags := h.load()
	if cfg == nil {
		t.Fatal(diags)
	}
	vrrp := VRRP
	vrrp.New = func(*config.Config, *slog.Logger, *metrics.Metrics) (engine.Announcer, error) {
		a := &fakePart[event.VRRP]{}
		h.mu.Lock()
		h.announcers = append(h.announcers, a)
		h.mu.Unlock()
		return a, nil
	}
	parts := Parts{
		Dataplane:  func(*config.Config, *slog.Logger) (Plane, error) { return Plane{Dataplane: h.dp, Name: "fake"}, nil },
		Announcers: []AnnouncerKind{vrrp, bgpKind(h.lo)},
		HealthChecker: func(*config.Config, *slog.Logger, *metrics.Metrics) engine.HealthChecker {
			return &fakePart[event.Health]{}
		},
		Notifier: func(cfg *config.Config, _ notify.StatusFunc, _ *slog.Logger, _ string) (Notifier, error) {
			n := &fakeNotifier{name: cfg.Notify.Webhooks[0].URL}
			h.mu.Lock()
			h.notifiers = append(h.notifiers, n)
			h.mu.Unlock()
			return n, nil
		},
		Listen: func(network, addr string) (net.Listener, error) {
			h.mu.Lock()
			defer h.mu.Unlock()
			ln, err := net.Listen(network, "127.0.0.1:0")
			if err == nil {
				h.listens = append(h.listens, addr)
				h.lns = append(h.lns, ln)
			}
			return ln, err
		},
	}
	d, err := New(Options{Config: cfg, Path: "halb.yaml", Load: h.load, Overrides: overrides, Parts: parts,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	h.d = d
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	h.waitFor("the engine to answer", func() bool {
		c, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		_, err := d.eng.Status(c)
		return err == nil
	})
	return h
}

func (h *harness) load() (*config.Config, config.Diagnostics) {
	h.mu.Lock()
	src := h.next
	h.mu.Unlock()
	return config.Parse("halb.yaml", []byte(src), config.Options{Hostname: "t"})
}

// reload makes src the file's configuration and reloads.
func (h *harness) reload(src string) error {
	h.mu.Lock()
	h.next = src
	h.mu.Unlock()
	return h.d.Reload(h.t.Context())
}

func (h *harness) waitFor(what string, cond func() bool) {
	h.t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			h.t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// parts is what the daemon has built and runs.
type parts struct {
	cfg                 *config.Config
	notifiers, listens  int
	notifier            Notifier
	srv                 *http.Server
	announcers, changes int
}

func (h *harness) parts() parts {
	h.mu.Lock()
	n, l, a := len(h.notifiers), len(h.listens), len(h.announcers)
	h.mu.Unlock()
	h.d.mu.Lock()
	defer h.d.mu.Unlock()
	return parts{cfg: h.d.cfg, notifiers: n, listens: l, notifier: h.d.notifier, srv: h.d.srv, announcers: a,
		changes: h.dp.changes()}
}

// get fetches /metrics from the i-th listener opened.
func (h *harness) get(i int) error {
	h.mu.Lock()
	addr := h.lns[i].Addr().String()
	h.mu.Unlock()
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + addr + "/metrics")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	return nil
}

// lastReload is the last reload event.
func (h *harness) lastReload() *event.Reload {
	h.t.Helper()
	evs, err := h.d.eng.Events(h.t.Context(), 0)
	if err != nil {
		h.t.Fatal(err)
	}
	for i := len(evs) - 1; i >= 0; i-- {
		if evs[i].Reload != nil {
			return evs[i].Reload
		}
	}
	return nil
}

// TestReloadRefusesWhatOnlyARestartApplies: a reload changing the data
// plane, the status socket, the state directory or the network
// namespace, or adding VRRP to a
// node that started without it, is refused, recorded as an event, and
// changes nothing — unless the command line overrides the setting.
func TestReloadRefusesWhatOnlyARestartApplies(t *testing.T) {
	const vrrp = "vrrp:\n  instances:\n    - {name: a, interface: eth0, vrid: 1, priority: 100, vips: [192.0.2.9/24]}\n"
	for _, tt := range []struct {
		name string
		ov   func(h *harness) Overrides
		next func(h *harness) string
		want string // "": applied
	}{
		{"dataplane", nil, func(h *harness) string {
			return strings.Replace(h.yaml("http://a/", ""), "dataplane: none", "dataplane: nftables", 1)
		}, "dataplane: changed from none to nftables; restart halb to apply it"},
		{"dataplane overridden", func(*harness) Overrides { return Overrides{Dataplane: "none"} }, func(h *harness) string {
			return strings.Replace(h.yaml("http://a/", ""), "dataplane: none", "dataplane: nftables", 1)
		}, ""},
		{"socket", nil, func(h *harness) string {
			return strings.Replace(h.yaml("http://a/", ""), "halb.sock", "other.sock", 1)
		}, "api.socket: changed from "},
		{"socket overridden", func(h *harness) Overrides { return Overrides{Socket: filepath.Join(h.dir, "halb.sock")} },
			func(h *harness) string { return strings.Replace(h.yaml("http://a/", ""), "halb.sock", "other.sock", 1) }, ""},
		{"state_dir", nil, func(h *harness) string {
			return strings.Replace(h.yaml("http://a/", ""), "/state", "/other", 1)
		}, "state_dir: changed; restart halb to apply it"},
		{"nftables", nil, func(h *harness) string {
			return h.yaml("http://a/", "", "nftables: {table: other}\n")
		}, "nftables: changed; restart halb to apply it"},
		{"net_namespace", nil, func(h *harness) string {
			return h.yaml("http://a/", "", "net_namespace: other\n")
		}, `net_namespace: changed from "" to "other"; restart halb to apply it`},
		{"vrrp added", nil, func(h *harness) string {
			return h.yaml("http://a/", "", vrrp)
		}, "vrrp.instances: this node started without VRRP; restart halb to start it"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := start(t, func(h *harness) string { return h.yaml("http://a/", "") }, tt.ov)
			before := h.parts()
			err := h.reload(tt.next(h))
			after := h.parts()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("reload: %v", err)
				}
				if after.cfg == before.cfg {
					t.Error("the reload was not applied")
				}
				return
			}
			var refused *RefusedError
			if !errors.As(err, &refused) || !strings.Contains(strings.Join(refused.Errors, "; "), tt.want) {
				t.Fatalf("reload: %v, want refused with %q", err, tt.want)
			}
			if after != before {
				t.Errorf("a refused reload changed the daemon: %+v, was %+v", after, before)
			}
			if r := h.lastReload(); r == nil || r.Applied || !strings.Contains(strings.Join(r.Errors, "; "), tt.want) {
				t.Errorf("last reload event %+v, want the refusal", r)
			}
		})
	}
}

// TestReloadMovesNotifiersAndMetrics: a changed notify section replaces
// the notifiers — the reload's event and what follows go to the new ones,
// the old ones stop — and a changed api.metrics moves the listener: the
// new one serves, the old one is closed.
func TestReloadMovesNotifiersAndMetrics(t *testing.T) {
	h := start(t, func(h *harness) string { return h.yaml("http://a/", "127.0.0.1:9470") }, nil)
	if err := h.get(0); err != nil {
		t.Fatalf("the first listener: %v", err)
	}
	if err := h.reload(h.yaml("http://b/", "127.0.0.1:9471")); err != nil {
		t.Fatalf("reload: %v", err)
	}
	p := h.parts()
	if p.notifiers != 2 || p.notifier != h.notifiers[1] {
		t.Fatalf("%d notifiers built, running %v; want the second running", p.notifiers, p.notifier)
	}
	h.waitFor("the old notifier to stop", func() bool { _, stopped := h.notifiers[0].state(); return stopped })
	if kinds, _ := h.notifiers[0].state(); strings.Contains(strings.Join(kinds, " "), "reload") {
		t.Errorf("the old notifier got the reload that replaced it: %v", kinds)
	}
	if kinds, stopped := h.notifiers[1].state(); len(kinds) != 1 || kinds[0] != "reload" || stopped {
		t.Errorf("the new notifier got %v (stopped %v), want the reload, running", kinds, stopped)
	}
	if want := []string{"127.0.0.1:9470", "127.0.0.1:9471"}; fmt.Sprint(h.listens) != fmt.Sprint(want) {
		t.Errorf("listened on %v, want %v", h.listens, want)
	}
	if err := h.get(1); err != nil {
		t.Errorf("the new listener: %v", err)
	}
	if err := h.get(0); err == nil {
		t.Error("the old listener still serves")
	}
	// Without api.metrics, no listener.
	if err := h.reload(h.yaml("http://b/", "")); err != nil {
		t.Fatalf("reload: %v", err)
	}
	if p := h.parts(); p.srv != nil || p.notifiers != 2 || p.listens != 2 {
		t.Errorf("after removing api.metrics: %+v, want no listener and the same notifier", p)
	}
	if err := h.get(1); err == nil {
		t.Error("the listener still serves after api.metrics was removed")
	}
}

// TestReloadOfABadConfigChangesNothing: a configuration with errors is
// refused with its errors, recorded as an event, and nothing is built or
// replaced.
func TestReloadOfABadConfigChangesNothing(t *testing.T) {
	h := start(t, func(h *harness) string { return h.yaml("http://a/", "127.0.0.1:9470") }, nil)
	before := h.parts()
	err := h.reload(h.yaml("http://b/", "127.0.0.1:9471", "vrrp:\n  instances:\n    - {name: a, vrid: 300}\n"))
	var refused *RefusedError
	if !errors.As(err, &refused) || !strings.Contains(refused.Reason, "the new configuration has errors") ||
		!strings.Contains(strings.Join(refused.Errors, "\n"), "vrid") {
		t.Fatalf("reload: %v, want refused with the vrid error", err)
	}
	if after := h.parts(); after != before {
		t.Errorf("a refused reload changed the daemon: %+v, was %+v", after, before)
	}
	if r := h.lastReload(); r == nil || r.Applied || len(r.Errors) != len(refused.Errors) || r.File != "halb.yaml" {
		t.Errorf("last reload event %+v, want the refusal with its %d errors", r, len(refused.Errors))
	}
	if err := h.get(0); err != nil {
		t.Errorf("the listener after a refused reload: %v", err)
	}
	if st, err := h.d.status(t.Context()); err != nil || st.LastReload.Applied || !slices.Equal(st.LastReload.Errors, refused.Errors) {
		t.Errorf("status last_reload %+v (%v), want the refusal with its errors", st.LastReload, err)
	}
	if err := h.reload(h.yaml("http://a/", "127.0.0.1:9470")); err != nil {
		t.Fatalf("good reload: %v", err)
	}
	if st, err := h.d.status(t.Context()); err != nil || !st.LastReload.Applied || len(st.LastReload.Errors) != 0 {
		t.Errorf("status last_reload %+v (%v) after a good reload, want applied", st.LastReload, err)
	}
}

// TestReloadOfAnUnchangedConfigAppliesNothing: the same configuration
// again is applied (and recorded) without a new notifier, listener or data
// plane change; the parts are reloaded and keep their state.
func TestReloadOfAnUnchangedConfigAppliesNothing(t *testing.T) {
	const vrrp = "vrrp:\n  instances:\n    - {name: a, interface: eth0, vrid: 1, priority: 100, vips: [192.0.2.9/24]}\n"
	h := start(t, func(h *harness) string { return h.yaml("http://a/", "127.0.0.1:9470", vrrp) }, nil)
	before := h.parts()
	if before.announcers != 1 {
		t.Fatalf("%d announcers built, want VRRP", before.announcers)
	}
	if err := h.reload(h.yaml("http://a/", "127.0.0.1:9470", vrrp)); err != nil {
		t.Fatalf("reload: %v", err)
	}
	after := h.parts()
	if after.cfg == before.cfg {
		t.Error("the reload was not applied")
	}
	after.cfg = before.cfg
	if after != before {
		t.Errorf("an unchanged configuration changed the daemon: %+v, was %+v", after, before)
	}
	if r := h.lastReload(); r == nil || !r.Applied || len(r.Changes) != 0 {
		t.Errorf("last reload event %+v, want applied without changes", r)
	}
	if n := h.announcers[0].reloaded(); n != 1 {
		t.Errorf("the announcer was reloaded %d times, want 1", n)
	}
}

// TestAnnouncersRunSideBySide: several announcers run as one; each is
// reloaded, and one that fails stops the others.
func TestAnnouncersRunSideBySide(t *testing.T) {
	a, b := &fakePart[event.VRRP]{}, &fakePart[event.VRRP]{}
	kind := func(a engine.Announcer) AnnouncerKind {
		return AnnouncerKind{Configured: func(*config.Config) bool { return true },
			New: func(*config.Config, *slog.Logger, *metrics.Metrics) (engine.Announcer, error) { return a, nil }}
	}
	none := AnnouncerKind{Configured: func(*config.Config) bool { return false }}
	cfg := &config.Config{}
	if got, err := newAnnouncers([]AnnouncerKind{none}, cfg, slog.Default(), nil); got != nil || err != nil {
		t.Errorf("no announcer configured: %v, %v, want nil", got, err)
	}
	if got, err := newAnnouncers([]AnnouncerKind{kind(a), none}, cfg, slog.Default(), nil); got != a || err != nil {
		t.Errorf("one announcer configured: %v, %v, want it alone", got, err)
	}
	as, _ := newAnnouncers([]AnnouncerKind{kind(a), kind(b)}, cfg, slog.Default(), nil)
	if err := as.Reload(cfg); err != nil || a.reloaded() != 1 || b.reloaded() != 1 {
		t.Errorf("reload: %v; reloaded %d and %d times, want once each", err, a.reloaded(), b.reloaded())
	}
	b.err = errors.New("no route")
	done := make(chan error, 1)
	go func() { done <- as.Run(t.Context(), nil) }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "no route") {
			t.Errorf("Run: %v, want the failure", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a failed announcer did not stop the others")
	}
}
