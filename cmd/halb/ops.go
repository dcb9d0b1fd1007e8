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
	"halb/internal/dataplane/nft"
	"halb/internal/engine"
	"halb/internal/event"
	"halb/internal/health"
	"halb/internal/metrics"
	"halb/internal/notify"
	"halb/internal/sdnotify"
	"halb/internal/statuspage"
	"halb/internal/vrrp"
)

// ops wires what operators use around the engine: notifications, the
// metrics and status page listener, and systemd's notifications. A reload
// replaces the notifier and moves the listener (see reload.go).
type ops struct {
	log     *slog.Logger
	metrics *metrics.Metrics
	sd      *sdnotify.Notifier
	// retiring counts the replaced notifiers still sending what they had.
	retiring sync.WaitGroup

	mu       sync.Mutex
	cfg      *config.Config
	eng      *engine.Engine
	counters metrics.CounterSource
	notifier *notify.Notifier
	stopNote func() // stops the running notifier and waits for it
	srv      *http.Server
	closed   bool // stop was called: a late reload applies nothing
}

// newOps builds the notifiers and the metrics registry; it starts nothing.
func newOps(cfg *config.Config, log *slog.Logger) (*ops, error) {
	o := &ops{cfg: cfg, log: log, sd: sdnotify.FromEnv()}
	o.metrics = metrics.New(o.status)
	n, err := o.newNotifier(cfg)
	if err != nil {
		return nil, err
	}
	o.notifier = n
	o.metrics.AddNotifierSource(notifierCounts{o})
	return o, nil
}

func (o *ops) newNotifier(cfg *config.Config) (*notify.Notifier, error) {
	return notify.FromConfig(cfg, o.status, o.log.With("subsystem", "notify"), version)
}

// sink hands an event to the current notifier; it never blocks.
func (o *ops) sink(r event.Record) {
	o.mu.Lock()
	n := o.notifier
	o.mu.Unlock()
	if n != nil {
		n.Sink(r)
	}
}

// status reads the engine's status once start has been called.
func (o *ops) status(ctx context.Context) (api.Status, error) {
	o.mu.Lock()
	eng := o.eng
	o.mu.Unlock()
	if eng == nil {
		return api.Status{}, engine.ErrNotRunning
	}
	return api.EngineStatus(eng.Status)(ctx)
}

// engineOptions sends the engine's events to the metrics and notifiers.
func (o *ops) engineOptions() []engine.Option {
	return []engine.Option{engine.WithEventSink(o.metrics.OnEvent), engine.WithEventSink(o.sink)}
}

// dataplane instruments dp (reconcile runs, errors, duration) and reads
// its kernel counters when it has any.
func (o *ops) dataplane(dp dataplane.Dataplane) dataplane.Dataplane {
	if l, ok := dp.(*dataplane.Layered); ok {
		if d, ok := l.Services.(*ipvs.Dataplane); ok {
			o.counters = ipvsCounters{d}
		}
	}
	if d, ok := dp.(*nft.Dataplane); ok {
		o.counters = nftCounters{d}
	}
	if o.counters != nil {
		o.metrics.AddCounterSource(o.counters)
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
	switch x := x.(type) {
	case *health.Checker:
		o.metrics.AddCheckSource(healthResults{x})
	case *vrrp.Node:
		o.metrics.AddVRRPSource(vrrpCounters{x})
	}
}

// start serves metrics and the status page on api.metrics, runs the
// notifier, and tells systemd when halb is ready and alive. The returned
// function flushes the notifications and closes the listener; call it
// after the engine has stopped.
func (o *ops) start(ctx context.Context, eng *engine.Engine) (stop func(), err error) {
	var ln net.Listener
	if addr := o.cfg.API.Metrics; addr != "" {
		if ln, err = net.Listen("tcp", addr); err != nil {
			return nil, fmt.Errorf("metrics listener: %w", err)
		}
	}
	o.mu.Lock()
	o.eng = eng
	o.srv = o.serve(ln)
	o.stopNote = o.runNotifier(o.notifier)
	o.mu.Unlock()
	go o.systemd(ctx)
	return func() {
		o.mu.Lock()
		stopNote, srv := o.stopNote, o.srv
		o.closed = true
		o.mu.Unlock()
		stopNote()
		o.retiring.Wait()
		shutdown(srv)
	}, nil
}

// serve serves metrics and the status page on ln (nil: no listener).
func (o *ops) serve(ln net.Listener) *http.Server {
	if ln == nil {
		return nil
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", o.metrics.Handler())
	mux.Handle("/{$}", statuspage.New(o.status, o.counterSource, 5*time.Second, time.Now))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ErrorLog: slog.NewLogLogger(o.log.Handler(), slog.LevelWarn)}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			o.log.Error("metrics listener stopped", "err", err)
		}
	}()
	o.log.Info("metrics and status page", "url", "http://"+ln.Addr().String()+"/")
	return srv
}

