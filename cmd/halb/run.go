package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"halb/internal/config"
	"halb/internal/daemon"
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

	cfg, diags := loadConfig(*cfgPath, *configID)
	if cfg != nil {
		if err := enterNetNamespace(cfg.NetNamespace); err != nil {
			cfg, diags = nil, append(diags, netNamespaceDiag(cfg, config.Error, err.Error()))
		}
	}
	io.WriteString(stderr, diags.String())
	if cfg == nil {
		return 1
	}
	d, err := daemon.New(daemon.Options{Config: cfg, Path: *cfgPath, Log: log, Version: version,
		Load:      func() (*config.Config, config.Diagnostics) { return loadConfig(*cfgPath, *configID) },
		Overrides: daemon.Overrides{Dataplane: *dpFlag, Socket: *socket}})
	if err == nil {
		err = serve(d, log)
	}
	if err != nil {
		log.Error("halb stopped", "err", err)
		return 1
	}
	return 0
}

// serve runs the daemon until SIGTERM or SIGINT, reloading on SIGHUP.
func serve(d *daemon.Daemon, log *slog.Logger) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				logReload(log, d.Reload(ctx))
			}
		}
	}()
	return d.Run(ctx)
}

// logReload logs the outcome of a reload that did not go through.
func logReload(log *slog.Logger, err error) {
	var refused *daemon.RefusedError
	switch {
	case errors.As(err, &refused):
		log.Error("reload refused: "+refused.Reason, "errors", strings.Join(refused.Errors, "; "))
	case err != nil:
		log.Error("reload applied with errors", "err", err)
	}
}
