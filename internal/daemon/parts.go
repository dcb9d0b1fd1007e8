package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"net"

	"halb/internal/config"
	"halb/internal/dataplane"
	"halb/internal/dataplane/ipvs"
	"halb/internal/dataplane/nft"
	"halb/internal/dataplane/none"
	"halb/internal/engine"
	"halb/internal/event"
	"halb/internal/health"
	"halb/internal/metrics"
	"halb/internal/notify"
)

// Parts builds the parts the daemon runs around the engine. Each nil
// field is the real part; tests put fakes in.
type Parts struct {
	// Dataplane builds the data plane cfg asks for.
	Dataplane func(cfg *config.Config, log *slog.Logger) (Plane, error)
	// Announcers are the kinds of VIP announcer a node may run.
	Announcers []AnnouncerKind
	// HealthChecker builds the health checker, its results told to m.
	HealthChecker func(cfg *config.Config, log *slog.Logger, m *metrics.Metrics) engine.HealthChecker
	// Notifier builds the notifiers cfg asks for (nil: none).
	Notifier func(cfg *config.Config, status notify.StatusFunc, log *slog.Logger, version string) (Notifier, error)
	// Listen opens the metrics listener (network "tcp").
	Listen func(network, addr string) (net.Listener, error)
}

// withDefaults fills the nil fields with the real parts.
func (p Parts) withDefaults() Parts {
	if p.Dataplane == nil {
		p.Dataplane = newDataplane
	}
	if p.Announcers == nil {
		p.Announcers = []AnnouncerKind{VRRP, BGP}
	}
	if p.HealthChecker == nil {
		p.HealthChecker = newHealthChecker
	}
	if p.Notifier == nil {
		p.Notifier = newNotifier
	}
	if p.Listen == nil {
		p.Listen = net.Listen
	}
	return p
}

// Plane is a built data plane.
type Plane struct {
	dataplane.Dataplane
	// Name is the data plane's name in status: ipvs, nftables or none.
	Name string
	// Counters reads its kernel counters; nil when it has none.
	Counters metrics.CounterSource
	// Sysctls reports the kernel settings it set; nil when it sets none.
	Sysctls func() map[string]string
	// Watch follows the kernel until ctx is done and calls changed when
	// another process changed what the data plane installed; nil when it
	// does not watch.
	Watch func(ctx context.Context, changed func(reason string)) error
}

// Notifier sends notifications of the events it is given.
type Notifier interface {
	// Sink hands over an event; it never blocks.
	Sink(event.Record)
	// Run sends until ctx is done, then what was queued.
	Run(ctx context.Context)
	// Stats reports each notifier's outcomes.
	Stats() []notify.Stats
}

// newDataplane builds the data plane the configuration asks for; "auto"
// is IPVS when the kernel has it, else nftables.
func newDataplane(cfg *config.Config, log *slog.Logger) (Plane, error) {
	name := cfg.Dataplane
	if name == "auto" {
		name = "nftables"
		if ipvs.Available() {
			name = "ipvs"
		}
	}
	nftOpts := []nft.Option{nft.WithTable(cfg.NFTables.Table), nft.WithLogger(log.With("dataplane", "nftables")),
		nft.WithRemoveOnClose(cfg.NFTables.RemoveOnShutdown), nft.WithMarkMask(cfg.NFTables.MarkMask)}
	switch name {
	case "none":
		return Plane{Dataplane: none.New(log.With("dataplane", "none")), Name: name}, nil
	case "nftables":
		dp, err := nft.New(append(nftOpts, nft.WithMode(nft.LoadBalance))...)
		if err != nil {
			return Plane{}, err
		}
		return Plane{Dataplane: dp, Name: name, Counters: nftCounters{dp}, Watch: dp.Watch}, nil
	case "ipvs":
		if !ipvs.Available() {
			return Plane{}, fmt.Errorf("dataplane ipvs: this kernel has no IPVS (use dataplane nftables or auto)")
		}
		marks, err := nft.New(append(nftOpts, nft.WithMode(nft.MarksOnly))...)
		if err != nil {
			return Plane{}, err
		}
		// BGP-announced VIPs share flows with the other nodes behind the
		// router's ECMP: a flow moved mid-stream must still be forwarded.
		services, err := ipvs.New(ipvs.WithLogger(log.With("dataplane", "ipvs")), ipvs.WithStateDir(cfg.StateDir),
			ipvs.WithSloppy(cfg.BGP.Enabled()))
		if err != nil {
			return Plane{}, err
		}
		return Plane{Dataplane: &dataplane.Layered{Marks: marks, Services: services}, Name: name,
			Counters: ipvsCounters{services}, Sysctls: services.Sysctls, Watch: watchAll(marks.Watch, services.Watch)}, nil
	}
	return Plane{}, fmt.Errorf("unknown dataplane %q", name)
}

// watchAll runs the watches together until ctx is done; the first that
// fails ends the others, and its error is returned.
func watchAll(watches ...func(context.Context, func(string)) error) func(context.Context, func(string)) error {
	return func(ctx context.Context, changed func(reason string)) error {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		errs := make(chan error, len(watches))
		for _, w := range watches {
			go func() { errs <- w(ctx, changed) }()
		}
		var first error
		for range watches {
			if err := <-errs; err != nil && first == nil {
				first = err
				cancel()
			}
		}
		return first
	}
}

// newHealthChecker returns the health checker, every result counted in
// m; it idles while no pool has a check, and a reload may add some.
func newHealthChecker(cfg *config.Config, log *slog.Logger, m *metrics.Metrics) engine.HealthChecker {
	c := health.New(cfg, health.WithLogger(log.With("subsystem", "health")), health.WithResultHook(func(r health.CheckResult) {
		m.ObserveCheck(r.Type, r.Result.Latency)
		for _, s := range r.Servers {
			m.CountCheck(s.Pool, s.Server, r.Type, r.Result.OK)
		}
	}))
	m.AddCheckSource(healthResults{c})
	return c
}

// newNotifier returns the notifiers cfg asks for, nil when none.
func newNotifier(cfg *config.Config, status notify.StatusFunc, log *slog.Logger, version string) (Notifier, error) {
	n, err := notify.FromConfig(cfg, status, log, version)
	if n == nil || err != nil {
		return nil, err
	}
	return n, nil
}
