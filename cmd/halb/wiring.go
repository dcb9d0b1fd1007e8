package main

import (
	"fmt"
	"log/slog"

	"halb/internal/config"
	"halb/internal/dataplane"
	"halb/internal/dataplane/ipvs"
	"halb/internal/dataplane/nft"
	"halb/internal/dataplane/none"
	"halb/internal/engine"
	"halb/internal/health"
	"halb/internal/vrrp"
)

// newDataplane builds the data plane the configuration asks for; "auto"
// is IPVS when the kernel has it, else nftables.
func newDataplane(cfg *config.Config, log *slog.Logger) (dataplane.Dataplane, string, error) {
	name := cfg.Dataplane
	if name == "auto" {
		name = "nftables"
		if ipvs.Available() {
			name = "ipvs"
		}
	}
	nftOpts := []nft.Option{nft.WithTable(cfg.NFTables.Table), nft.WithLogger(log.With("dataplane", "nftables")),
		nft.WithRemoveOnClose(cfg.NFTables.RemoveOnShutdown)}
	switch name {
	case "none":
		return none.New(log.With("dataplane", "none")), name, nil
	case "nftables":
		dp, err := nft.New(append(nftOpts, nft.WithMode(nft.LoadBalance))...)
		return dp, name, err
	case "ipvs":
		if !ipvs.Available() {
			return nil, "", fmt.Errorf("dataplane ipvs: this kernel has no IPVS (use dataplane nftables or auto)")
		}
		marks, err := nft.New(append(nftOpts, nft.WithMode(nft.MarksOnly))...)
		if err != nil {
			return nil, "", err
		}
		services, err := ipvs.New(ipvs.WithLogger(log.With("dataplane", "ipvs")), ipvs.WithStateDir(cfg.StateDir))
		if err != nil {
			return nil, "", err
		}
		return &dataplane.Layered{Marks: marks, Services: services}, name, nil
	}
	return nil, "", fmt.Errorf("unknown dataplane %q", name)
}

// newAnnouncer returns the VRRP announcer, or nil when no instance is
// configured (then halb needs no raw sockets, and no root with
// --dataplane none).
func newAnnouncer(cfg *config.Config, log *slog.Logger) engine.Announcer {
	if len(cfg.VRRP.Instances) == 0 {
		return nil
	}
	return vrrp.New(cfg, vrrp.WithLogger(log.With("subsystem", "vrrp")))
}

// newHealthChecker returns the health checker; it idles while no pool has
// a check, and a reload may add some.
func newHealthChecker(cfg *config.Config, log *slog.Logger, opts ...health.Option) engine.HealthChecker {
	return health.New(cfg, append([]health.Option{health.WithLogger(log.With("subsystem", "health"))}, opts...)...)
}
