// Command health benchmarks halb's health checker against HAProxy's: the
// same servers (addresses of one IPv6 prefix that a single nginx answers
// in a backend network namespace) checked every second over TCP and HTTP,
// one checker after the other in the same run. It prints, per checker and
// check type, the checks per second the backend saw, the checker's CPU and
// RSS, how long it took to take down servers that started refusing
// connections (p50/p99), and how many other servers it took down. Both
// ends of every check run on this machine, so the CPU figures include the
// backend's kernel work for the connections (the SYNs and resets it
// handles). It needs root, iproute2, nftables, nginx and haproxy.
//
//	go run ./bench/health [-servers 10000] [-duration 20s] [-modes tcp,http]
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"math"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"halb/internal/config"
	"halb/internal/event"
	"halb/internal/health"
)

var (
	servers  = flag.Int("servers", 10000, "real servers to check")
	duration = flag.Duration("duration", 20*time.Second, "measured time per checker and check type (after a 5s warm-up)")
	modes    = flag.String("modes", "tcp,http", "check types to measure: tcp, http")
	kill     = flag.Int("kill", 100, "servers made to refuse connections during each run")
	haproxy  = flag.Bool("haproxy", true, "also run HAProxy with the same checks")
	child    = flag.String("child", "", "internal: run halb's checker on this configuration file")
	profile  = flag.String("cpuprofile", "", "write a CPU profile of halb's checker to this file")
)

const (
	interval = time.Second
	timeout  = time.Second
	rise     = 2
	fall     = 3
	warmup   = 5 * time.Second
	prefix   = "2001:db8:200::"
)

func main() {
	flag.Parse()
	log.SetFlags(0)
	if *child != "" {
		if err := runChild(*child); err != nil {
			log.Fatal(err)
		}
		return
	}
	if os.Geteuid() != 0 {
		log.Fatal("health benchmark: needs root (network namespaces)")
	}
	tools := []string{"ip", "nft", "nginx"}
	if *haproxy {
		tools = append(tools, "haproxy")
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			log.Fatalf("health benchmark: %s is not installed (scripts/install-deps.sh installs it)", tool)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		log.Fatal(err)
	}
}

// server returns the address of server i.
func server(i int) netip.Addr {
	a := netip.MustParseAddr(prefix).As16()
	a[14], a[15] = byte((i+1)>>8), byte(i+1)
	return netip.AddrFrom16(a)
}

type row struct {
	mode, checker string
	checksPerSec  float64
	cpu           float64 // cores
	rssMB         float64
	detected      int
	falseDown     int // servers never killed reported down
	p50, p99      time.Duration
}

