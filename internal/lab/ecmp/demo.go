package ecmp

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"halb/internal/api"
	"halb/internal/lab/traffic"
)

// DemoOptions configure the demo.
type DemoOptions struct {
	Options
	Out io.Writer
	// Keep leaves the lab up at the end.
	Keep bool
}

// Step is one line of the summary table.
type Step struct {
	Name       string
	Requests   int
	Failed     int
	LongestGap time.Duration
	// LongLivedAt counts the long-lived connections alive at the step's
	// start, LongLivedKept those of them alive at its end.
	LongLivedAt, LongLivedKept int
	// Router is how long the router's route took to reflect the step
	// (0: the step did not change it).
	Router time.Duration
	Note   string
}

type demo struct {
	out   io.Writer
	start time.Time
	lab   *Lab
	gen   *traffic.Generator
	steps []Step
}

func (d *demo) sayf(format string, args ...any) {
	fmt.Fprintf(d.out, "[%6.1fs] %s\n", time.Since(d.start).Seconds(), fmt.Sprintf(format, args...))
}

// Demo runs the ECMP demo: traffic spread over three nodes, one node
// killed, one drained, one added, a backend killed; then the summary.
func Demo(ctx context.Context, opts DemoOptions) ([]Step, error) {
	d := &demo{out: opts.Out, start: time.Now()}
	d.sayf("building the lab: a router (BIRD 2, ECMP over BGP with BFD), a client behind it, %d halb nodes and three nginx backends", Nodes)
	l, err := Up(ctx, opts.Options, 3)
	if err != nil {
		return nil, err
	}
	d.lab = l
	defer func() {
		if !opts.Keep {
			d.sayf("tearing the lab down")
			if err := l.Down(); err != nil {
				d.sayf("tearing the lab down: %v", err)
			}
		}
	}()
	if err := d.run(ctx); err != nil {
		d.sayf("demo stopped: %v", err)
		return d.steps, err
	}
	return d.steps, nil
}

func (d *demo) run(ctx context.Context) error {
	l := d.lab
	d.sayf("halb runs on lb1, lb2 and lb3; waiting for the router to install a route with three next hops")
	if _, err := d.waitHops(ctx, []string{NodeAddr(0), NodeAddr(1), NodeAddr(2)}, 30*time.Second); err != nil {
		return err
	}
	if err := d.waitHealthy(ctx, 3, 30*time.Second); err != nil {
		return err
	}
	d.showRoute()

	gctx, stopTraffic := context.WithCancel(ctx)
	defer stopTraffic()
	d.gen = &traffic.Generator{Dial: l.Client.DialContext, VIPs: []string{VIP}, Port: 80,
		Interval: 100 * time.Millisecond, Timeout: time.Second, Persistent: 60}
	go d.gen.Run(gctx)
	d.sayf("the client opens a new HTTP connection to %s every 100 ms and keeps 60 long-lived connections, each asking every 100 ms", VIP)

	d.sleep(ctx, time.Second) // the long-lived connections open
	// 1. Steady state.
	from, before := time.Now(), d.alive()
	rx := d.rx()
	d.sleep(ctx, 5*time.Second)
	w := d.gen.Summary(from, time.Now())
	d.sayf("steady state: %d requests, %d failed; backends: %s", w.Requests, w.Failed, traffic.Spread(w.ByBackend))
	d.sayf("packets each node received (client traffic, BFD, health checks): %s", d.rxSpread(rx))
	d.record("1. steady state, 3 nodes", from, before, 0, "")

	// 2. A node crashes.
	from, before = time.Now(), d.alive()
	d.sayf("lb3 crashes: halb is killed (kill -9)")
	if err := l.Nodes[2].Kill(); err != nil {
		return err
	}
	took, err := d.waitHops(ctx, []string{NodeAddr(0), NodeAddr(1)}, 10*time.Second)
	if err != nil {
		return err
	}
	d.sayf("the router took lb3 out of the route after %s; its flows now reach lb1 and lb2, which send them to the same backends (Maglev)", took.Round(time.Millisecond))
	d.sleep(ctx, 3*time.Second)
	d.record("2. lb3 killed", from, before, took, "")

	// 3. A node is drained.
	from, before = time.Now(), d.alive()
	d.sayf("draining lb2 (halb drain): it withdraws its route and keeps forwarding what still reaches it")
	dr, err := api.NewClient(l.Nodes[1].Socket).Drain(ctx, true)
	if err != nil {
		return err
	}
	d.sayf("lb2 withdrew %s", strings.Join(dr.Withdrawn, ", "))
	if took, err = d.waitHops(ctx, []string{NodeAddr(0)}, 10*time.Second); err != nil {
		return err
	}
	d.sayf("the router took lb2 out after %s", took.Round(time.Millisecond))
	d.sleep(ctx, 3*time.Second)
	d.record("3. lb2 drained", from, before, took, "")

	// 4. A node is added.
	from, before = time.Now(), d.alive()
	d.sayf("adding lb4: starting halb there")
	if err := l.StartNode(ctx, 3); err != nil {
		return err
	}
	if took, err = d.waitHops(ctx, []string{NodeAddr(0), NodeAddr(3)}, 30*time.Second); err != nil {
		return err
	}
	d.sayf("lb4 is in the route after %s (from its start: health checks, BGP session, BFD)", took.Round(time.Millisecond))
	rx = d.rx()
	d.sleep(ctx, 3*time.Second)
	d.sayf("packets each node received (client traffic, BFD, health checks): %s", d.rxSpread(rx))
	d.record("4. lb4 added", from, before, took, "")

	// 5. A backend dies.
	from, before = time.Now(), d.alive()
	d.sayf("killing web2's nginx (192.0.2.22), as a crash would")
	l.Backends[1].Kill()
	start := time.Now()
	if err := d.waitServer(ctx, "192.0.2.22", false, 30*time.Second); err != nil {
		return err
	}
	d.sayf("lb1 and lb4 took web2 out after %s (http /healthz every 500 ms, 2 failures)", time.Since(start).Round(time.Millisecond))
	d.sleep(ctx, 3*time.Second)
	w = d.gen.Summary(time.Now().Add(-3*time.Second), time.Now())
	d.sayf("backends now: %s", traffic.Spread(w.ByBackend))
	d.record("5. backend web2 killed", from, before, 0, "web2's own long-lived connections die with it")
	stopTraffic()
	d.summary()
	return nil
}

