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

	"halb/internal/buildinfo"
	"halb/internal/config"
	"halb/internal/daemon"
	"halb/internal/sdnotify"
)

func init() {
	register(&command{name: "run", summary: "run the load balancer daemon (--config FILE is required)", setup: runFlags})
}

// runOptions are halb run's flags.
type runOptions struct{ config, dataplane, socket, configID, level string }

func runFlags(fs *flag.FlagSet) runFunc {
	var o runOptions
	fs.StringVar(&o.config, "config", "", "configuration `FILE` (YAML, or a keepalived.conf)")
	fs.StringVar(&o.dataplane, "dataplane", "", "data plane `NAME`: auto, ipvs, nftables or none (overrides the config)")
	fs.StringVar(&o.socket, "socket", "", "status socket `PATH` (overrides api.socket)")
	fs.StringVar(&o.configID, "config-id", "", "select a keepalived.conf's @`ID` lines (default: the host name up to its first dot)")
	fs.StringVar(&o.level, "log-level", "info", "log `LEVEL`: debug, info, warn, error")
	return func(args []string, stdout, stderr io.Writer) int {
		if o.config == "" || len(args) != 0 {
			fmt.Fprintln(stderr, "halb run: needs --config FILE and no other arguments; see halb run --help")
			return 2
		}
		return runDaemon(o, stderr)
	}
}

func runDaemon(o runOptions, stderr io.Writer) int {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(o.level)); err != nil {
		fmt.Fprintf(stderr, "halb run: bad --log-level %q; see halb run --help\n", o.level)
		return 2
	}
	log := slog.New(sdnotify.LogHandler(stderr, &slog.HandlerOptions{Level: lvl}))

	parser := &config.Parser{} // a reload decodes again only what changed
	load := func() (*config.Config, config.Diagnostics) { return loadConfigWith(parser, o.config, o.configID) }
	cfg, diags := load()
	if cfg != nil {
		if err := enterNetNamespace(cfg.NetNamespace); err != nil {
			cfg, diags = nil, append(diags, netNamespaceDiag(cfg, config.Error, err.Error()))
		}
	}
	io.WriteString(stderr, diags.String())
	if cfg == nil {
		return 1
	}
	d, err := daemon.New(daemon.Options{Config: cfg, Path: o.config, Log: log, Version: buildinfo.Get().Version,
		Load:      load,
		Overrides: daemon.Overrides{Dataplane: o.dataplane, Socket: o.socket}})
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
