package engine

import (
	"context"
	"net/netip"

	"halb/internal/config"
	"halb/internal/event"
)

// Announcer decides which node owns each VIP and makes the network know it
// (VRRP today; BGP is another announcer of the same shape).
type Announcer interface {
	// Run announces until ctx is done, then releases what it holds (VRRP:
	// a priority-0 advert, VIPs removed). It sends every transition to
	// events and returns nil after a clean release.
	Run(ctx context.Context, events chan<- event.VRRP) error
	// Reload switches to a new, already validated configuration. Instances
	// that did not change keep their state and their VIPs.
	Reload(cfg *config.Config) error
}

// HealthChecker runs the pools' health checks and reports transitions.
type HealthChecker interface {
	// Run checks until ctx is done, sending each server's transitions.
	Run(ctx context.Context, events chan<- event.Health) error
	// Reload switches to a new configuration; checks that did not change
	// keep their state (no re-learning, no flap).
	Reload(cfg *config.Config) error
}

// ServingObserver is an Announcer that is told, after every reconcile,
// what the node can serve (BGP announces a VIP only while it can).
type ServingObserver interface {
	// Serving is called on the engine goroutine; it must not block long
	// and must not call the engine.
	Serving(Serving)
}

// Serving is what the node can serve after a reconcile.
type Serving struct {
	// Programmed: the data plane's last reconcile succeeded.
	Programmed bool
	// VIPs maps each service VIP to the services on it.
	VIPs map[netip.Addr][]VIPService
}

// VIPService is one service on a VIP, and whether its pool has quorum.
type VIPService struct {
	Name   string
	Quorum bool
	// Checked: every server of its pool has a confirmed health (or the
	// pool has no check); until then quorum rests on the initial state.
	Checked bool
}

// Reporter is an Announcer that reports events of its own (BGP sessions,
// routes); the engine records them in its history and passes them on.
type Reporter interface {
	// ReportTo is called once, before Run, with a function that takes an
	// event from any goroutine without blocking.
	ReportTo(report func(event.Record))
}
