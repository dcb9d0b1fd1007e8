// Package demo runs the lab demo: it brings the reference site up in
// network namespaces, sends steady client traffic to every VIP, breaks a
// backend and a load balancer while narrating what halb does, brings
// everything back, and prints a summary table.
package demo

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"halb/internal/api"
	"halb/internal/lab/site"
	"halb/internal/lab/traffic"
)

// Options configure the demo.
type Options struct {
	Halb      string // the halb binary the load balancers run
	Dir       string // work directory (configurations, logs)
	Dataplane string
	Out       io.Writer
	// Keep leaves the lab up at the end (halb lab down removes it).
	Keep bool
}

// Step is one line of the summary table.
type Step struct {
	Name       string
	Requests   int
	Failed     int
	LongestGap time.Duration
	// LongLived counts long-lived connections alive at the step's start
	// and those of them that survived it (-1: not measured).
	LongLivedAt, LongLivedKept int
	Note                       string
}

type runner struct {
	opts  Options
	out   io.Writer
	start time.Time
	site  *site.Site
	gen   *traffic.Generator
	steps []Step
}

func (r *runner) sayf(format string, args ...any) {
	fmt.Fprintf(r.out, "[%6.1fs] %s\n", time.Since(r.start).Seconds(), fmt.Sprintf(format, args...))
}

// Run runs the whole demo and returns its steps.
func Run(ctx context.Context, opts Options) ([]Step, error) {
	r := &runner{opts: opts, out: opts.Out, start: time.Now()}
	r.sayf("building the lab: a client, two load balancers (lb-a, lb-b) and three web servers (nginx + vsftpd), in network namespaces")
	s, err := site.Up(ctx, site.Options{Prefix: "halblab", Halb: opts.Halb, Dir: opts.Dir, Dataplane: opts.Dataplane})
	if err != nil {
		return nil, err
	}
	r.site = s
	defer func() {
		if !opts.Keep {
			r.sayf("tearing the lab down")
			if err := s.Down(); err != nil {
				r.sayf("tearing the lab down: %v", err)
			}
		}
	}()
	err = r.run(ctx)
	if err != nil {
		r.sayf("demo stopped: %v", err)
		for _, lb := range s.LBs {
			r.sayf("last lines of %s's log:%s", lb.Name, tailFile(lb.Log, 8))
		}
	}
	return r.steps, err
}

func (r *runner) run(ctx context.Context) error {
	s := r.site
	r.sayf("halb runs on lb-a and lb-b; waiting for VRRP to elect the masters")
	if err := r.waitOwners(ctx, map[string]string{"web-a": "lb-a", "web-b": "lb-b"}, 30*time.Second); err != nil {
		return err
	}
	r.showOwners(ctx)

	gctx, stopTraffic := context.WithCancel(ctx)
	defer stopTraffic()
	r.gen = &traffic.Generator{Dial: s.Client.DialContext, VIPs: site.AllVIPs(), Port: 80,
		Interval: 50 * time.Millisecond, Timeout: time.Second, Persistent: 2}
	go r.gen.Run(gctx)
	r.sayf("client sends a new HTTP connection to each of the 6 VIPs every 50 ms, and keeps 2 long-lived connections per VIP")

	// 1. Steady state.
	from := time.Now()
	r.sleep(ctx, 5*time.Second)
	w := r.gen.Summary(from, time.Now())
	r.sayf("steady state: %d requests, %d failed; answers spread: %s", w.Requests, w.Failed, traffic.Spread(w.ByBackend))
	r.showProtocols(ctx)
	r.record("1. steady state", from, "")

	// 2. A backend dies.
	from = time.Now()
	before := r.longLivedAlive()
	r.sayf("killing web2's nginx and vsftpd (198.51.100.12), as a crash would")
	s.Backends[1].StopServers()
	detect, err := r.waitServerDown(ctx, "198.51.100.12", 30*time.Second)
	if err != nil {
		return err
	}
	r.sayf("both load balancers took web2 out after %.1fs (health check: http /healthz every 2s, 3 failures)", detect.Seconds())
	drained := time.Now()
	r.sleep(ctx, 3*time.Second)
	w = r.gen.Summary(drained, time.Now())
	r.sayf("after the drain: %d requests, %d failed; answers: %s", w.Requests, w.Failed, traffic.Spread(w.ByBackend))
	r.recordLong("2. backend web2 killed", from, before, "web2's own long-lived connections die with it")

	// 3. A load balancer dies.
	from = time.Now()
	before = r.longLivedAlive()
	r.sayf("lb-a, the master of %s, dies: halb is killed (kill -9) and its link cut, as in a power loss", strings.Join(site.VIPsA, ", "))
	if err := s.LBs[0].Signal(syscall.SIGKILL, 5*time.Second); err != nil {
		return err
	}
	if err := s.Cut(0, true); err != nil {
		return err
	}
	took, err := r.waitOwnersTimed(ctx, map[string]string{"web-a": "lb-b"}, 30*time.Second)
	if err != nil {
		return err
	}
	r.sayf("lb-b took over web-a after %.2fs (VRRP bound for a crash: 3 × 1s + (256−100)/256 × 1s = 3.61s)", took.Seconds())
	r.sleep(ctx, 3*time.Second)
	r.recordLong("3. lb-a dies", from, before, "")
	r.showOwners(ctx)

	// 4. Everything comes back.
	from = time.Now()
	before = r.longLivedAlive()
	r.sayf("restarting web2's servers, reconnecting lb-a and restarting halb there")
	if err := s.Backends[1].StartServers(); err != nil {
		return err
	}
	if err := s.Cut(0, false); err != nil {
		return err
	}
	if err := s.StartLB(ctx, 0); err != nil {
		return err
	}
	if err := r.waitOwners(ctx, map[string]string{"web-a": "lb-a", "web-b": "lb-b"}, 30*time.Second); err != nil {
		return err
	}
	if _, err := r.waitServerUp(ctx, "198.51.100.12", 30*time.Second); err != nil {
		return err
	}
	r.sayf("lb-a is master of web-a again (preemption) and web2 is back in the pool")
	r.sleep(ctx, 3*time.Second)
	w = r.gen.Summary(time.Now().Add(-3*time.Second), time.Now())
	r.sayf("answers again spread over: %s", traffic.Spread(w.ByBackend))
	r.recordLong("4. everything back", from, before, "")
	stopTraffic()
	r.summary()
	return nil
}

