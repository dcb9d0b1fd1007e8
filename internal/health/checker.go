// Package health runs the pools' health checks: one probe per server
// address, port and check spec however many pools share it, scheduled on
// an injected clock with bounded concurrency, folded through rise and fall
// counts, and reported to the engine as event.Health transitions whose
// reasons say what was seen.
package health

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"halb/internal/clock"
	"halb/internal/config"
	"halb/internal/event"
)

// DefaultConcurrency bounds the probes in flight at once.
const DefaultConcurrency = 4096

// Checker runs the health checks of a configuration. It implements the
// engine's HealthChecker.
type Checker struct {
	log   *slog.Logger
	clock clock.Clock
	limit int
	net   netEnv
	// newProber builds the prober of a spec; tests replace it.
	newProber func(probeSpec, netEnv) prober

	checks   atomic.Uint64
	failures atomic.Uint64
	hook     func(CheckResult)

	mu      sync.Mutex
	cfg     *config.Config
	reload  chan struct{}
	servers map[memberKey]*serverRecord
}

// serverRecord is a pool server's status and the count of results in a
// row that agree with the last one, from which Status words the reason.
type serverRecord struct {
	st    ServerStatus
	count int
}

// Option configures a Checker.
type Option func(*Checker)

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(c *Checker) { c.log = l } }

// WithClock sets the clock that schedules checks.
func WithClock(clk clock.Clock) Option { return func(c *Checker) { c.clock = clk } }

// WithConcurrency bounds the probes in flight at once (default
// DefaultConcurrency); checks due beyond it wait their turn.
func WithConcurrency(n int) Option { return func(c *Checker) { c.limit = max(n, 1) } }

// WithSocketHook runs every socket creation of the checks (and exec
// checks' process starts) through hook; a hook may, for instance, enter a
// network namespace around it.
func WithSocketHook(hook func(create func() error) error) Option {
	return func(c *Checker) { c.net.hook = hook }
}

// WithResultHook calls hook with every result of a configured check, not
// only with transitions. It is called on the scheduler's goroutine, so it
// must return at once (count, don't wait).
func WithResultHook(hook func(CheckResult)) Option { return func(c *Checker) { c.hook = hook } }

// CheckResult is one check's result as a result hook sees it.
type CheckResult struct {
	Type   string // the check's type: "tcp", "http", …
	Check  string // the check as events name it: "http 198.51.100.12:80 /healthz"
	Result Result
	// Servers are the pool servers the check decides. The slice is the
	// checker's own: read it during the call only.
	Servers []PoolServer
}

// PoolServer names one server of one pool.
type PoolServer struct {
	Pool   string
	Server string // address, or address:port when the pool names a port
}

// New returns a Checker for cfg. It starts nothing until Run.
func New(cfg *config.Config, opts ...Option) *Checker {
	c := &Checker{
		log:       slog.New(slog.DiscardHandler),
		clock:     clock.Real{},
		limit:     DefaultConcurrency,
		net:       netEnv{hook: func(f func() error) error { return f() }},
		newProber: newProber,
		cfg:       cfg,
		reload:    make(chan struct{}, 1),
		servers:   map[memberKey]*serverRecord{},
	}
	for _, o := range opts {
		o(c)
	}
	c.net.scriptUser = cfg.ScriptUser
	return c
}

// Reload switches to a new, validated configuration. A check kept by the
// new configuration keeps its state and schedule.
func (c *Checker) Reload(cfg *config.Config) error {
	c.mu.Lock()
	c.cfg = cfg
	c.mu.Unlock()
	select {
	case c.reload <- struct{}{}:
	default:
	}
	return nil
}

func (c *Checker) config() *config.Config {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cfg
}

// ServerStatus is the last check result of one pool server.
type ServerStatus struct {
	Pool    string
	Addr    string
	Port    uint16
	Up      bool
	Known   bool // false while the initial state is unconfirmed
	Check   string
	Last    Result
	Since   time.Time // last change of Up
	Reason  string
	Latency time.Duration
	// Consecutive counts Last's result (success or failure) in a row.
	Consecutive int
}

// Status returns the last result of every checked pool server.
func (c *Checker) Status() []ServerStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]ServerStatus, 0, len(c.servers))
	for _, r := range c.servers {
		st := r.st
		st.Reason = st.Last.Detail + countText(st.Last.OK, r.count)
		st.Consecutive = r.count
		out = append(out, st)
	}
	return out
}

// Stats counts the checks run and failed since New.
type Stats struct {
	Checks, Failures uint64
}

// Stats returns the check counters.
func (c *Checker) Stats() Stats {
	return Stats{Checks: c.checks.Load(), Failures: c.failures.Load()}
}

// Run checks until ctx is done, sending every transition of a pool
// server to events. It returns nil once every probe has stopped.
func (c *Checker) Run(ctx context.Context, events chan<- event.Health) error {
	tcp := &lazyConnector{clock: c.clock}
	defer tcp.close()
	s := newScheduler(c, ctx, events)
	s.net.tcp = tcp
	s.apply(c.config())
	timer := c.clock.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		s.dispatchDue()
		timer.Stop()
		if d, ok := s.nextDue(); ok {
			timer.Reset(d)
		}
		select {
		case <-ctx.Done():
			s.stop()
			return nil
		case <-timer.C():
		case <-s.ready:
			for _, r := range s.takeResults() {
				s.onResult(r)
			}
		case <-c.reload:
			s.apply(c.config())
		}
	}
}
