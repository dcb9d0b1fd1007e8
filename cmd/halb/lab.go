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
	"halb/internal/lab/ecmp"
	"halb/internal/lab/netns"
	"halb/internal/lab/site"
)

func init() {
	register("lab", "the reference site in network namespaces: up, demo, bench, status, down", runLab)
}

const labDir = "/run/halb-lab"

func runLab(args []string, stdout, stderr io.Writer) int {
	usage := func() {
		fmt.Fprintln(stderr, "usage: halb lab up|demo|bench|status|down [--topology pair|ecmp] [--dir DIR] [--dataplane auto|nftables|ipvs] [--trials N] [--conns N]")
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
	conns := fs.Int("conns", 1000, "bench --topology ecmp: long-lived connections per event")
	topology := fs.String("topology", "pair", "up, demo, bench: pair (two nodes, VRRP) or ecmp (a BGP router and N nodes)")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	if *topology != "pair" && *topology != "ecmp" {
		fmt.Fprintf(stderr, "halb lab: unknown topology %q (pair or ecmp)\n", *topology)
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
		if *topology == "ecmp" {
			return ecmpUp(ctx, self, *dir, stdout, stderr)
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
			if err := netns.RemoveLeftovers("halblab"); err != nil {
				fmt.Fprintf(stderr, "halb lab demo: %v\n", err)
				return 1
			}
		}
		var err error
		if *topology == "ecmp" {
			_, err = ecmp.Demo(ctx, ecmp.DemoOptions{Options: ecmp.Options{Prefix: "halblab", Halb: self, Dir: *dir}, Out: stdout, Keep: *keep})
		} else {
			_, err = demo.Run(ctx, demo.Options{Halb: self, Dir: *dir, Dataplane: *dp, Out: stdout, Keep: *keep})
		}
		if err != nil {
			fmt.Fprintf(stderr, "halb lab demo: %v\n", err)
			return 1
		}
		return 0
	case "bench":
		if *topology == "ecmp" {
			_, err := ecmp.Bench(ctx, ecmp.BenchOptions{Options: ecmp.Options{Prefix: "halblab", Halb: self, Dir: *dir},
				Out: stdout, Conns: *conns})
			if err != nil {
				fmt.Fprintf(stderr, "halb lab bench: %v\n", err)
				return 1
			}
			return 0
		}
		if err := netns.RemoveLeftovers("halblab"); err != nil {
			fmt.Fprintf(stderr, "halb lab bench: %v\n", err)
			return 1
		}
		_, err := demo.Bench(ctx, demo.BenchOptions{Options: demo.Options{Halb: self, Dir: *dir, Dataplane: *dp, Out: stdout}, Trials: *trials})
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
		for _, sub := range append(site.Dirs(), ecmp.Dirs()...) {
			os.RemoveAll(filepath.Join(*dir, sub))
		}
		os.Remove(*dir)
		fmt.Fprintln(stdout, "lab removed")
		return 0
	}
	usage()
	return 2
}

// ecmpUp brings the ECMP lab up with halb on three of its nodes.
func ecmpUp(ctx context.Context, self, dir string, stdout, stderr io.Writer) int {
	l, err := ecmp.Up(ctx, ecmp.Options{Prefix: "halblab", Halb: self, Dir: dir}, 3)
	if err != nil {
		fmt.Fprintf(stderr, "halb lab up: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "lab up: namespaces %s*; the client is %s (try: ip netns exec %s curl http://%s/)\n",
		l.Lab.Prefix(), l.Client.Name, l.Client.Name, ecmp.VIP)
	fmt.Fprintf(stdout, "the router %s runs BIRD (ip netns exec %s ip route show %s); node sockets: %s, %s, %s\n",
		l.Router.Name, l.Router.Name, ecmp.VIP, l.Nodes[0].Socket, l.Nodes[1].Socket, l.Nodes[2].Socket)
	return 0
}