func run(ctx context.Context) error {
	if *servers < 1 || *servers > 65000 || *kill > *servers {
		return errors.New("need 1 <= kill <= servers <= 65000")
	}
	dir, err := os.MkdirTemp("", "halb-bench-health-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	l, err := newLab(dir)
	defer l.close()
	if err != nil {
		return err
	}
	var rows []row
	for _, mode := range strings.Split(*modes, ",") {
		if mode != "tcp" && mode != "http" {
			return fmt.Errorf("mode %q: not tcp or http", mode)
		}
		checkers := []func(context.Context, string, string) (*target, error){startHalb}
		if *haproxy {
			checkers = append(checkers, startHAProxy)
		}
		for _, start := range checkers {
			r, err := l.measure(ctx, mode, dir, start)
			if err != nil {
				return err
			}
			rows = append(rows, r)
			fmt.Fprintf(os.Stderr, "%s %s: %.0f checks/s, %.2f cores\n", r.mode, r.checker, r.checksPerSec, r.cpu)
		}
	}
	fmt.Printf("\nhealth checks: %d servers, interval %s, timeout %s, rise %d, fall %d; %s measured per run after %s warm-up;\n",
		*servers, interval, timeout, rise, fall, *duration, warmup)
	fmt.Printf("%d servers start refusing connections (TCP reset) during each run; detection = until the checker reports them down;\n", *kill)
	fmt.Printf("false DOWN = reports of other servers going down during the measured time.\n\n")
	fmt.Printf("%-5s %-8s %10s %12s %9s %10s %9s %9s %11s\n", "check", "checker", "checks/s", "CPU (cores)", "RSS (MB)", "detected", "p50", "p99", "false DOWN")
	for _, r := range rows {
		fmt.Printf("%-5s %-8s %10.0f %12.3f %9.1f %6d/%-3d %9s %9s %11d\n", r.mode, r.checker, r.checksPerSec, r.cpu, r.rssMB,
			r.detected, *kill, r.p50.Round(time.Millisecond), r.p99.Round(time.Millisecond), r.falseDown)
	}
	return nil
}

// lab is a load balancer namespace and a backend namespace whose nginx
// answers every address of the servers' prefix.
type lab struct {
	lb, be string
	nginx  *exec.Cmd
}

func sh(args ...string) error {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

func newLab(dir string) (*lab, error) {
	name := fmt.Sprintf("halbbench%d", os.Getpid())
	l := &lab{lb: name + "-lb", be: name + "-be"}
	pfx := prefix + "/112"
	steps := [][]string{
		{"ip", "netns", "add", l.lb},
		{"ip", "netns", "add", l.be},
		{"ip", "link", "add", "hb" + strconv.Itoa(os.Getpid()), "netns", l.lb, "type", "veth", "peer", "name", "eth0", "netns", l.be},
		{"ip", "-n", l.lb, "link", "set", "hb" + strconv.Itoa(os.Getpid()), "name", "eth0"},
		{"ip", "-n", l.lb, "addr", "add", "2001:db8:100::1/64", "dev", "eth0", "nodad"},
		{"ip", "-n", l.be, "addr", "add", "2001:db8:100::2/64", "dev", "eth0", "nodad"},
		{"ip", "-n", l.lb, "link", "set", "lo", "up"},
		{"ip", "-n", l.be, "link", "set", "lo", "up"},
		{"ip", "-n", l.lb, "link", "set", "eth0", "up"},
		{"ip", "-n", l.be, "link", "set", "eth0", "up"},
		// Static neighbours: on a fresh link, neighbour discovery takes
		// a second, which the first checker's first checks would pay.
		{"ip", "-n", l.lb, "link", "set", "eth0", "address", "02:00:00:00:01:01"},
		{"ip", "-n", l.be, "link", "set", "eth0", "address", "02:00:00:00:01:02"},
		{"ip", "-n", l.lb, "neigh", "replace", "2001:db8:100::2", "lladdr", "02:00:00:00:01:02", "dev", "eth0", "nud", "permanent"},
		{"ip", "-n", l.be, "neigh", "replace", "2001:db8:100::1", "lladdr", "02:00:00:00:01:01", "dev", "eth0", "nud", "permanent"},
		{"ip", "-n", l.lb, "-6", "route", "add", pfx, "via", "2001:db8:100::2"},
		{"ip", "-n", l.be, "-6", "route", "add", "local", pfx, "dev", "lo"},
		{"ip", "netns", "exec", l.be, "nft", "add table inet halbbench; " +
			"add chain inet halbbench count { type filter hook input priority -20; policy accept; }; " +
			"add rule inet halbbench count tcp dport 80 tcp flags & (syn | ack) == syn counter; " +
			"add chain inet halbbench kill { type filter hook input priority -10; policy accept; }"},
	}
	for _, s := range steps {
		if err := sh(s...); err != nil {
			return l, err
		}
	}
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.MkdirAll(filepath.Join(dir, "nginx"), 0o755); err != nil {
		return l, err
	}
	err := os.WriteFile(conf, []byte(strings.ReplaceAll(`daemon off;
worker_processes 2;
worker_rlimit_nofile 200000;
pid DIR/nginx/nginx.pid;
error_log DIR/nginx/error.log;
events { worker_connections 50000; }
http {
  access_log off;
  client_body_temp_path DIR/nginx/body;
  proxy_temp_path DIR/nginx/proxy;
  fastcgi_temp_path DIR/nginx/fcgi;
  uwsgi_temp_path DIR/nginx/uwsgi;
  scgi_temp_path DIR/nginx/scgi;
  server {
    listen [::]:80 ipv6only=on reuseport backlog=65535;
    location = /healthz { return 200 "ok\n"; }
  }
}
`, "DIR", dir)), 0o644)
	if err != nil {
		return l, err
	}
	l.nginx = exec.Command("ip", "netns", "exec", l.be, "nginx", "-p", dir, "-c", conf, "-e", filepath.Join(dir, "nginx/error.log"))
	l.nginx.Stderr = os.Stderr
	if err := l.nginx.Start(); err != nil {
		return l, fmt.Errorf("starting nginx: %w", err)
	}
	time.Sleep(500 * time.Millisecond)
	return l, nil
}

func (l *lab) close() {
	if l.nginx != nil && l.nginx.Process != nil {
		l.nginx.Process.Signal(syscall.SIGQUIT)
		_ = l.nginx.Wait() // stopped on purpose: its exit status says so
	}
	for _, ns := range []string{l.lb, l.be} {
		if out, err := exec.Command("ip", "netns", "pids", ns).Output(); err == nil {
			for _, f := range strings.Fields(string(out)) {
				if pid, err := strconv.Atoi(f); err == nil {
					syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		}
		_ = exec.Command("ip", "netns", "del", ns).Run() // best effort: a left namespace is harmless
	}
}

// synCount reads how many connections the backend was asked for.
func (l *lab) synCount() (uint64, error) {
	out, err := exec.Command("ip", "netns", "exec", l.be, "nft", "list", "chain", "inet", "halbbench", "count").Output()
	if err != nil {
		return 0, fmt.Errorf("reading the SYN counter: %w", err)
	}
	m := regexp.MustCompile(`counter packets (\d+)`).FindSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("no counter in %s", out)
	}
	return strconv.ParseUint(string(m[1]), 10, 64)
}

// target is a running checker: its process and its reports of servers
// going down.
type target struct {
	name   string
	cmd    *exec.Cmd
	down   chan downEvent
	exited chan struct{}
}

type downEvent struct {
	server int
	at     time.Time
}

func (l *lab) measure(ctx context.Context, mode, dir string, start func(context.Context, string, string) (*target, error)) (row, error) {
	tg, err := start(ctx, mode, dir+"/"+mode)
	if err != nil {
		return row{}, err
	}
	defer tg.stop()
	r := row{mode: mode, checker: tg.name}
	if err := sleep(ctx, warmup); err != nil {
		return r, err
	}
	select {
	case <-tg.exited:
		return r, fmt.Errorf("%s exited during the warm-up: %v", tg.name, tg.cmd.ProcessState)
	default:
	}
	pid := tg.cmd.Process.Pid
	cpu0, err := cpuTime(pid)
	if err != nil {
		return r, err
	}

	syn0, err := l.synCount()
	if err != nil {
		return r, err
	}
	t0 := time.Now()
	// Drop what was reported during the warm-up.
	for len(tg.down) > 0 {
		<-tg.down
	}
	killAt := t0.Add(*duration / 4)
	end := t0.Add(*duration)
	killed := false
	var killTime time.Time
	var rss float64
	lat := map[int]time.Duration{}
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for time.Now().Before(end) {
		select {
		case <-ctx.Done():
			return r, ctx.Err()
		case ev := <-tg.down:
			if killed && ev.server < *kill {
				if _, seen := lat[ev.server]; !seen {
					lat[ev.server] = ev.at.Sub(killTime)
				}
			}
			if ev.server >= *kill {
				r.falseDown++
			}
		case <-tick.C:
			rss = max(rss, rssMB(pid))
			if !killed && time.Now().After(killAt) {
				rule := fmt.Sprintf("add rule inet halbbench kill ip6 daddr %s-%s tcp dport 80 reject with tcp reset", server(0), server(*kill-1))
				if err := sh("ip", "netns", "exec", l.be, "nft", rule); err != nil {
					return r, err
				}
				killed, killTime = true, time.Now()
			}
		}
	}
	elapsed := time.Since(t0)
	cpu1, err := cpuTime(pid)
	if err != nil {
		return r, err
	}

	syn1, err := l.synCount()
	if err != nil {
		return r, err
	}
	if err := sh("ip", "netns", "exec", l.be, "nft", "flush chain inet halbbench kill"); err != nil {
		return r, err
	}
	r.checksPerSec = float64(syn1-syn0) / elapsed.Seconds()
	r.cpu = (cpu1 - cpu0).Seconds() / elapsed.Seconds()
	r.rssMB = rss
	var ds []time.Duration
	for _, d := range lat {
		ds = append(ds, d)
	}
	slices.Sort(ds)
	r.detected = len(ds)
	r.p50, r.p99 = percentile(ds, 0.50), percentile(ds, 0.99)
	return r, nil
}

func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	i := int(math.Ceil(p*float64(len(ds)))) - 1
	return ds[max(i, 0)]
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// cpuTime returns the CPU time of a process: the sum of its threads'
// run time as the scheduler counts it (schedstat, to the nanosecond),
// else user+system time from stat (sampled at the clock tick).
func cpuTime(pid int) (time.Duration, error) {
	if tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid)); err == nil {
		var sum time.Duration
		ok := true
		for _, t := range tasks {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/schedstat", pid, t.Name()))
			if err != nil {
				ok = false
				break
			}
			f := strings.Fields(string(b))
			ns, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				ok = false
				break
			}
			sum += time.Duration(ns)
		}
		if ok {
			return sum, nil
		}
	}
	return tickCPUTime(pid)
}

