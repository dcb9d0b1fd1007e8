package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"syscall"
	"time"

	"halb/internal/api"
	"halb/internal/lab/demo"
	"halb/internal/lab/ecmp"
	"halb/internal/lab/faults"
	"halb/internal/lab/netns"
	"halb/internal/lab/site"
)

func init() {
	register(&command{name: "lab", summary: "the reference site in network namespaces: up, demo, bench, faults, status, down",
		args: "up|demo|bench|faults|status|down", complete: labActions, setup: labFlags})
}

const labDir = "/run/halb-lab"

// labActions are what halb lab does.
var labActions = []string{"up", "demo", "bench", "faults", "status", "down"}

// labOptions are halb lab's flags.
type labOptions struct {
	dir, dataplane string
	topology       string
	keep           bool
	trials, conns  int
	rows           string // faults: the rows to run, by a regexp of their fault
}

func labFlags(fs *flag.FlagSet) runFunc {
	var o labOptions
	fs.StringVar(&o.dir, "dir", labDir, "work `DIR` for the lab's configurations, logs and sockets")
	fs.StringVar(&o.dataplane, "dataplane", "", "data plane `NAME` of the lab's load balancers: auto, ipvs, nftables (default: the configuration's, auto)")
	fs.BoolVar(&o.keep, "keep", false, "demo: leave the lab up at the end")
	fs.IntVar(&o.trials, "trials", 20, "bench: `N` trials per scenario")
	fs.IntVar(&o.conns, "conns", 1000, "bench --topology ecmp: `N` long-lived connections per event")
	fs.StringVar(&o.rows, "rows", "", "faults: run only the rows whose fault matches `REGEXP`")
	fs.StringVar(&o.topology, "topology", "pair", "up, demo, bench: `NAME` pair (two nodes, VRRP) or ecmp (a BGP router and N nodes)")
	return func(args []string, stdout, stderr io.Writer) int {
		if len(args) != 1 || !slices.Contains(labActions, args[0]) {
			fmt.Fprintln(stderr, "halb lab: needs one of up, demo, bench, faults, status, down; see halb lab --help")
			return 2
		}
		if o.topology != "pair" && o.topology != "ecmp" {
			fmt.Fprintf(stderr, "halb lab: unknown topology %q (pair or ecmp); see halb lab --help\n", o.topology)
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
		if o.topology == "ecmp" {
			return ecmpUp(ctx, self, o.dir, stdout, stderr)
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
		var err error
		if o.topology == "ecmp" {
			_, err = ecmp.Demo(ctx, ecmp.DemoOptions{Options: ecmp.Options{Prefix: "halblab", Halb: self, Dir: o.dir}, Out: stdout, Keep: o.keep})
		} else {
			_, err = demo.Run(ctx, demo.Options{Halb: self, Dir: o.dir, Dataplane: o.dataplane, Out: stdout, Keep: o.keep})
		}
		if err != nil {
			fmt.Fprintf(stderr, "halb lab demo: %v\n", err)
			return 1
		}
		return 0
	case "bench":
		if o.topology == "ecmp" {
			_, err := ecmp.Bench(ctx, ecmp.BenchOptions{Options: ecmp.Options{Prefix: "halblab", Halb: self, Dir: o.dir},
				Out: stdout, Conns: o.conns})
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
		_, err := demo.Bench(ctx, demo.BenchOptions{Options: demo.Options{Halb: self, Dir: o.dir, Dataplane: o.dataplane, Out: stdout}, Trials: o.trials})
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
		fopts := faults.Options{Halb: self, Dir: o.dir, Prefix: "halblab", Dataplane: o.dataplane, Progress: stderr}
		if o.rows != "" {
			re, err := regexp.Compile(o.rows)
			if err != nil {
				fmt.Fprintf(stderr, "halb lab faults: -rows: %v\n", err)
				return 2
			}
			fopts.Rows = re.MatchString
		}
		results, err := faults.Run(ctx, fopts)
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
		for _, sub := range append(site.Dirs(), ecmp.Dirs()...) {
			os.RemoveAll(filepath.Join(o.dir, sub))
		}
		os.Remove(o.dir)
		fmt.Fprintln(stdout, "lab removed")
		return 0
	}
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
