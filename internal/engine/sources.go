package engine

import (
	"context"

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
