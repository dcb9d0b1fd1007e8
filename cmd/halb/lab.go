package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"halb/internal/api"
	"halb/internal/lab/demo"
	"halb/internal/lab/faults"
	"halb/internal/lab/netns"
	"halb/internal/lab/site"
)

func init() {
	register("lab", "the reference site in network namespaces: up, demo, bench, status, down", runLab)
}

const labDir = "/run/halb-lab"

func runLab(args []string, stdout, stderr io.Writer) int {
	usage := func() {
		fmt.Fprintln(stderr, "usage: halb lab up|demo|bench|status|down [--dir DIR] [--dataplane auto|nftables|ipvs] [--trials N]")
	}
	if len(args) == 0 {
		usage()
		return 2
	}
	fs := flag.NewFlagSet("lab", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", labDir, "work `DIR` for the lab's configurations, logs and sockets")
	dp := fs.String("dataplane", "", "data plane of the lab's load balancers (default: the configuration's, auto)")
	keep := fs.Bool("keep", false, "demo: leave the lab up at the end")
	trials := fs.Int("trials", 20, "bench: trials per scenario")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
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
	switch args[0] {
	case "up":
		if left, _ := netns.Leftovers("halblab"); len(left) > 0 {
			fmt.Fprintf(stderr, "halb lab: a lab is already up (%d namespaces); run 'halb lab down' first\n", len(left))
			return 1
		}
		s, err := site.Up(ctx, site.Options{Prefix: "halblab", Halb: self, Dir: *dir, Dataplane: *dp})
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
			netns.RemoveLeftovers("halblab")
		}
		_, err := demo.Run(ctx, demo.Options{Halb: self, Dir: *dir, Dataplane: *dp, Out: stdout, Keep: *keep})
		if err != nil {
			fmt.Fprintf(stderr, "halb lab demo: %v\n", err)
			return 1
		}
		return 0
	case "bench":
		netns.RemoveLeftovers("halblab")
		_, err := demo.Bench(ctx, demo.BenchOptions{Options: demo.Options{Halb: self, Dir: *dir, Dataplane: *dp, Out: stdout}, Trials: *trials})
		if err != nil {
			fmt.Fprintf(stderr, "halb lab bench: %v\n", err)
			return 1
		}
		return 0
	case "faults":
		if err := netns.RemoveLeftovers("halblab"); err != nil {
			fmt.Fprintf(stderr, "halb lab faults: %v\n", err)
			return 1
		}
		results, err := faults.Run(ctx, faults.Options{Halb: self, Dir: *dir, Prefix: "halblab", Dataplane: *dp, Progress: stderr})
		if werr := faults.WriteTable(stdout, results); err == nil {
			err = werr
		}
		if broken := faults.Broken(results); err != nil || len(broken) > 0 {
			fmt.Fprintf(stderr, "halb lab faults: %d broken promises; %v\n", len(broken), err)
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
			sock := filepath.Join(*dir, name, "halb.sock")
			st, err := api.NewClient(sock).Status(ctx)
			if err != nil {
				fmt.Fprintf(stdout, "\n%s: %v\n", name, err)
				continue
			}
			fmt.Fprintln(stdout)
			writeStatus(stdout, st, time.Now())
		}
		return 0
	case "down":
		if err := netns.RemoveLeftovers("halblab"); err != nil {
			fmt.Fprintf(stderr, "halb lab down: %v\n", err)
			return 1
		}
		// Remove only what the lab writes, whatever --dir names.
		for _, sub := range site.Dirs() {
			os.RemoveAll(filepath.Join(*dir, sub))
		}
		os.Remove(*dir)
		fmt.Fprintln(stdout, "lab removed")
		return 0
	}
	usage()
	return 2
}