func (o *ops) counterSource() metrics.CounterSource {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.counters
}

// shutdown closes a listener's server, giving requests in flight a moment.
func shutdown(srv *http.Server) {
	if srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	srv.Shutdown(ctx)
}

// runNotifier runs n (nil: none) until the returned function is called;
// that function waits until n has sent what it had queued.
func (o *ops) runNotifier(n *notify.Notifier) (stop func()) {
	if n == nil {
		return func() {}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		n.Run(ctx)
	}()
	return func() {
		cancel()
		<-done
	}
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
	o.mu.Lock()
	cfg := o.cfg
	o.mu.Unlock()
	return fmt.Sprintf("node %s: %d VRRP instances, %d services", cfg.Node, len(cfg.VRRP.Instances), len(cfg.Services))
}

// reloading and reloaded frame a SIGHUP reload for systemd.
func (o *ops) reloading() { o.notifySD(o.sd.Reloading()) }
func (o *ops) reloaded()  { o.notifySD(o.sd.Ready("reloaded; " + o.readyStatus())) }

func (o *ops) notifySD(err error) {
	if err != nil {
		o.log.Warn("telling systemd", "err", err)
	}
}

// notifierCounts gives the current notifiers' outcomes to the metrics.
type notifierCounts struct{ o *ops }

func (c notifierCounts) NotifierCounts() []metrics.NotifierCount {
	c.o.mu.Lock()
	n := c.o.notifier
	c.o.mu.Unlock()
	if n == nil {
		return nil
	}
	var out []metrics.NotifierCount
	for _, s := range n.Stats() {
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

// nftCounters reads the nftables data plane's counters.
type nftCounters struct{ d *nft.Dataplane }

func (c nftCounters) Counters(ctx context.Context) ([]metrics.ServiceCounters, error) {
	cs, err := c.d.Counters(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]metrics.ServiceCounters, 0, len(cs))
	for _, s := range cs {
		ms := metrics.ServiceCounters{Key: s.Key, Service: s.Service, Connections: s.Connections, HasPackets: true,
			PacketsIn: s.PacketsIn, PacketsOut: s.PacketsOut, BytesIn: s.BytesIn, BytesOut: s.BytesOut}
		for _, r := range s.Reals {
			ms.Reals = append(ms.Reals, metrics.RealCounters{Addr: r.Addr, Port: r.Port, Connections: r.Connections,
				PacketsIn: r.PacketsIn, PacketsOut: r.PacketsOut, BytesIn: r.BytesIn, BytesOut: r.BytesOut})
		}
		out = append(out, ms)
	}
	return out, nil
}

// vrrpCounters reads the VRRP instances' advert counters.
type vrrpCounters struct{ n *vrrp.Node }

func (c vrrpCounters) VRRPCounters() []metrics.VRRPCounters {
	cs := c.n.VRRPCounters()
	out := make([]metrics.VRRPCounters, 0, len(cs))
	for _, v := range cs {
		out = append(out, metrics.VRRPCounters{Instance: v.Instance, AdvertsSent: v.AdvertsSent,
			AdvertsReceived: v.AdvertsReceived, Rejected: v.Rejected})
	}
	return out
}
