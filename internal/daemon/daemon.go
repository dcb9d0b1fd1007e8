// Package daemon runs halb: it builds the parts a configuration asks for
// around the engine — the data plane, the VIP announcers, the health
// checker, the notifiers, the metrics and status page listener and the
// status socket — runs them, and applies reloads, refusing what only a
// restart can apply.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"halb/internal/api"
	"halb/internal/bgp"
	"halb/internal/config"
	"halb/internal/engine"
	"halb/internal/event"
	"halb/internal/health"
	"halb/internal/metrics"
	"halb/internal/sdnotify"
	"halb/internal/statuspage"
)

// Options configure a daemon.
type Options struct {
	// Config is the validated configuration to start with.
	Config *config.Config
	// Path is the configuration file, as logs and events name it.
	Path string
	// Load reads the configuration again, for a reload.
	Load func() (*config.Config, config.Diagnostics)
	// Overrides are what the command line sets in place of the file.
	Overrides Overrides
	Log       *slog.Logger
	// Version is reported in status and notifications.
	Version string
	// Parts builds the parts; the zero value builds the real ones.
	Parts Parts
}

// Overrides are what the command line sets in place of the file; they
// hold across reloads.
type Overrides struct{ Dataplane, Socket string }

// Apply sets in c what ov overrides.
func (ov Overrides) Apply(c *config.Config) {
	if ov.Dataplane != "" {
		c.Dataplane = ov.Dataplane
	}
	if ov.Socket != "" {
		c.API.Socket = ov.Socket
	}
}

// Daemon is a running halb: the engine and the parts around it.
type Daemon struct {
	opts    Options
	parts   Parts
	log     *slog.Logger
	eng     *engine.Engine
	dp      Plane
	bgp     *bgp.Node // nil without BGP
	metrics *metrics.Metrics
	sd      *sdnotify.Notifier
	// feed passes each event to the status socket's followers.
	feed api.Feed
	// checks reads the health checker's last results; nil without one.
	checks func() []api.CheckResult
	// reloadMu lets one reload run at a time.
	reloadMu sync.Mutex
	// retiring counts the replaced notifiers still sending what they had.
	retiring sync.WaitGroup

	mu       sync.Mutex
	cfg      *config.Config
	notifier Notifier
	stopNote func() // stops the running notifier and waits for it
	srv      *http.Server
	closed   bool // Run has ended: a late reload applies nothing
	// refused is the last reload when it was refused; nil when the last
	// one was applied (or none was tried).
	refused *api.Reload
}

// New builds the daemon for opts.Config (with opts.Overrides applied) and
// starts nothing: call Run.
func New(opts Options) (*Daemon, error) {
	cfg := opts.Config
	opts.Overrides.Apply(cfg)
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	log := opts.Log
	d := &Daemon{opts: opts, parts: opts.Parts.withDefaults(), log: log, cfg: cfg, sd: sdnotify.FromEnv()}
	d.metrics = metrics.New(d.status)
	dp, err := d.parts.Dataplane(cfg, log)
	if err != nil {
		return nil, err
	}
	d.dp = dp
	if d.notifier, err = d.parts.Notifier(cfg, d.status, log.With("subsystem", "notify"), opts.Version); err != nil {
		return nil, errors.Join(err, dp.Close())
	}
	d.metrics.AddNotifierSource(notifierCounts{d})
	if dp.Counters != nil {
		d.metrics.AddCounterSource(dp.Counters)
	}
	eopts := []engine.Option{engine.WithLogger(log), engine.WithVersion(opts.Version),
		engine.WithEventSink(d.metrics.OnEvent), engine.WithEventSink(d.sink), engine.WithEventSink(d.feed.Publish)}
	a, err := newAnnouncers(d.parts.Announcers, cfg, log, d.metrics)
	if err != nil {
		return nil, errors.Join(err, dp.Close())
	}
	if a != nil {
		eopts = append(eopts, engine.WithAnnouncer(a))
		d.bgp = bgpNode(a)
	}
	hc := d.parts.HealthChecker(cfg, log, d.metrics)
	if c, ok := hc.(*health.Checker); ok {
		d.checks = healthResults{c}.StatusChecks
	}
	eopts = append(eopts, engine.WithHealthChecker(hc))
	d.eng = engine.New(cfg, d.metrics.Instrument(dp.Dataplane), dp.Name, eopts...)
	return d, nil
}

// Run serves the status socket, the metrics listener and the notifiers,
// and runs the engine until ctx is done. Then the announcers release
// their VIPs, the notifiers send what they had and the listeners close;
// the data plane keeps its state.
func (d *Daemon) Run(ctx context.Context) error {
	if err := d.start(ctx); err != nil {
		return errors.Join(err, d.dp.Close())
	}
	defer d.stop()
	cfg := d.config()
	d.log.Info("halb running", "node", cfg.Node, "config", d.opts.Path, "dataplane", d.dp.Name, "socket", cfg.API.Socket,
		"instances", len(cfg.VRRP.Instances), "services", len(cfg.Services))
	watched := d.watch(ctx)
	err := d.eng.Run(ctx)
	<-watched
	d.log.Info("halb stopped")
	return err
}

