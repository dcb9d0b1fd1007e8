package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"halb/internal/api"
	"halb/internal/lab/demo"
	"halb/internal/lab/netns"
	"halb/internal/lab/site"
)

func init() {
	register(&command{name: "lab", summary: "the reference site in network namespaces: up, demo, bench, status, down",
		args: "up|demo|bench|status|down", complete: labActions, setup: labFlags})
}

const labDir = "/run/halb-lab"

// labActions are what halb lab does.
var labActions = []string{"up", "demo", "bench", "status", "down"}

// labOptions are halb lab's flags.
type labOptions struct {
	dir, dataplane string
	keep           bool
	trials         int
}

func labFlags(fs *flag.FlagSet) runFunc {
	var o labOptions
	fs.StringVar(&o.dir, "dir", labDir, "work `DIR` for the lab's configurations, logs and sockets")
	fs.StringVar(&o.dataplane, "dataplane", "", "data plane `NAME` of the lab's load balancers: auto, ipvs, nftables (default: the configuration's, auto)")
	fs.BoolVar(&o.keep, "keep", false, "demo: leave the lab up at the end")
	fs.IntVar(&o.trials, "trials", 20, "bench: `N` trials per scenario")
	return func(args []string, stdout, stderr io.Writer) int {
		if len(args) != 1 || !slices.Contains(labActions, args[0]) {
			fmt.Fprintln(stderr, "halb lab: needs one of up, demo, bench, status, down; see halb lab --help")
			return 2
		}
		return runLab(args[0], o, stdout, stderr)
	}
}

func runLab(action string, o labOptions, stdout, stderr io.Writer) int {
	if os.Geteuid() != 0 {
		fmt.Fprintln(stderr, "halb lab: needs root (it creates network namespaces)")
		return 1
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintf(stderr, "halb lab: %v\n", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	switch action {
	case "up":
		if left, _ := netns.Leftovers("halblab"); len(left) > 0 {
			fmt.Fprintf(stderr, "halb lab: a lab is already up (%d namespaces); run 'halb lab down' first\n", len(left))
			return 1
		}
		s, err := site.Up(ctx, site.Options{Prefix: "halblab", Halb: self, Dir: o.dir, Dataplane: o.dataplane})
		if err != nil {
			fmt.Fprintf(stderr, "halb lab up: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "lab up: namespaces %s*; the client is %s (try: ip netns exec %s curl http://192.0.2.9/)\n",
			s.Lab.Prefix(), s.Client.Name, s.Client.Name)
		fmt.Fprintf(stdout, "load balancer sockets: %s, %s (halb status --socket …); 'halb lab down' removes it all\n",
			s.LBs[0].Socket, s.LBs[1].Socket)
		return 0
	case "demo":
		if left, _ := netns.Leftovers("halblab"); len(left) > 0 {
			fmt.Fprintln(stderr, "halb lab demo: removing the leftovers of an earlier lab")
			if err := netns.RemoveLeftovers("halblab"); err != nil {
				fmt.Fprintf(stderr, "halb lab demo: %v\n", err)
				return 1
			}
		}
		_, err := demo.Run(ctx, demo.Options{Halb: self, Dir: o.dir, Dataplane: o.dataplane, Out: stdout, Keep: o.keep})
		if err != nil {
			fmt.Fprintf(stderr, "halb lab demo: %v\n", err)
			return 1
		}
		return 0
	case "bench":
		if err := netns.RemoveLeftovers("halblab"); err != nil {
			fmt.Fprintf(stderr, "halb lab bench: %v\n", err)
			return 1
		}
		_, err := demo.Bench(ctx, demo.BenchOptions{Options: demo.Options{Halb: self, Dir: o.dir, Dataplane: o.dataplane, Out: stdout}, Trials: o.trials})
		if err != nil {
			fmt.Fprintf(stderr, "halb lab bench: %v\n", err)
			return 1
		}
		return 0
	case "status":
		left, _ := netns.Leftovers("halblab")
		if len(left) == 0 {
			fmt.Fprintln(stdout, "no lab is up")
			return 0
		}
		fmt.Fprintf(stdout, "lab namespaces: %v\n", left)
		for _, name := range site.LBNames {
			sock := filepath.Join(o.dir, name, "halb.sock")
			st, err := api.NewClient(sock).Status(ctx)
			if err != nil {
				fmt.Fprintf(stdout, "\n%s: %v\n", name, err)
				continue
			}
			fmt.Fprintln(stdout)
			writeStatus(stdout, st, time.Now(), statusWidth)
		}
		return 0
	case "down":
		if err := netns.RemoveLeftovers("halblab"); err != nil {
			fmt.Fprintf(stderr, "halb lab down: %v\n", err)
			return 1
		}
		// Remove only what the lab writes, whatever --dir names.
		for _, sub := range site.Dirs() {
			os.RemoveAll(filepath.Join(o.dir, sub))
		}
		os.Remove(o.dir)
		fmt.Fprintln(stdout, "lab removed")
		return 0
	}
	return 2
}
