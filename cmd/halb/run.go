package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"halb/internal/api"
	"halb/internal/config"
	"halb/internal/engine"
	"halb/internal/sdnotify"
)

func init() {
	register("run", "run the load balancer daemon", runDaemon)
}

func runDaemon(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "configuration `FILE` (YAML, or a keepalived.conf)")
	dpFlag := fs.String("dataplane", "", "data plane: auto, ipvs, nftables or none (overrides the config)")
	socket := fs.String("socket", "", "status socket `PATH` (overrides api.socket)")
	configID := fs.String("config-id", "", "select a keepalived.conf's @`ID` lines (default: the host name up to its first dot)")
	level := fs.String("log-level", "info", "log level: debug, info, warn, error")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *cfgPath == "" || fs.NArg() != 0 {
		fmt.Fprintln(stderr, "usage: halb run --config FILE [--dataplane auto|ipvs|nftables|none] [--socket PATH] [--config-id ID]")
		return 2
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*level)); err != nil {
		fmt.Fprintf(stderr, "halb run: bad --log-level %q\n", *level)
		return 2
	}
	log := slog.New(sdnotify.LogHandler(stderr, &slog.HandlerOptions{Level: lvl}))

	ov := overrides{dataplane: *dpFlag, socket: *socket, configID: *configID}
	cfg, diags := loadConfig(*cfgPath, ov.configID)
	io.WriteString(stderr, diags.String())
	if cfg == nil {
		return 1
	}
	ov.apply(cfg)
	if err := serve(cfg, *cfgPath, ov, log); err != nil {
		log.Error("halb stopped", "err", err)
		return 1
	}
	return 0
}

// overrides are what the command line sets in place of the file
// (dataplane, socket) or for reading it (a keepalived.conf's config-id);
// they hold across reloads.
type overrides struct{ dataplane, socket, configID string }

func (ov overrides) apply(c *config.Config) {
	if ov.dataplane != "" {
		c.Dataplane = ov.dataplane
	}
	if ov.socket != "" {
		c.API.Socket = ov.socket
	}
}

// serve runs the daemon until SIGTERM or SIGINT, reloading on SIGHUP.
func serve(cfg *config.Config, path string, ov overrides, log *slog.Logger) error {
	dp, dpName, err := newDataplane(cfg, log)
	if err != nil {
		return err
	}
	o, err := newOps(cfg, log)
	if err != nil {
		dp.Close()
		return err
	}
	dp = o.dataplane(dp)
	opts := append([]engine.Option{engine.WithLogger(log), engine.WithVersion(version)}, o.engineOptions()...)
	if a := newAnnouncer(cfg, log); a != nil {
		opts = append(opts, engine.WithAnnouncer(a))
		o.watch(a)
	}
	if h := newHealthChecker(cfg, log, o.healthOptions()...); h != nil {
		opts = append(opts, engine.WithHealthChecker(h))
		o.watch(h)
	}
	eng := engine.New(cfg, dp, dpName, opts...)

	ln, err := api.ListenUnix(cfg.API.Socket)
	if err != nil {
		dp.Close()
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() {
		if err := api.Serve(ctx, ln, api.Handler(api.EngineStatus(eng.Status), eng.Events)); err != nil {
			log.Error("status socket stopped", "err", err)
		}
	}()
	defer os.Remove(cfg.API.Socket)
	stopOps, err := o.start(ctx, eng)
	if err != nil {
		dp.Close()
		return err
	}
	defer stopOps()

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				o.reloading()
				reload(ctx, eng, o, ov, path, log)
				o.reloaded()
			}
		}
	}()

	log.Info("halb running", "node", cfg.Node, "config", path, "dataplane", dpName, "socket", cfg.API.Socket,
		"instances", len(cfg.VRRP.Instances), "services", len(cfg.Services))
	err = eng.Run(ctx)
	log.Info("halb stopped")
	return err
}

// reload re-reads the configuration; a bad one is refused with its errors
// and the running one stays. What ops runs (notifiers, metrics listener)
// follows the new configuration.
func reload(ctx context.Context, eng *engine.Engine, o *ops, ov overrides, path string, log *slog.Logger) {
	next, diags := loadConfig(path, ov.configID)
	if next == nil {
		errs := strings.Split(strings.TrimSpace(diags.Errors().String()), "\n")
		log.Error("reload refused: the new configuration has errors; the running one stays", "errors", strings.Join(errs, "; "))
		eng.ReloadRefused(ctx, path, errs)
		return
	}
	for _, d := range diags {
		log.Warn("reload: " + d.String())
	}
	ov.apply(next) // what the command line overrode stays overridden
	apply, errs := o.prepareReload(next)
	if len(errs) > 0 {
		log.Error("reload refused: the running configuration stays", "errors", strings.Join(errs, "; "))
		eng.ReloadRefused(ctx, path, errs)
		return
	}
	apply()
	if err := eng.Reload(ctx, next); err != nil {
		log.Error("reload applied with errors", "err", err)
	}
	if st, err := eng.Status(ctx); err == nil {
		o.metrics.Retain(api.FromEngine(st))
	}
}