// tickCPUTime returns the user+system CPU time of a process from stat.
func tickCPUTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name, which is in parentheses.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	const hz = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / hz, nil
}

// rssMB returns a process's resident set size in MB.
func rssMB(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}

// startHalb runs halb's checker in a child process in the lb namespace.
func startHalb(ctx context.Context, mode, base string) (*target, error) {
	var b strings.Builder
	check := fmt.Sprintf("{type: tcp, port: 80, interval: %s, timeout: %s, rise: %d, fall: %d}", interval, timeout, rise, fall)
	if mode == "http" {
		check = fmt.Sprintf("{type: http, port: 80, path: /healthz, interval: %s, timeout: %s, rise: %d, fall: %d}", interval, timeout, rise, fall)
	}
	fmt.Fprintf(&b, "pools:\n  bench:\n    check: %s\n    servers:\n", check)
	for i := range *servers {
		fmt.Fprintf(&b, "      - {address: \"%s\"}\n", server(i))
	}
	path := base + "-halb.yaml"
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	args := []string{"netns", "exec", netnsName("lb"), self, "-child", path}
	if *profile != "" {
		args = append(args, "-cpuprofile", *profile+"."+mode)
	}
	cmd := exec.CommandContext(ctx, "ip", args...)
	return startTarget("halb", cmd, func(line string) (int, bool) {
		f := strings.Fields(line)
		if len(f) != 2 || f[1] != "DOWN" {
			return 0, false
		}
		return serverIndex(f[0])
	})
}

