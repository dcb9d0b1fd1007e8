package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"halb/internal/config"
	"halb/internal/engine"
	"halb/internal/event"
	"halb/internal/metrics"
	"halb/internal/vrrp"
)

// AnnouncerKind is one kind of VIP announcer a node may run: it makes the
// network know which VIPs this node serves. VRRP is one; another (BGP)
// is the other.
type AnnouncerKind struct {
	// Name names the announcer in messages ("VRRP").
	Name string
	// Key is the configuration key that asks for it ("vrrp.instances").
	Key string
	// Configured tells whether cfg asks for this announcer. One that was
	// not configured at start is not built, and a reload cannot add it.
	Configured func(cfg *config.Config) bool
	// New builds the announcer for cfg, its counters told to m.
	New func(cfg *config.Config, log *slog.Logger, m *metrics.Metrics) (engine.Announcer, error)
}

// VRRP announces the VIPs of the configured VRRP instances. Without
// instances it is not built: then halb needs no raw sockets, and no root
// with the dry-run data plane.
var VRRP = AnnouncerKind{
	Name:       "VRRP",
	Key:        "vrrp.instances",
	Configured: func(cfg *config.Config) bool { return len(cfg.VRRP.Instances) > 0 },
	New: func(cfg *config.Config, log *slog.Logger, m *metrics.Metrics) (engine.Announcer, error) {
		n := vrrp.New(cfg, vrrp.WithLogger(log.With("subsystem", "vrrp")))
		m.AddVRRPSource(vrrpCounters{n})
		return n, nil
	},
}

// newAnnouncers builds the announcers cfg asks for, joined into the one
// the engine runs (nil: none).
func newAnnouncers(kinds []AnnouncerKind, cfg *config.Config, log *slog.Logger, m *metrics.Metrics) (engine.Announcer, error) {
	var as announcers
	for _, k := range kinds {
		if k.Configured(cfg) {
			a, err := k.New(cfg, log, m)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", k.Key, err)
			}
			as = append(as, a)
		}
	}
	switch len(as) {
	case 0:
		return nil, nil
	case 1:
		return as[0], nil
	}
	return as, nil
}

// announcersAdded refuses the announcers next configures that cur did not:
// only a start builds them.
func announcersAdded(kinds []AnnouncerKind, cur, next *config.Config) []string {
	var out []string
	for _, k := range kinds {
		if !k.Configured(cur) && k.Configured(next) {
			out = append(out, fmt.Sprintf("%s: this node started without %s; restart halb to start it", k.Key, k.Name))
		}
	}
	return out
}

// announcers run side by side as one announcer.
type announcers []engine.Announcer

// Run runs every announcer until ctx is done. One that fails stops the
// others, as the engine stops on a failed announcer.
func (as announcers) Run(ctx context.Context, events chan<- event.VRRP) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, len(as))
	for i, a := range as {
		wg.Go(func() {
			if errs[i] = a.Run(ctx, events); errs[i] != nil {
				cancel()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Reload reloads every announcer.
func (as announcers) Reload(cfg *config.Config) error {
	var errs []error
	for _, a := range as {
		errs = append(errs, a.Reload(cfg))
	}
	return errors.Join(errs...)
}

// Serving tells the announcers that observe it what the node serves.
func (as announcers) Serving(s engine.Serving) {
	for _, a := range as {
		if o, ok := a.(engine.ServingObserver); ok {
			o.Serving(s)
		}
	}
}

// ReportTo gives report to the announcers that report events.
func (as announcers) ReportTo(report func(event.Record)) {
	for _, a := range as {
		if r, ok := a.(engine.Reporter); ok {
			r.ReportTo(report)
		}
	}
}