func (d *demo) sleep(ctx context.Context, dur time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(dur):
	}
}

func (d *demo) alive() int {
	if d.gen == nil {
		return 0
	}
	total, broken, _ := d.gen.LongLived()
	return total - broken
}

func (d *demo) record(name string, from time.Time, before int, router time.Duration, note string) {
	w := d.gen.Summary(from, time.Now())
	st := Step{Name: name, Requests: w.Requests, Failed: w.Failed, LongestGap: w.LongestGap,
		LongLivedAt: before, LongLivedKept: d.alive(), Router: router, Note: note}
	if _, broken, reasons := d.gen.LongLived(); broken > 0 && note == "" && st.LongLivedKept < before {
		st.Note = "broken: " + reasons[len(reasons)-1]
	}
	d.steps = append(d.steps, st)
}

func (d *demo) summary() {
	fmt.Fprintln(d.out, "\nSummary")
	tw := tabwriter.NewWriter(d.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STEP\tREQUESTS\tFAILED\tLONGEST GAP\tLONG-LIVED KEPT\tROUTER UPDATED\tNOTE")
	for _, s := range d.steps {
		router := "-"
		if s.Router > 0 {
			router = s.Router.Round(time.Millisecond).String()
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%d/%d\t%s\t%s\n", s.Name, s.Requests, s.Failed, s.LongestGap.Round(time.Millisecond),
			s.LongLivedKept, s.LongLivedAt, router, s.Note)
	}
	tw.Flush()
}

// waitHops waits until the router's route to the VIP has the next hops
// want, in any order.
func (d *demo) waitHops(ctx context.Context, want []string, limit time.Duration) (time.Duration, error) {
	slices.Sort(want)
	return d.poll(ctx, limit, "the router's next hops "+strings.Join(want, ", "), func() bool {
		got, err := d.lab.NextHops()
		slices.Sort(got)
		return err == nil && slices.Equal(got, want)
	})
}

// waitHealthy waits until every running node sees n healthy backends.
func (d *demo) waitHealthy(ctx context.Context, n int, limit time.Duration) error {
	_, err := d.poll(ctx, limit, fmt.Sprintf("%d healthy backends on every node", n), func() bool {
		for _, node := range d.lab.Nodes {
			if !node.Running() {
				continue
			}
			st, err := node.Status(ctx)
			if err != nil || healthy(st) != n {
				return false
			}
		}
		return true
	})
	return err
}

// waitServer waits until every running node sees the server up or down.
func (d *demo) waitServer(ctx context.Context, addr string, up bool, limit time.Duration) error {
	_, err := d.poll(ctx, limit, addr+" taken out on every node", func() bool {
		for _, node := range d.lab.Nodes {
			if !node.Running() {
				continue
			}
			st, err := node.Status(ctx)
			if err != nil || len(st.Services) == 0 {
				return false
			}
			for _, s := range st.Services[0].Servers {
				if s.Address == addr && s.Healthy != up {
					return false
				}
			}
		}
		return true
	})
	return err
}

func healthy(st api.Status) int {
	n := 0
	if len(st.Services) > 0 {
		for _, s := range st.Services[0].Servers {
			if s.Healthy {
				n++
			}
		}
	}
	return n
}

func (d *demo) poll(ctx context.Context, limit time.Duration, what string, cond func() bool) (time.Duration, error) {
	start := time.Now()
	for !cond() {
		if time.Since(start) > limit {
			return 0, fmt.Errorf("gave up waiting %v for %s", limit, what)
		}
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start), nil
}

func (d *demo) showRoute() {
	out, err := d.lab.Router.Run("ip", "route", "show", VIP)
	if err != nil {
		d.sayf("router: ip route: %v", err)
		return
	}
	d.sayf("the router's route:\n           %s", strings.ReplaceAll(strings.TrimSpace(string(out)), "\n", "\n           "))
}

// rx reads every running node's received packets.
func (d *demo) rx() map[string]uint64 {
	out := map[string]uint64{}
	for _, n := range d.lab.Nodes {
		if v, err := n.RxPackets(); err == nil {
			out[n.Name] = v
		}
	}
	return out
}

// rxSpread renders each node's share of the packets received since from.
func (d *demo) rxSpread(from map[string]uint64) string {
	now := d.rx()
	by := map[string]int{}
	for name, v := range now {
		if n := int(v - from[name]); n > 0 {
			by[name] = n
		}
	}
	return traffic.Spread(by)
}