func netnsName(role string) string { return fmt.Sprintf("halbbench%d-%s", os.Getpid(), role) }

// serverIndex maps an address back to its server number.
func serverIndex(s string) (int, bool) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return 0, false
	}
	b := a.As16()
	return int(b[14])<<8 | int(b[15]) - 1, true
}

var haproxyDown = regexp.MustCompile(`Server b/s(\d+) is DOWN`)

// startHAProxy runs HAProxy with the same servers and checks.
func startHAProxy(ctx context.Context, mode, base string) (*target, error) {
	var b strings.Builder
	fmt.Fprintf(&b, `global
  log stdout format raw local0
  maxconn 2000
defaults
  log global
  option log-health-checks
  mode tcp
  timeout connect %[1]dms
  timeout check %[1]dms
  timeout client 10s
  timeout server 10s
frontend f
  bind [2001:db8:100::1]:8080
  default_backend b
backend b
`, timeout.Milliseconds())
	if mode == "http" {
		b.WriteString("  option httpchk GET /healthz\n  http-check expect status 200\n")
	}
	fmt.Fprintf(&b, "  default-server check inter %dms rise %d fall %d\n", interval.Milliseconds(), rise, fall)
	for i := range *servers {
		fmt.Fprintf(&b, "  server s%d [%s]:80\n", i, server(i))
	}
	path := base + "-haproxy.cfg"
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", netnsName("lb"), "haproxy", "-db", "-f", path)
	return startTarget("haproxy", cmd, func(line string) (int, bool) {
		m := haproxyDown.FindStringSubmatch(line)
		if m == nil {
			return 0, false
		}
		i, err := strconv.Atoi(m[1])
		return i, err == nil
	})
}

