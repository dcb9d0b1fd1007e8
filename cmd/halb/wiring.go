package main

import (
	"fmt"
	"log/slog"

	"halb/internal/config"
	"halb/internal/dataplane"
	"halb/internal/dataplane/none"
	"halb/internal/engine"
)

// newDataplane builds the data plane the configuration asks for.
func newDataplane(cfg *config.Config, log *slog.Logger) (dataplane.Dataplane, string, error) {
	switch cfg.Dataplane {
	case "none":
		return none.New(log), "none", nil
	}
	return nil, "", fmt.Errorf("dataplane %q is not available in this build", cfg.Dataplane)
}

// newAnnouncer returns the VRRP announcer, or nil when no instance is
// configured.
func newAnnouncer(cfg *config.Config, log *slog.Logger) engine.Announcer {
	return nil
}

// newHealthChecker returns the health checker, or nil when no pool has a
// check.
func newHealthChecker(cfg *config.Config, log *slog.Logger) engine.HealthChecker {
	return nil
}
