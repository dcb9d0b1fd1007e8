package demo

import (
	"context"
	"fmt"
	"io"
	"slices"
	"syscall"
	"text/tabwriter"
	"time"

	"halb/internal/lab/site"
	"halb/internal/lab/traffic"
)

// BenchOptions configure the failover benchmark.
type BenchOptions struct {
	Options
	// Trials per scenario (kill -9, graceful stop, reload).
	Trials int
}

// BenchResult holds one scenario's measurements.
type BenchResult struct {
	Scenario string
	Gaps     []time.Duration
	// LongLived counts long-lived connections alive before each trial and
	// those that survived it, over all trials.
	Alive, Survived  int
	Failed, Requests int
}

// Bench brings the site up and measures, over opts.Trials trials each: the
// traffic gap on the web-a VIPs when lb-a is killed (kill -9) or stopped
// (SIGTERM), the share of long-lived connections that survive, and the
// requests lost during a SIGHUP reload.
func Bench(ctx context.Context, opts BenchOptions) ([]BenchResult, error) {
	r := &runner{opts: opts.Options, out: opts.Out, start: time.Now()}
	r.sayf("building the lab")
	s, err := site.Up(ctx, site.Options{Prefix: "halblab", Halb: opts.Halb, Dir: opts.Dir, Dataplane: opts.Dataplane})
	if err != nil {
		return nil, err
	}
	defer func() {
		if err := s.Down(); err != nil {
			r.sayf("tearing the lab down: %v", err)
		}
	}()
	r.site = s
	if err := r.waitOwners(ctx, map[string]string{"web-a": "lb-a", "web-b": "lb-b"}, 30*time.Second); err != nil {
		return nil, err
	}
	var results []BenchResult
	for _, sc := range []struct {
		name string
		sig  syscall.Signal
	}{{"master dies (kill -9, link cut)", syscall.SIGKILL}, {"graceful stop of the master", syscall.SIGTERM}} {
		res := BenchResult{Scenario: sc.name}
		for i := range opts.Trials {
			gap, alive, kept, err := r.failoverTrial(ctx, sc.sig)
			if err != nil {
				return results, fmt.Errorf("%s, trial %d: %w", sc.name, i+1, err)
			}
			res.Gaps = append(res.Gaps, gap)
			res.Alive += alive
			res.Survived += kept
			r.sayf("%s, trial %d/%d: gap %v, long-lived kept %d/%d", sc.name, i+1, opts.Trials, gap.Round(time.Millisecond), kept, alive)
		}
		results = append(results, res)
	}
	res := BenchResult{Scenario: "SIGHUP reload with a changed weight"}
	for i := range opts.Trials {
		failed, total, err := r.reloadTrial(ctx, i)
		if err != nil {
			return results, err
		}
		res.Failed += failed
		res.Requests += total
	}
	r.sayf("reloads: %d of %d requests lost over %d reloads", res.Failed, res.Requests, opts.Trials)
	results = append(results, res)
	PrintBench(opts.Out, results)
	return results, nil
}

// failoverTrial stops lb-a with sig under 10 ms probes to lb-a's VIPs,
// waits for lb-b to answer, then restores lb-a as master.
func (r *runner) failoverTrial(ctx context.Context, sig syscall.Signal) (time.Duration, int, int, error) {
	s := r.site
	gctx, stop := context.WithCancel(ctx)
	gen := &traffic.Generator{Dial: s.Client.DialContext, VIPs: site.VIPsA, Port: 80,
		Interval: 10 * time.Millisecond, Timeout: 500 * time.Millisecond, Persistent: 3}
	done := make(chan struct{})
	go func() { gen.Run(gctx); close(done) }()
	defer func() { stop(); <-done }()
	time.Sleep(time.Second)
	total, broken, _ := gen.LongLived()
	alive := total - broken
	from := time.Now()
	if err := s.LBs[0].Signal(sig, 5*time.Second); err != nil {
		return 0, 0, 0, err
	}
	if sig == syscall.SIGKILL {
		if err := s.Cut(0, true); err != nil {
			return 0, 0, 0, err
		}
		defer func() {
			if err := s.Cut(0, false); err != nil {
				r.sayf("reconnecting lb-a: %v", err)
			}
		}()
	}
	if err := r.waitOwners(ctx, map[string]string{"web-a": "lb-b"}, 20*time.Second); err != nil {
		return 0, 0, 0, err
	}
	time.Sleep(2 * time.Second)
	w := gen.Summary(from, time.Now())
	total, broken, _ = gen.LongLived()
	kept := total - broken
	if sig == syscall.SIGKILL {
		if err := s.Cut(0, false); err != nil {
			return 0, 0, 0, err
		}
	}
	if err := s.StartLB(ctx, 0); err != nil {
		return 0, 0, 0, err
	}
	if err := r.waitOwners(ctx, map[string]string{"web-a": "lb-a", "web-b": "lb-b"}, 30*time.Second); err != nil {
		return 0, 0, 0, err
	}
	return w.LongestGap, alive, kept, nil
}

// reloadTrial reloads both load balancers with a changed weight under
// traffic to every VIP and counts failed requests.
func (r *runner) reloadTrial(ctx context.Context, i int) (failed, total int, err error) {
	s := r.site
	gctx, stop := context.WithCancel(ctx)
	gen := &traffic.Generator{Dial: s.Client.DialContext, VIPs: site.AllVIPs(), Port: 80,
		Interval: 20 * time.Millisecond, Timeout: time.Second}
	done := make(chan struct{})
	go func() { gen.Run(gctx); close(done) }()
	defer func() { stop(); <-done }()
	time.Sleep(500 * time.Millisecond)
	from := time.Now()
	old, new := fmt.Sprintf("weight: %d}", 1+i%2), fmt.Sprintf("weight: %d}", 1+(i+1)%2)
	for _, lb := range s.LBs {
		if err := replaceInFile(lb.Config, "{address: 198.51.100.13, "+old, "{address: 198.51.100.13, "+new); err != nil {
			return 0, 0, err
		}
		if err := lb.Notify(syscall.SIGHUP); err != nil {
			return 0, 0, err
		}
	}
	time.Sleep(1500 * time.Millisecond)
	w := gen.Summary(from, time.Now())
	return w.Failed, w.Requests, nil
}

// PrintBench prints the results as a table of medians and percentiles.
func PrintBench(w io.Writer, results []BenchResult) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\nSCENARIO\tTRIALS\tGAP p50\tGAP p99\tGAP max\tLONG-LIVED SURVIVED\tREQUESTS LOST")
	for _, r := range results {
		if len(r.Gaps) == 0 {
			fmt.Fprintf(tw, "%s\t\t\t\t\t\t%d/%d\n", r.Scenario, r.Failed, r.Requests)
			continue
		}
		g := slices.Clone(r.Gaps)
		slices.Sort(g)
		fmt.Fprintf(tw, "%s\t%d\t%v\t%v\t%v\t%d/%d (%.0f%%)\t\n", r.Scenario, len(g), pct(g, 50), pct(g, 99), g[len(g)-1].Round(time.Millisecond),
			r.Survived, r.Alive, 100*float64(r.Survived)/float64(max(r.Alive, 1)))
	}
	tw.Flush()
}

func pct(sorted []time.Duration, p int) time.Duration {
	i := (len(sorted)*p + 99) / 100
	return sorted[max(min(i, len(sorted))-1, 0)].Round(time.Millisecond)
}
