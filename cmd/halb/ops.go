package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"halb/internal/api"
	"halb/internal/config"
	"halb/internal/dataplane"
	"halb/internal/dataplane/ipvs"
	"halb/internal/engine"
	"halb/internal/health"
	"halb/internal/metrics"
	"halb/internal/notify"
	"halb/internal/sdnotify"
	"halb/internal/statuspage"
)

// ops wires what operators use around the engine: notifications, the
// metrics and status page listener, and systemd's notifications.
type ops struct {
	cfg      *config.Config
	log      *slog.Logger
	metrics  *metrics.Metrics
	notifier *notify.Notifier
	sd       *sdnotify.Notifier

	mu       sync.Mutex
	eng      *engine.Engine
	counters metrics.CounterSource
}

// newOps builds the notifiers and the metrics registry; it starts nothing.
func newOps(cfg *config.Config, log *slog.Logger) (*ops, error) {
	o := &ops{cfg: cfg, log: log, sd: sdnotify.FromEnv()}
	o.metrics = metrics.New(o.status)
	n, err := notify.FromConfig(cfg, o.status, log.With("subsystem", "notify"), version)
	if err != nil {
		return nil, err
	}
	o.notifier = n
	if n != nil {
		o.metrics.Watch(notifierCounts{n})
	}
	return o, nil
}

// status reads the engine's status once start has been called.
func (o *ops) status(ctx context.Context) (api.Status, error) {
	o.mu.Lock()
	eng := o.eng
	o.mu.Unlock()
	if eng == nil {
		return api.Status{}, engine.ErrNotRunning
	}
	return eng.Status(ctx)
}

// engineOptions sends the engine's events to the metrics and notifiers.
func (o *ops) engineOptions() []engine.Option {
	opts := []engine.Option{engine.WithEventSink(o.metrics.OnEvent)}
	if o.notifier != nil {
		opts = append(opts, engine.WithEventSink(o.notifier.Sink))
	}
	return opts
}

// dataplane instruments dp (reconcile runs, errors, duration) and reads
// its kernel counters when it has any.
func (o *ops) dataplane(dp dataplane.Dataplane) dataplane.Dataplane {
	if l, ok := dp.(*dataplane.Layered); ok {
		if d, ok := l.Services.(*ipvs.Dataplane); ok {
			o.counters = ipvsCounters{d}
		}
	}
	if s, ok := dp.(metrics.CounterSource); ok {
		o.counters = s
	}
	if o.counters != nil {
		o.metrics.Watch(o.counters)
	}
	return o.metrics.Instrument(dp)
}

// healthOptions counts every check result in the metrics.
func (o *ops) healthOptions() []health.Option {
	return []health.Option{health.WithResultHook(func(r health.CheckResult) {
		o.metrics.ObserveCheck(r.Type, r.Result.Latency)
		for _, s := range r.Servers {
			o.metrics.CountCheck(s.Pool, s.Server, r.Check, r.Result.OK)
		}
	})}
}

// watch adds what a subsystem can tell the metrics (check results,
// VRRP advert counters).
func (o *ops) watch(x any) {
	if c, ok := x.(*health.Checker); ok {
		o.metrics.Watch(healthResults{c})
	}
	o.metrics.Watch(x)
}

// start serves metrics and the status page on api.metrics, runs the
// notifier, and tells systemd when halb is ready and alive. The returned
// function flushes the notifications and closes the listener; call it
// after the engine has stopped.
func (o *ops) start(ctx context.Context, eng *engine.Engine) (stop func(), err error) {
	o.mu.Lock()
	o.eng = eng
	o.mu.Unlock()
	var srv *http.Server
	if addr := o.cfg.API.Metrics; addr != "" {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("metrics listener: %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", o.metrics.Handler())
		mux.Handle("/{$}", statuspage.New(o.status, func() metrics.CounterSource { return o.counters }, 5*time.Second, time.Now))
		srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ErrorLog: slog.NewLogLogger(o.log.Handler(), slog.LevelWarn)}
		go func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				o.log.Error("metrics listener stopped", "err", err)
			}
		}()
		o.log.Info("metrics and status page", "url", "http://"+ln.Addr().String()+"/")
	}
	nctx, cancelNotify := context.WithCancel(context.Background())
	notified := make(chan struct{})
	go func() {
		defer close(notified)
		if o.notifier != nil {
			o.notifier.Run(nctx)
		}
	}()
	go o.systemd(ctx)
	return func() {
		cancelNotify()
		<-notified
		if srv != nil {
			sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			srv.Shutdown(sctx)
		}
	}, nil
}