// stop ends a checker: SIGTERM, then SIGKILL after 5s.
func (tg *target) stop() {
	tg.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-tg.exited:
	case <-time.After(5 * time.Second):
		tg.cmd.Process.Kill()
		<-tg.exited
	}
}

// startTarget starts a checker and turns its output lines into down
// events with parse.
func startTarget(name string, cmd *exec.Cmd, parse func(string) (int, bool)) (*target, error) {
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	tg := &target{name: name, cmd: cmd, down: make(chan downEvent, 65536), exited: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if i, ok := parse(sc.Text()); ok {
				select {
				case tg.down <- downEvent{server: i, at: time.Now()}:
				default:
				}
			}
		}
		_, _ = io.Copy(io.Discard, out) // drained so that the process can end
		_ = cmd.Wait()                  // stopped by the bench: its exit status says so
		close(tg.exited)
	}()
	return tg, nil
}

// runChild runs halb's checker on a configuration and prints each
// transition as "ADDRESS UP|DOWN".
func runChild(path string) error {
	cfg, diags := config.Load(path, config.Options{Hostname: "bench"})
	if diags.HasErrors() {
		return diags
	}
	if *profile != "" {
		f, err := os.Create(*profile)
		if err != nil {
			return err
		}
		defer func() {
			if err := f.Close(); err != nil {
				fmt.Fprintln(os.Stderr, "writing the profile:", err)
			}
		}()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	events := make(chan event.Health, 1024)
	// Failures by what went wrong (the reason after the target).
	var whyMu sync.Mutex
	why := map[string]int{}
	c := health.New(cfg, health.WithResultHook(func(r health.CheckResult) {
		if !r.Result.OK {
			d := r.Result.Detail
			if i := strings.LastIndex(d, ": "); i >= 0 {
				d = d[i+2:]
			}
			whyMu.Lock()
			why[d]++
			whyMu.Unlock()
		}
	}))
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx, events) }()
	w := bufio.NewWriter(os.Stdout)
	flush := time.NewTicker(20 * time.Millisecond)
	defer flush.Stop()
	for {
		select {
		case ev := <-events:
			state := "DOWN"
			if ev.Up {
				state = "UP"
			}
			_, _ = fmt.Fprintf(w, "%s %s\n", ev.Addr, state) // buffered: a failure shows at Flush
		case <-flush.C:
			_ = w.Flush() // to stdout: nowhere else to report
		case err := <-done:
			_ = w.Flush()
			st := c.Stats()
			fmt.Fprintf(os.Stderr, "halb: %d checks, %d failed\n", st.Checks, st.Failures)
			whyMu.Lock()
			for d, n := range why {
				fmt.Fprintf(os.Stderr, "halb: %d× %s\n", n, d)
			}
			whyMu.Unlock()
			return err
		}
	}
}
