package engine

import (
	"context"
	"errors"
	"iter"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"halb/internal/clock"
	"halb/internal/config"
	"halb/internal/dataplane"
	"halb/internal/event"
)

// Engine owns halb's running state. One goroutine (Run) folds events into
// it and reconciles the data plane; everything else asks that goroutine.
type Engine struct {
	log       *slog.Logger
	clock     clock.Clock
	dp        dataplane.Dataplane
	dpName    string
	announcer Announcer
	checker   HealthChecker
	version   string
	retry     time.Duration

	// Owned by the Run goroutine.
	cfg    *config.Config
	vrrp   map[string]event.VRRP
	health map[ServerRef]event.Health
	// serverHealth is health as Desired takes it.
	serverHealth map[ServerRef]ServerHealth
	quorum       map[string]bool
	eval         Evaluation
	// changed names the pools whose health changed since eval; stale is
	// set when eval must be computed anew (start, reload).
	changed map[string]bool
	stale   bool
	// gen numbers the states given to the data plane (dataplane.Delta).
	gen      uint64
	last     Reconcile
	started  time.Time
	reloaded time.Time
	requests chan func()
	// reported holds events reported from other goroutines (Reporter)
	// until the Run goroutine records them; reportedC wakes it.
	reportMu  sync.Mutex
	reported  []event.Record
	reportedC chan struct{}
	history   []event.Record
	seq       uint64
	sinks     []func(event.Record)

	// resyncs are the reasons given to Resync since the Run goroutine
	// last reconciled for them (under reportMu); resyncC wakes it.
	resyncs []string
	resyncC chan struct{}
}

// Option configures an Engine.
type Option func(*Engine)

// WithLogger sets the logger (default: slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(e *Engine) { e.log = l } }

// WithClock sets the time source (default clock.Real).
func WithClock(c clock.Clock) Option { return func(e *Engine) { e.clock = c } }

// WithAnnouncer sets who owns the VIPs (VRRP); nil means none.
func WithAnnouncer(a Announcer) Option { return func(e *Engine) { e.announcer = a } }

// WithHealthChecker sets the health checker; nil means every server is up.
func WithHealthChecker(h HealthChecker) Option { return func(e *Engine) { e.checker = h } }

// WithVersion sets the version reported in status.
func WithVersion(v string) Option { return func(e *Engine) { e.version = v } }

// WithRetryInterval sets how long to wait before retrying a failed
// reconcile (default 1s, doubling up to 30s).
func WithRetryInterval(d time.Duration) Option { return func(e *Engine) { e.retry = d } }

// New returns an engine for cfg that applies its desired state through dp,
// known in status as dpName. It starts nothing: call Run.
func New(cfg *config.Config, dp dataplane.Dataplane, dpName string, opts ...Option) *Engine {
	e := &Engine{
		log: slog.Default(), clock: clock.Real{}, dp: dp, dpName: dpName, cfg: cfg, retry: time.Second,
		vrrp: map[string]event.VRRP{}, health: map[ServerRef]event.Health{}, quorum: map[string]bool{},
		serverHealth: map[ServerRef]ServerHealth{}, changed: map[string]bool{}, stale: true,
		requests: make(chan func()), reportedC: make(chan struct{}, 1), resyncC: make(chan struct{}, 1),
	}
	for _, o := range opts {
		o(e)
	}
	if r, ok := e.announcer.(Reporter); ok {
		r.ReportTo(e.report)
	}
	return e
}

// ErrNotRunning is returned by requests to an engine that is not running.
var ErrNotRunning = errors.New("engine is not running")