func (r *runner) sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

func (r *runner) longLivedAlive() int {
	total, broken, _ := r.gen.LongLived()
	return total - broken
}

func (r *runner) record(name string, from time.Time, note string) {
	w := r.gen.Summary(from, time.Now())
	r.steps = append(r.steps, Step{Name: name, Requests: w.Requests, Failed: w.Failed, LongestGap: w.LongestGap,
		LongLivedAt: -1, LongLivedKept: -1, Note: note})
}

func (r *runner) recordLong(name string, from time.Time, aliveBefore int, note string) {
	r.record(name, from, note)
	st := &r.steps[len(r.steps)-1]
	st.LongLivedAt, st.LongLivedKept = aliveBefore, r.longLivedAlive()
	if _, broken, reasons := r.gen.LongLived(); broken > 0 && note == "" && st.LongLivedKept < aliveBefore {
		st.Note = "broken: " + reasons[len(reasons)-1]
	}
}

func (r *runner) summary() {
	fmt.Fprintln(r.out, "\nSummary")
	tw := tabwriter.NewWriter(r.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STEP\tREQUESTS\tFAILED\tLONGEST GAP\tLONG-LIVED KEPT\tNOTE")
	for _, s := range r.steps {
		kept := "-"
		if s.LongLivedAt >= 0 {
			kept = fmt.Sprintf("%d/%d", s.LongLivedKept, s.LongLivedAt)
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%s\n", s.Name, s.Requests, s.Failed, s.LongestGap.Round(time.Millisecond), kept, s.Note)
	}
	tw.Flush()
}

// statuses asks every running load balancer for its status.
func (r *runner) statuses(ctx context.Context) map[string]api.Status {
	out := map[string]api.Status{}
	for _, lb := range r.site.LBs {
		if !lb.Running() {
			continue
		}
		qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		st, err := lb.Status(qctx)
		cancel()
		if err == nil {
			out[lb.Name] = st
		}
	}
	return out
}

func (r *runner) waitOwners(ctx context.Context, want map[string]string, limit time.Duration) error {
	_, err := r.waitOwnersTimed(ctx, want, limit)
	return err
}

// waitOwnersTimed waits until each instance is MASTER on the wanted node
// (and on no other), printing progress every few seconds.
func (r *runner) waitOwnersTimed(ctx context.Context, want map[string]string, limit time.Duration) (time.Duration, error) {
	start := time.Now()
	return r.poll(ctx, start, limit, "VRRP masters "+fmt.Sprint(want), func() bool {
		sts := r.statuses(ctx)
		for inst, node := range want {
			for lb, st := range sts {
				for _, in := range st.VRRP {
					if in.Name != inst {
						continue
					}
					if (lb == node) != (in.State == "MASTER") {
						return false
					}
				}
			}
			if _, ok := sts[node]; !ok {
				return false
			}
		}
		return true
	})
}

func (r *runner) serverHealthy(addr string) map[string]bool {
	out := map[string]bool{}
	for lb, st := range r.statuses(context.Background()) {
		for _, svc := range st.Services {
			for _, srv := range svc.Servers {
				if srv.Address == addr && svc.Name == "http" {
					out[lb] = srv.Healthy
				}
			}
		}
	}
	return out
}

func (r *runner) waitServerDown(ctx context.Context, addr string, limit time.Duration) (time.Duration, error) {
	return r.poll(ctx, time.Now(), limit, addr+" down on every load balancer", func() bool {
		h := r.serverHealthy(addr)
		return len(h) > 0 && !h["lb-a"] && !h["lb-b"]
	})
}

func (r *runner) waitServerUp(ctx context.Context, addr string, limit time.Duration) (time.Duration, error) {
	return r.poll(ctx, time.Now(), limit, addr+" up on every load balancer", func() bool {
		h := r.serverHealthy(addr)
		return len(h) == 2 && h["lb-a"] && h["lb-b"]
	})
}

func (r *runner) poll(ctx context.Context, start time.Time, limit time.Duration, what string, cond func() bool) (time.Duration, error) {
	lastSaid := time.Now()
	for !cond() {
		if time.Since(start) > limit {
			return 0, fmt.Errorf("gave up waiting %v for %s", limit, what)
		}
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		if time.Since(lastSaid) > 3*time.Second {
			r.sayf("  still waiting for %s (%.0fs)", what, time.Since(start).Seconds())
			lastSaid = time.Now()
		}
		time.Sleep(50 * time.Millisecond)
	}
	return time.Since(start), nil
}

func (r *runner) showOwners(ctx context.Context) {
	sts := r.statuses(ctx)
	tw := tabwriter.NewWriter(r.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "           NODE\tINSTANCE\tSTATE\tPRIORITY\tVIPS")
	for _, name := range site.LBNames {
		st, ok := sts[name]
		if !ok {
			fmt.Fprintf(tw, "           %s\t(down)\t\t\t\n", name)
			continue
		}
		for _, in := range st.VRRP {
			fmt.Fprintf(tw, "           %s\t%s\t%s\t%d\t%s\n", name, in.Name, in.State, in.EffectivePriority, strings.Join(in.VIPs, " "))
		}
	}
	tw.Flush()
}

// showProtocols shows HTTPS persistence and FTP through a VIP with real
// clients (curl).
func (r *runner) showProtocols(ctx context.Context) {
	c := r.site.Client
	var seen []string
	for range 3 {
		out, err := c.Run("curl", "-sk", "--max-time", "3", "https://192.0.2.9/")
		if err != nil {
			seen = append(seen, "error")
			continue
		}
		seen = append(seen, strings.TrimSpace(string(out)))
	}
	r.sayf("HTTPS to 192.0.2.9 three times from one client (persistent): %s", strings.Join(seen, ", "))
	for _, mode := range []struct {
		name string
		flag []string
	}{{"passive", []string{"--ftp-pasv"}}, {"active", []string{"--ftp-port", site.ClientIP}}} {
		args := append([]string{"-s", "--max-time", "5"}, mode.flag...)
		out, err := c.Run("curl", append(args, "ftp://192.0.2.10/whoami")...)
		res := strings.TrimSpace(string(out))
		if err != nil {
			res = "failed: " + err.Error()
		}
		r.sayf("FTP %s download of /whoami through 192.0.2.10: %s", mode.name, res)
	}
}

func tailFile(path string, n int) string {
	data, _ := os.ReadFile(filepath.Clean(path))
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "\n    " + strings.Join(lines, "\n    ")
}

func replaceInFile(path, old, new string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if !strings.Contains(string(data), old) {
		return fmt.Errorf("%s has no %q", path, old)
	}
	return os.WriteFile(path, []byte(strings.ReplaceAll(string(data), old, new)), 0o644)
}
