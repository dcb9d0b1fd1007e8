package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"halb/internal/api"
	"halb/internal/config"
)

func init() {
	register(&command{name: "drain", summary: "withdraw the node's BGP routes and let established flows finish", setup: drainFlags})
}

// drainPoll is how often halb drain reports progress.
const drainPoll = time.Second

func drainFlags(fs *flag.FlagSet) runFunc {
	socket := fs.String("socket", config.DefaultSocket, "status socket `PATH`")
	timeout := fs.Duration("timeout", 30*time.Second, "report progress for at most `D`, or until no connection is left")
	return func(args []string, stdout, stderr io.Writer) int {
		if len(args) != 0 || *timeout < 0 {
			fmt.Fprintln(stderr, "halb drain: takes no arguments and a --timeout of 0 or more; see halb drain --help")
			return 2
		}
		return runDrain(*socket, *timeout, stdout, stderr)
	}
}

func runDrain(socket string, timeout time.Duration, stdout, stderr io.Writer) int {
	c := api.NewClient(socket)
	ctx, cancel := context.WithTimeout(context.Background(), timeout+5*time.Second)
	defer cancel()
	d, err := c.Drain(ctx, true)
	if err != nil {
		fmt.Fprintf(stderr, "halb drain: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "drain: withdrawn %s; the node keeps forwarding established flows\n", vipList(d.Withdrawn))
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(drainPoll)
	defer tick.Stop()
	for {
		fmt.Fprintln(stdout, drainProgress(d, time.Until(deadline)))
		if d.ActiveConnections == 0 && len(d.Announced) == 0 {
			fmt.Fprintln(stdout, "drain: idle")
			return 0
		}
		if !time.Now().Before(deadline) {
			fmt.Fprintln(stdout, "drain: timeout reached")
			return 0
		}
		<-tick.C
		if d, err = c.Drain(ctx, false); err != nil {
			fmt.Fprintf(stderr, "halb drain: %v\n", err)
			return 1
		}
	}
}

// drainProgress is one progress line.
func drainProgress(d api.Drain, left time.Duration) string {
	conns := "unknown (the data plane does not count them)"
	if d.ActiveConnections >= 0 {
		conns = fmt.Sprint(d.ActiveConnections)
	}
	line := fmt.Sprintf("  active connections: %s; %s left", conns, max(left, 0).Round(time.Second))
	if len(d.Announced) > 0 {
		line += "; still announced: " + vipList(d.Announced)
	}
	return line
}

func vipList(s []string) string {
	if len(s) == 0 {
		return "nothing"
	}
	return strings.Join(s, ", ")
}