// watch runs the data plane's watch until ctx is done: a change by
// another process makes the engine reconcile again. The returned channel
// closes when the watch has ended.
func (d *Daemon) watch(ctx context.Context) <-chan struct{} {
	done := make(chan struct{})
	if d.dp.Watch == nil {
		close(done)
		return done
	}
	go func() {
		defer close(done)
		if err := d.dp.Watch(ctx, d.eng.Resync); err != nil {
			d.log.Error("data plane watch stopped: changes by other processes are noticed no more", "err", err)
		}
	}()
	return done
}

// start serves the status socket until ctx is done, opens the metrics
// listener and runs the notifiers; a reload waits until it is done.
func (d *Daemon) start(ctx context.Context) error {
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	cfg := d.config()
	ln, err := api.ListenUnix(cfg.API.Socket, cfg.API.SocketGroup)
	if err != nil {
		return err
	}
	var mln net.Listener
	if addr := cfg.API.Metrics; addr != "" {
		if mln, err = d.parts.Listen("tcp", addr); err != nil {
			return errors.Join(fmt.Errorf("metrics listener: %w", err), ln.Close(), d.removeSocket(cfg.API.Socket))
		}
	}
	go func() {
		if err := api.Serve(ctx, ln, api.Handler(d.statusWithCounters, d.eng.Events, d.feed.Follow, api.WithDrain(d.drain))); err != nil {
			d.log.Error("status socket stopped", "err", err)
		}
	}()
	d.mu.Lock()
	d.srv = d.serve(mln)
	d.stopNote = d.runNotifier(d.notifier)
	d.mu.Unlock()
	go d.systemd(ctx)
	return nil
}

// removeSocket removes the status socket, if it is still there.
func (d *Daemon) removeSocket(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove the status socket: %w", err)
	}
	return nil
}

// stop flushes the notifications and closes the listeners, once the
// engine has stopped.
func (d *Daemon) stop() {
	d.mu.Lock()
	stopNote, srv, cfg := d.stopNote, d.srv, d.cfg
	d.closed = true
	d.mu.Unlock()
	stopNote()
	d.retiring.Wait()
	d.shutdown(srv)
	if err := d.removeSocket(cfg.API.Socket); err != nil {
		d.log.Warn("stopping", "err", err)
	}
}

func (d *Daemon) config() *config.Config {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cfg
}

// status reads the engine's status document, with BGP's state.
func (d *Daemon) status(ctx context.Context) (api.Status, error) {
	st, err := api.EngineStatus(d.eng.Status)(ctx)
	if err != nil {
		return st, err
	}
	if d.bgp != nil {
		st.BGP = bgpStatus(d.bgp)
	}
	if d.dp.Sysctls != nil {
		if s := d.dp.Sysctls(); len(s) > 0 {
			st.Sysctls = s
		}
	}
	d.mu.Lock()
	if d.refused != nil {
		st.LastReload = *d.refused
	}
	d.mu.Unlock()
	if d.checks == nil {
		return st, nil
	}
	return st.WithChecks(d.checks()), nil
}

// sink hands an event to the current notifier; it never blocks.
func (d *Daemon) sink(r event.Record) {
	d.mu.Lock()
	n := d.notifier
	d.mu.Unlock()
	if n != nil {
		n.Sink(r)
	}
}

// serve serves metrics and the status page on ln (nil: no listener).
func (d *Daemon) serve(ln net.Listener) *http.Server {
	if ln == nil {
		return nil
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", d.metrics.Handler())
	mux.Handle("/{$}", statuspage.New(d.status, func() metrics.CounterSource { return d.dp.Counters }, 5*time.Second, time.Now))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ErrorLog: slog.NewLogLogger(d.log.Handler(), slog.LevelWarn)}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			d.log.Error("metrics listener stopped", "err", err)
		}
	}()
	d.log.Info("metrics and status page", "url", "http://"+ln.Addr().String()+"/")
	return srv
}

// shutdown closes a listener's server, giving requests in flight a moment.
func (d *Daemon) shutdown(srv *http.Server) {
	if srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		d.log.Warn("closing the metrics listener", "err", err)
	}
}

// runNotifier runs n (nil: none) until the returned function is called;
// that function waits until n has sent what it had queued.
func (d *Daemon) runNotifier(n Notifier) (stop func()) {
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
func (d *Daemon) systemd(ctx context.Context) {
	if d.sd == nil {
		return
	}
	for {
		c, cancel := context.WithTimeout(ctx, time.Second)
		_, err := d.eng.Status(c)
		cancel()
		if err == nil {
			break
		}
		select {
		case <-ctx.Done():
			d.notifySD(d.sd.Stopping())
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
	d.notifySD(d.sd.Ready(d.readyStatus()))
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
			d.notifySD(d.sd.Stopping())
			return
		case <-tick:
			// Only a live engine loop feeds the watchdog.
			c, cancel := context.WithTimeout(ctx, interval/2)
			_, err := d.eng.Status(c)
			cancel()
			if err == nil {
				d.notifySD(d.sd.Watchdog())
			}
		}
	}
}

func (d *Daemon) readyStatus() string {
	cfg := d.config()
	return fmt.Sprintf("node %s: %d VRRP instances, %d services", cfg.Node, len(cfg.VRRP.Instances), len(cfg.Services))
}

func (d *Daemon) notifySD(err error) {
	if err != nil {
		d.log.Warn("telling systemd", "err", err)
	}
}