// systemd says READY once the engine answers, keeps the watchdog fed
// while it does, and says STOPPING when ctx ends.
func (o *ops) systemd(ctx context.Context) {
	if o.sd == nil {
		return
	}
	for {
		c, cancel := context.WithTimeout(ctx, time.Second)
		_, err := o.status(c)
		cancel()
		if err == nil {
			break
		}
		select {
		case <-ctx.Done():
			o.notifySD(o.sd.Stopping())
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
	o.notifySD(o.sd.Ready(o.readyStatus()))
	var tick <-chan time.Time
	interval, watchdog := sdnotify.WatchdogInterval()
	if watchdog {
		t := time.NewTicker(interval / 2)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			o.notifySD(o.sd.Stopping())
			return
		case <-tick:
			// Only a live engine loop feeds the watchdog.
			c, cancel := context.WithTimeout(ctx, interval/2)
			_, err := o.status(c)
			cancel()
			if err == nil {
				o.notifySD(o.sd.Watchdog())
			}
		}
	}
}

func (o *ops) readyStatus() string {
	return fmt.Sprintf("node %s: %d VRRP instances, %d services", o.cfg.Node, len(o.cfg.VRRP.Instances), len(o.cfg.Services))
}

// reloading and reloaded frame a SIGHUP reload for systemd.
func (o *ops) reloading() { o.notifySD(o.sd.Reloading()) }
func (o *ops) reloaded()  { o.notifySD(o.sd.Ready("reloaded; " + o.readyStatus())) }

func (o *ops) notifySD(err error) {
	if err != nil {
		o.log.Warn("telling systemd", "err", err)
	}
}

// notifierCounts gives the notifiers' outcomes to the metrics.
type notifierCounts struct{ n *notify.Notifier }

func (c notifierCounts) NotifierCounts() []metrics.NotifierCount {
	var out []metrics.NotifierCount
	for _, s := range c.n.Stats() {
		out = append(out, metrics.NotifierCount{Name: s.Name, Sent: s.Sent, Failed: s.Failed, Dropped: s.Dropped})
	}
	return out
}

// healthResults gives the health checker's last results to the metrics.
type healthResults struct{ c *health.Checker }

func (h healthResults) CheckResults() []metrics.CheckResult {
	var out []metrics.CheckResult
	for _, s := range h.c.Status() {
		server := s.Addr
		if a, err := netip.ParseAddr(s.Addr); err == nil && s.Port != 0 {
			server = netip.AddrPortFrom(a, s.Port).String()
		}
		out = append(out, metrics.CheckResult{Pool: s.Pool, Server: server, Latency: s.Latency})
	}
	return out
}

// ipvsCounters reads the kernel's IPVS service and destination stats.
type ipvsCounters struct{ d *ipvs.Dataplane }

func (c ipvsCounters) Counters(context.Context) ([]metrics.ServiceCounters, error) {
	st, err := c.d.Status()
	if err != nil {
		return nil, err
	}
	out := make([]metrics.ServiceCounters, 0, len(st))
	for _, s := range st {
		if !s.Managed {
			continue
		}
		sc := metrics.ServiceCounters{Key: s.Key, Connections: s.Connections, BytesIn: s.InBytes, BytesOut: s.OutBytes}
		for _, r := range s.Reals {
			sc.Reals = append(sc.Reals, metrics.RealCounters{Addr: r.Addr, Port: r.Port,
				ActiveConns: uint64(r.ActiveConns), InactiveConns: uint64(r.InactiveConns)})
		}
		out = append(out, sc)
	}
	return out, nil
}