// do runs f on the engine goroutine and waits for it.
func (e *Engine) do(ctx context.Context, f func()) error {
	done := make(chan struct{})
	select {
	case e.requests <- func() { f(); close(done) }:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Status returns a snapshot of the running state.
func (e *Engine) Status(ctx context.Context) (Status, error) {
	var st Status
	err := e.do(ctx, func() { st = e.status() })
	return st, err
}

// Reload switches to a new, validated configuration: the announcer and
// the health checker keep what did not change, and the data plane gets
// only the difference.
func (e *Engine) Reload(ctx context.Context, cfg *config.Config) error {
	var err error
	if derr := e.do(ctx, func() { err = e.reload(cfg) }); derr != nil {
		return derr
	}
	return err
}

func (e *Engine) reload(cfg *config.Config) error {
	var errs []error
	if e.announcer != nil {
		errs = append(errs, e.announcer.Reload(cfg))
	}
	if e.checker != nil {
		errs = append(errs, e.checker.Reload(cfg))
	}
	// A configuration that changes pools only is evaluated for those
	// pools, as a health change is.
	if pools, ok := cfg.ChangedSince(e.cfg); ok && !e.stale {
		for _, name := range pools {
			e.changed[name] = true
		}
	} else {
		e.stale = true
	}
	e.cfg = cfg
	e.reloaded = e.clock.Now()
	e.forgetRemoved()
	before := e.eval.State
	e.apply(context.Background())
	changes := dataplane.Compute(before, e.eval.State).Lines()
	e.log.Info("configuration reloaded", "file", cfg.File, "changes", len(changes))
	e.record(event.Record{Kind: "reload", Summary: reloadSummary(cfg.File, changes),
		Reload: &event.Reload{At: e.clock.Now(), File: cfg.File, Applied: true, Changes: changes}})
	return errors.Join(errs...)
}

// forgetRemoved drops state of instances and servers the new config lacks.
func (e *Engine) forgetRemoved() {
	for name := range e.vrrp {
		if _, ok := e.cfg.Instance(name); !ok {
			delete(e.vrrp, name)
		}
	}
	for ref := range e.health {
		if !e.cfg.HasServer(ref.Pool, ref.Addr, ref.Port) {
			delete(e.health, ref)
			delete(e.serverHealth, ref)
		}
	}
}

// Run runs the engine until ctx is done. The announcer releases its VIPs
// before Run returns; the data plane keeps its state.
func (e *Engine) Run(ctx context.Context) error {
	e.started, e.reloaded = e.clock.Now(), e.clock.Now()
	subCtx, cancel := context.WithCancel(context.Background())
	defer cancel()
	vrrpEvents := make(chan event.VRRP, 64)
	healthEvents := make(chan event.Health, 256)
	var wg sync.WaitGroup
	errc := make(chan error, 2)
	if e.announcer != nil {
		wg.Go(func() { errc <- wrap("announcer", e.announcer.Run(subCtx, vrrpEvents)) })
	}
	if e.checker != nil {
		wg.Go(func() { errc <- wrap("health checks", e.checker.Run(subCtx, healthEvents)) })
	}
	stopped := make(chan struct{})
	go func() { wg.Wait(); close(stopped) }()

	e.apply(ctx)
	var retry clock.Timer
	retryC := func() <-chan time.Time {
		if retry == nil {
			return nil
		}
		return retry.C()
	}
	backoff := e.retry
	var runErr error
	for {
		if e.last.Error != "" && retry == nil {
			retry = e.clock.NewTimer(backoff)
			backoff = min(2*backoff, 30*time.Second)
		} else if e.last.Error == "" {
			backoff = e.retry
		}
		select {
		case <-ctx.Done():
			cancel()
			// Keep folding events while the subsystems shut down, so that
			// their last transitions are logged.
			for {
				select {
				case ev := <-vrrpEvents:
					e.onVRRP(ev)
				case <-healthEvents:
				case err := <-errc:
					runErr = errors.Join(runErr, err)
				case <-e.reportedC:
					e.recordReported()
				case <-stopped:
					e.recordReported()
					return errors.Join(runErr, e.dp.Close())
				}
			}
		case err := <-errc:
			if err != nil {
				e.log.Error("subsystem stopped", "err", err)
				runErr = errors.Join(runErr, err)
				cancel()
			}
		case ev := <-vrrpEvents:
			e.onVRRP(ev)
			e.apply(ctx)
		case ev := <-healthEvents:
			e.onHealth(ev)
			for queued := len(healthEvents); queued > 0; queued-- {
				e.onHealth(<-healthEvents) // one update for a burst
			}
			e.apply(ctx)
		case f := <-e.requests:
			f()
		case <-e.reportedC:
			e.recordReported()
		case <-e.resyncC:
			e.resync(ctx)
		case <-retryC():
			retry = nil
			e.apply(ctx)
		}
	}
}

func wrap(what string, err error) error {
	if err == nil {
		return nil
	}
	return errors.New(what + ": " + err.Error())
}

func (e *Engine) onVRRP(ev event.VRRP) {
	if ev.Notice {
		e.record(event.Record{At: ev.At, Kind: "vrrp", Summary: vrrpSummary(ev), VRRP: &ev})
		return
	}
	prev, had := e.vrrp[ev.Instance]
	e.vrrp[ev.Instance] = ev
	if !had || prev.New != ev.New {
		// The announcer logs its own transitions.
		e.record(event.Record{At: ev.At, Kind: "vrrp", Summary: vrrpSummary(ev), VRRP: &ev})
	}
}

func (e *Engine) onHealth(ev event.Health) {
	ref := ServerRef{Pool: ev.Pool, Addr: ev.Addr, Port: ev.Port}
	prev, had := e.health[ref]
	e.health[ref] = ev
	e.serverHealth[ref] = ServerHealth{Up: ev.Up, Weight: ev.Weight, Reason: ev.Reason}
	e.changed[ev.Pool] = true
	if !had || prev.Up != ev.Up {
		state := "DOWN"
		if ev.Up {
			state = "UP"
		}
		e.log.Info("server health", "pool", ev.Pool, "server", ev.Addr, "port", ev.Port, "state", state, "reason", ev.Reason)
		e.record(event.Record{At: ev.At, Kind: "health", Summary: healthSummary(ev), Health: &ev})
	}
}

// inputs gathers the state Desired depends on.
func (e *Engine) inputs() Inputs {
	in := Inputs{Config: e.cfg, VRRP: map[string]string{}, Health: e.serverHealth, QuorumUp: e.quorum}
	for name, ev := range e.vrrp {
		in.VRRP[name] = ev.New
	}
	return in
}

// evaluate brings e.eval up to date: anew after a start or reload, else
// only for the pools whose health changed. It returns the indexes of the
// services that may differ from those of the state before, and false
// when that state's services cannot be told apart so (one went).
func (e *Engine) evaluate() ([]int, bool) {
	if e.stale {
		e.stale = false
		clear(e.changed)
		before := e.eval.State
		e.eval = Desired(e.inputs())
		e.foldQuorum(maps.Keys(e.eval.Pools))
		maps.DeleteFunc(e.quorum, func(name string, _ bool) bool { _, ok := e.eval.Pools[name]; return !ok })
		return dataplane.Since(before, e.eval.State)
	}
	changed := slices.Collect(maps.Keys(e.changed))
	clear(e.changed)
	redone := e.eval.Update(e.inputs(), changed)
	e.foldQuorum(slices.Values(changed))
	return redone, true
}

// foldQuorum records the pools among names whose quorum changed, and
// remembers their quorum for the hysteresis of the next evaluation.
func (e *Engine) foldQuorum(names iter.Seq[string]) {
	for name := range names {
		ps, ok := e.eval.Pools[name]
		if !ok {
			continue
		}
		if prev, ok := e.quorum[name]; ok && prev != ps.QuorumUp {
			q := event.Quorum{At: e.clock.Now(), Pool: name, Up: ps.QuorumUp, HealthyWeight: ps.HealthyWeight,
				Quorum: e.cfg.Pools[name].Quorum, SorryActive: ps.SorryActive}
			e.log.Warn(quorumSummary(q))
			e.record(event.Record{Kind: "quorum", Summary: quorumSummary(q), Quorum: &q})
		}
		e.quorum[name] = ps.QuorumUp
	}
}

// apply computes the desired state and reconciles the data plane.
func (e *Engine) apply(ctx context.Context) {
	before := e.eval.State
	changed, ok := e.evaluate()
	e.last = Reconcile{At: e.clock.Now(), Changes: dataplane.Compute(before, e.eval.State).Size()}
	e.gen++
	want := e.eval.State
	want.Delta = &dataplane.Delta{Gen: e.gen}
	if ok {
		want.Delta.From, want.Delta.Services = e.gen-1, changed
	}
	err := e.dp.Reconcile(ctx, want)
	if n, ok := dataplane.ChangesOf(e.dp); ok && err == nil {
		e.last.Changes = n // what the kernel needed, not what the state did
	}
	if err != nil {
		e.last.Error = err.Error()
		e.log.Error("data plane update failed; retrying", "err", err)
		e.record(event.Record{Kind: "dataplane", Summary: "data plane update failed: " + err.Error(),
			Dataplane: &event.DataplaneError{At: e.clock.Now(), Err: err.Error()}})
	}
	if o, ok := e.announcer.(ServingObserver); ok {
		o.Serving(e.serving())
	}
}

// serving tells what the node can serve after the last reconcile.
func (e *Engine) serving() Serving {
	s := Serving{Programmed: e.last.Error == "", VIPs: map[netip.Addr][]VIPService{}}
	for _, svc := range e.cfg.Services {
		q, checked := e.eval.Pools[svc.Pool].QuorumUp, e.checked(svc.Pool)
		for _, vip := range svc.VIPs {
			s.VIPs[vip] = append(s.VIPs[vip], VIPService{Name: svc.Name, Quorum: q, Checked: checked})
		}
	}
	return s
}

// checked tells whether every server of a pool has a confirmed health,
// or the pool has no check.
func (e *Engine) checked(pool string) bool {
	p := e.cfg.Pools[pool]
	if len(p.Checks) == 0 || e.checker == nil {
		return true
	}
	for _, srv := range p.Servers {
		if _, ok := e.health[ServerRef{Pool: pool, Addr: srv.Address, Port: srv.Port}]; !ok {
			return false
		}
	}
	return true
}

// report takes an event from any goroutine; the Run goroutine records it.
func (e *Engine) report(r event.Record) {
	e.reportMu.Lock()
	e.reported = append(e.reported, r)
	e.reportMu.Unlock()
	select {
	case e.reportedC <- struct{}{}:
	default:
	}
}

// Resync asks the Run goroutine to reconcile the data plane again, which
// found the kernel changed by another process (reason says how). It is
// safe from any goroutine and never blocks; the requests that come before
// the reconcile share it.
func (e *Engine) Resync(reason string) {
	e.reportMu.Lock()
	e.resyncs = append(e.resyncs, reason)
	e.reportMu.Unlock()
	select {
	case e.resyncC <- struct{}{}:
	default:
	}
}

// resync reconciles for the reasons given to Resync, and records what it
// put back, when the data plane counts it.
func (e *Engine) resync(ctx context.Context) {
	e.reportMu.Lock()
	reasons := e.resyncs
	e.resyncs = nil
	e.reportMu.Unlock()
	if len(reasons) == 0 {
		return
	}
	reason := strings.Join(slices.Compact(reasons), "; ")
	e.apply(ctx)
	if e.last.Error != "" {
		return // apply logged and recorded it; the retry follows
	}
	n, known := dataplane.ChangesOf(e.dp)
	switch {
	case !known:
		// A lost notification asks for a look too: without a count, an
		// event could cry wolf.
		e.log.Info("data plane reconciled after a change by others (its changes are not counted)", "reason", reason)
		return
	case n == 0:
		e.log.Info("data plane checked: nothing to restore", "reason", reason)
		return
	}
	r := event.Restored{At: e.clock.Now(), Reason: reason, Changes: n}
	e.log.Warn("data plane restored", "reason", reason, "changes", n)
	e.record(event.Record{Kind: "dataplane_restored", Summary: restoredSummary(r), Restored: &r})
}

// recordReported records the events reported since the last call.
func (e *Engine) recordReported() {
	e.reportMu.Lock()
	rs := e.reported
	e.reported = nil
	e.reportMu.Unlock()
	for _, r := range rs {
		e.record(r)
	}
}
