// Command vrrp benchmarks VRRP failover of halb against keepalived in a
// network-namespace lab: nodes a (priority 150) and b (priority 100) hold
// a VIP; a client namespace connects to a TCP listener on the VIP every
// 10 ms. The master dies half an interval after one of its adverts
// (seen by the client, on the same switch), so every daemon is stopped at
// the same phase of its advert cycle. Failover time is from the master's
// death (kill -9 plus its link cut, as a crashed node; or a graceful stop
// with SIGTERM) to the first connection answered by b. It prints p50/p99 per daemon, interval and
// stop mode side by side, with the protocol bound. The soak mode then
// runs each daemon at short intervals with a CPU hog in each node and
// counts spurious state changes. It needs root, iproute2 and keepalived.
//
//	go run ./bench/vrrp [-trials 20] [-intervals 1s,100ms] [-phase advert|random] [-soak 30s] [-soak-intervals 50ms,20ms]
//	go run ./bench/vrrp -trials 0 -soak 5m    # the 5-minute soak only
//	go run ./bench/vrrp -trials 0 -soak 5m -rt 10    # with real-time scheduling
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/net/ipv4"

	"halb/internal/config"
	"halb/internal/event"
	"halb/internal/lab/netns"
	"halb/internal/vrrp"
	"halb/internal/vrrp/packet"
)

var (
	trials        = flag.Int("trials", 20, "failovers per daemon, interval and stop mode")
	intervals     = flag.String("intervals", "1s,100ms", "advert intervals of the failover runs")
	daemons       = flag.String("daemons", "halb,keepalived", "daemons to measure")
	stops         = flag.String("stops", "kill,term", "stop modes: kill (kill -9 and link cut), term (SIGTERM)")
	soak          = flag.Duration("soak", 30*time.Second, "soak duration per daemon and interval (0: no soak; 5m for the full run)")
	soakIntervals = flag.String("soak-intervals", "50ms,20ms", "advert intervals of the soak")
	hogs          = flag.Bool("hogs", true, "soak with a CPU hog in each node")
	phase         = flag.String("phase", "advert", "when the master dies: advert (half an interval after an advert of the master seen on the switch, the same phase for every daemon) or random (a random point of the advert cycle)")
	rtPrio        = flag.Int("rt", 0, "real-time priority (1..99) and locked memory for both daemons: vrrp.realtime_priority and lock_memory, keepalived's vrrp_rt_priority and vrrp_no_swap (0: normal scheduling)")
	verbose       = flag.Bool("v", false, "copy every line the daemons log to stderr")
	halbBin       = flag.String("halb", "", "run this halb binary (halb run --dataplane none) instead of the VRRP runner built in")
	role          = flag.String("role", "", "internal: node CONFIG | serve NAME | probe ADDR | hog")
)

const (
	vip  = "192.0.2.100"
	port = "7007"
)

func main() {
	flag.Parse()
	if *role != "" {
		os.Exit(runRole(*role, flag.Args()))
	}
	if os.Geteuid() != 0 {
		log.Fatal("needs root (network namespaces)")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		log.Fatal(err)
	}
}

// lab is the bench topology.
type lab struct {
	l            *netns.Lab
	adverts      chan time.Time // when c saw an advert of a
	sw, a, b, c  *netns.Host
	aPort, bPort string
	sniffer      net.PacketConn
	dir          string
	seq          int // names each daemon's own directory (keepalived trips over old pid files)
}

func newLab() (*lab, error) {
	l := &lab{l: netns.New("halbbench")}
	var err error
	step := func(f func() error) {
		if err == nil {
			err = f()
		}
	}
	step(func() (e error) { l.sw, e = l.l.AddSwitch("sw"); return })
	step(func() (e error) { l.a, e = l.l.AddHost("a"); return })
	step(func() (e error) { l.b, e = l.l.AddHost("b"); return })
	step(func() (e error) { l.c, e = l.l.AddHost("c"); return })
	step(func() (e error) { l.aPort, e = l.l.Connect(l.a, l.sw, "eth0", "192.0.2.1/24"); return })
	step(func() (e error) { l.bPort, e = l.l.Connect(l.b, l.sw, "eth0", "192.0.2.2/24"); return })
	step(func() (e error) { _, e = l.l.Connect(l.c, l.sw, "eth0", "192.0.2.50/24"); return })
	step(func() (e error) { l.dir, e = os.MkdirTemp("", "halb-bench-vrrp-"); return })
	step(l.sniff)
	if err != nil {
		l.close()
		return nil, err
	}
	return l, nil
}

// sniff reports, on l.adverts, each VRRP advert that c hears from a.
func (l *lab) sniff() error {
	var (
		c   net.PacketConn
		ifi *net.Interface
	)
	err := l.c.Do(func() (err error) {
		if ifi, err = net.InterfaceByName("eth0"); err != nil {
			return err
		}
		c, err = net.ListenPacket("ip4:112", "0.0.0.0")
		return err
	})
	if err != nil {
		return fmt.Errorf("advert sniffer: %w", err)
	}
	p := ipv4.NewPacketConn(c)
	if err := p.JoinGroup(ifi, &net.IPAddr{IP: packet.GroupIPv4.AsSlice()}); err != nil {
		c.Close()
		return fmt.Errorf("advert sniffer: %w", err)
	}
	l.sniffer = c
	l.adverts = make(chan time.Time, 1)
	go func() {
		buf := make([]byte, 1500)
		for {
			_, src, err := c.ReadFrom(buf)
			if err != nil {
				return // closed
			}
			if src.String() != "192.0.2.1" {
				continue
			}
			select {
			case <-l.adverts: // keep only the latest
			default:
			}
			l.adverts <- time.Now()
		}
	}()
	return nil
}

// afterAdvert returns delay after the next advert of a.
func (l *lab) afterAdvert(ctx context.Context, delay, within time.Duration) error {
	select {
	case <-l.adverts: // an older one
	default:
	}
	select {
	case at := <-l.adverts:
		time.Sleep(time.Until(at.Add(delay)))
		return nil
	case <-time.After(within):
		return errors.New("no advert of the master seen")
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (l *lab) close() {
	if l.sniffer != nil {
		l.sniffer.Close()
	}
	if err := l.l.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "removing the lab:", err)
	}
	if l.dir != "" {
		os.RemoveAll(l.dir)
	}
}

func run(ctx context.Context) error {
	l, err := newLab()
	if err != nil {
		return err
	}
	defer l.close()
	self, err := os.Executable()
	if err != nil {
		return err
	}
	// A listener on every address of a and b says which node answered.
	for _, h := range []*netns.Host{l.a, l.b} {
		srv := h.Command(ctx, self, "-role", "serve", h.Name[len(h.Name)-1:])
		if err := srv.Start(); err != nil {
			return err
		}
		defer srv.Process.Kill()
	}
	var rows []string
	for _, iv := range splitDurations(*intervals) {
		for _, st := range strings.Split(*stops, ",") {
			if *trials == 0 {
				continue
			}
			line := fmt.Sprintf("advert %-6s %-5s bound %-9s", iv, st, bound(iv, st).Round(time.Millisecond))
			for _, d := range strings.Split(*daemons, ",") {
				var got []time.Duration
				for i := range *trials {
					if ctx.Err() != nil {
						return ctx.Err()
					}
					took, err := l.trial(ctx, self, d, iv, st)
					if err != nil {
						return fmt.Errorf("%s advert %s %s trial %d: %w", d, iv, st, i+1, err)
					}
					got = append(got, took)
				}
				slices.Sort(got)
				line += fmt.Sprintf(" | %-10s p50 %-8s p99 %-8s", d, pct(got, 50).Round(time.Millisecond), pct(got, 99).Round(time.Millisecond))
				fmt.Fprintf(os.Stderr, "%s %s %s: %v\n", d, iv, st, got)
			}
			fmt.Println(line)
			rows = append(rows, line)
		}
	}
	if *soak > 0 {
		for _, iv := range splitDurations(*soakIntervals) {
			line := fmt.Sprintf("soak advert %-5s %s, CPU hog in each node:", iv, *soak)
			for _, d := range strings.Split(*daemons, ",") {
				n, err := l.soak(ctx, self, d, iv, *soak)
				if err != nil {
					return fmt.Errorf("%s soak at %s: %w", d, iv, err)
				}
				line += fmt.Sprintf(" | %-10s %d spurious state changes", d, n)
			}
			fmt.Println(line)
			rows = append(rows, line)
		}
	}
	if len(rows) > 1 {
		fmt.Println("\nsummary (failover from the master's death to the VIP answering on the other node):")
		for _, r := range rows {
			fmt.Println(r)
		}
	}
	return nil
}

// bound is the protocol bound: 3 × advert + skew for a crash, skew for a
// graceful stop (priority 100 on the backup).
func bound(iv time.Duration, stop string) time.Duration {
	skew := 156 * iv / 256
	if stop == "term" {
		return skew
	}
	return 3*iv + skew
}

func pct(s []time.Duration, p int) time.Duration {
	if len(s) == 0 {
		return 0
	}
	i := (len(s)*p + 99) / 100
	return s[min(max(i-1, 0), len(s)-1)]
}

func splitDurations(s string) []time.Duration {
	var out []time.Duration
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		d, err := time.ParseDuration(f)
		if err != nil {
			log.Fatalf("bad duration %q", f)
		}
		out = append(out, d)
	}
	return out
}

// daemon is one running VRRP daemon.
type daemon struct {
	cmd         *exec.Cmd
	done        chan struct{}
	transitions chan string
}

func (d *daemon) kill() {
	syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
	<-d.done
}

func (d *daemon) term() {
	syscall.Kill(d.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(10 * time.Second):
		d.kill()
	}
}

// start runs daemon kind on host n (1 = a, 2 = b) with advert interval iv.
func (l *lab) start(ctx context.Context, self, kind string, h *netns.Host, n, prio int, iv time.Duration) (*daemon, error) {
	l.seq++
	dir := filepath.Join(l.dir, fmt.Sprintf("%s-%d-%d", kind, n, l.seq))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var cmd *exec.Cmd
	var parse func(string) (string, bool)
	switch kind {
	case "halb":
		conf := filepath.Join(dir, "halb.yaml")
		sched := ""
		if *rtPrio > 0 {
			sched = fmt.Sprintf("  realtime_priority: %d\n  lock_memory: true\n", *rtPrio)
		}
		y := fmt.Sprintf(`node: n%d
vrrp:
%s  instances:
    - name: vi
      interface: eth0
      vrid: 10
      priority: %d
      advert_interval: %s
      garp: {count: 1, second_burst: 0s}
      vips: [%s/24]
`, n, sched, prio, iv, vip)
		if err := os.WriteFile(conf, []byte(y), 0o644); err != nil {
			return nil, err
		}
		if *halbBin != "" {
			cmd = h.Command(ctx, *halbBin, "run", "--config", conf, "--dataplane", "none", "--socket", filepath.Join(dir, "halb.sock"))
			parse = func(line string) (string, bool) {
				if strings.Contains(line, "VRRP transition") {
					return line, true
				}
				return "", false
			}
		} else {
			cmd = h.Command(ctx, self, "-role", "node", conf)
			parse = func(line string) (string, bool) {
				var ev event.VRRP
				if json.Unmarshal([]byte(line), &ev) != nil || ev.Old == ev.New {
					return "", false
				}
				return ev.Old + "→" + ev.New, true
			}
		}
	case "keepalived":
		conf := filepath.Join(dir, "keepalived.conf")
		sched := ""
		if *rtPrio > 0 {
			sched = fmt.Sprintf("  vrrp_rt_priority %d\n  vrrp_no_swap\n", *rtPrio)
		}
		k := fmt.Sprintf(`global_defs {
  router_id n%d
  vrrp_garp_master_repeat 1
  vrrp_garp_master_refresh 0
%s}
vrrp_instance vi {
  state BACKUP
  interface eth0
  virtual_router_id 10
  priority %d
  advert_int %g
  version 3
  virtual_ipaddress {
    %s/24
  }
}
`, n, sched, prio, iv.Seconds(), vip)
		if err := os.WriteFile(conf, []byte(k), 0o644); err != nil {
			return nil, err
		}
		cmd = h.Command(ctx, "keepalived", "-n", "-l", "-D", "--vrrp", "-f", conf,
			"-p", filepath.Join(dir, "k.pid"), "-r", filepath.Join(dir, "v.pid"))
		parse = func(line string) (string, bool) {
			if i := strings.Index(line, "Entering "); i >= 0 && strings.Contains(line, "STATE") {
				return line[i:], true
			}
			return "", false
		}
	default:
		return nil, fmt.Errorf("unknown daemon %q", kind)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	errOut, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	d := &daemon{cmd: cmd, done: make(chan struct{}), transitions: make(chan string, 1024)}
	var wg sync.WaitGroup
	for _, r := range []*os.File{out.(*os.File), errOut.(*os.File)} {
		wg.Go(func() {
			sc := bufio.NewScanner(r)
			for sc.Scan() {
				if *verbose {
					fmt.Fprintf(os.Stderr, "%s %d: %s\n", kind, n, sc.Text())
				}
				if t, ok := parse(sc.Text()); ok {
					select {
					case d.transitions <- t:
					default:
					}
				}
			}
		})
	}
	go func() { wg.Wait(); _ = cmd.Wait(); close(d.done) }() // killed by the trial: no status to keep
	return d, nil
}

func hasVIP(h *netns.Host) bool {
	out, _ := h.Run("ip", "-o", "-4", "addr", "show", "dev", "eth0")
	return strings.Contains(string(out), " "+vip+"/")
}

func waitFor(ctx context.Context, within time.Duration, cond func() bool) error {
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			return errors.New("timed out")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	return nil
}

// elect clears the VIP from both nodes, starts a (priority 150) and b
// (100), and waits until a alone holds the VIP. The caller kills both.
func (l *lab) elect(ctx context.Context, self, kind string, iv time.Duration) (a, b *daemon, err error) {
	for _, h := range []*netns.Host{l.a, l.b} {
		_ = h.IP("addr", "del", vip+"/24", "dev", "eth0") // absent already, most often
	}
	if a, err = l.start(ctx, self, kind, l.a, 1, 150, iv); err != nil {
		return nil, nil, err
	}
	if b, err = l.start(ctx, self, kind, l.b, 2, 100, iv); err != nil {
		a.kill()
		return nil, nil, err
	}
	if err := waitFor(ctx, 20*iv+5*time.Second, func() bool { return hasVIP(l.a) && !hasVIP(l.b) }); err != nil {
		a.kill()
		b.kill()
		return nil, nil, fmt.Errorf("a never became the only master: %w", err)
	}
	return a, b, nil
}

// trial starts a and b, waits for a to be master and b to follow it,
// stops a and measures until the client's first connection answered by b.
func (l *lab) trial(ctx context.Context, self, kind string, iv time.Duration, stop string) (_ time.Duration, err error) {
	defer func() { err = errors.Join(err, l.sw.IP("link", "set", l.aPort, "up")) }()
	a, b, err := l.elect(ctx, self, kind, iv)
	if err != nil {
		return 0, err
	}
	defer a.kill()
	defer b.kill()
	// Let b hear a few adverts, and the client reach the VIP on a.
	time.Sleep(5 * iv)
	probe := l.c.Command(ctx, self, "-role", "probe", net.JoinHostPort(vip, port))
	out, err := probe.StdoutPipe()
	if err != nil {
		return 0, err
	}
	if err := probe.Start(); err != nil {
		return 0, err
	}
	defer func() { probe.Process.Kill(); _ = probe.Wait() }() // killed: its exit status says so
	answers := make(chan [2]string, 4096)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if f := strings.Fields(sc.Text()); len(f) == 2 {
				answers <- [2]string{f[0], f[1]}
			}
		}
		close(answers)
	}()
	// Wait until a answers the client.
	for ans := range answers {
		if ans[1] == "a" {
			break
		}
	}
	// Die at the same phase of the advert cycle for every daemon, or at a
	// random one.
	switch *phase {
	case "advert":
		if err := l.afterAdvert(ctx, iv/2, 2*iv+time.Second); err != nil {
			return 0, err
		}
	case "random":
		time.Sleep(rand.N(iv))
	default:
		return 0, fmt.Errorf("unknown phase %q", *phase)
	}
	start := time.Now()
	switch stop {
	case "kill":
		a.kill()
		if err := l.sw.IP("link", "set", l.aPort, "down"); err != nil {
			return 0, err
		}
	case "term":
		a.term()
	default:
		return 0, fmt.Errorf("unknown stop mode %q", stop)
	}
	timeout := time.After(10*bound(iv, "kill") + 5*time.Second)
	for {
		select {
		case ans, ok := <-answers:
			if !ok {
				return 0, errors.New("probe stopped")
			}
			ns, _ := strconv.ParseInt(ans[0], 10, 64)
			if at := time.Unix(0, ns); ans[1] == "b" && at.After(start) {
				return at.Sub(start), nil
			}
		case <-timeout:
			return 0, errors.New("b never answered on the VIP")
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

// soak runs a and b with a CPU hog in each node for d and counts state
// changes after the initial election.
func (l *lab) soak(ctx context.Context, self, kind string, iv, d time.Duration) (int, error) {
	a, b, err := l.elect(ctx, self, kind, iv)
	if err != nil {
		return 0, err
	}
	defer a.kill()
	defer b.kill()
	time.Sleep(10 * iv)
	drain := func(ch chan string) {
		for len(ch) > 0 {
			<-ch
		}
	}
	drain(a.transitions)
	drain(b.transitions)
	for _, h := range []*netns.Host{l.a, l.b} {
		if !*hogs {
			break
		}
		hog := h.Command(ctx, self, "-role", "hog")
		if err := hog.Start(); err != nil {
			return 0, err
		}
		defer func() { hog.Process.Kill(); _ = hog.Wait() }() // killed: its exit status says so
	}
	select {
	case <-time.After(d):
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	n := len(a.transitions) + len(b.transitions)
	for len(a.transitions) > 0 {
		fmt.Fprintf(os.Stderr, "%s a: %s\n", kind, <-a.transitions)
	}
	for len(b.transitions) > 0 {
		fmt.Fprintf(os.Stderr, "%s b: %s\n", kind, <-b.transitions)
	}
	return n, nil
}

// runRole runs the parts of the bench that live inside lab namespaces.
func runRole(role string, args []string) int {
	switch role {
	case "node":
		return node(args[0])
	case "serve":
		ln, err := net.Listen("tcp", ":"+port)
		if err != nil {
			log.Print(err)
			return 1
		}
		for {
			c, err := ln.Accept()
			if err != nil {
				return 1
			}
			_, _ = c.Write([]byte(args[0])) // the prober counts a missing answer
			c.Close()
		}
	case "probe":
		// Every 10 ms, a connection; each answer is printed with its time.
		tick := time.NewTicker(10 * time.Millisecond)
		for range tick.C {
			go func() {
				c, err := net.DialTimeout("tcp", args[0], 50*time.Millisecond)
				if err != nil {
					return
				}
				defer c.Close()
				c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
				b := make([]byte, 8)
				n, _ := c.Read(b)
				if n > 0 {
					at := time.Now().UnixNano()
					fmt.Printf("%d %s\n", at, b[:n])
				}
			}()
		}
	case "hog":
		//lint:ignore SA5002 the hog burns a CPU on purpose
		for {
		}
	}
	return 2
}

// node runs halb's VRRP runner on a configuration, printing events as
// JSON lines, until SIGTERM.
func node(path string) int {
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	cfg, diags := config.Load(path, config.Options{Hostname: "bench"})
	if cfg == nil {
		fmt.Fprint(os.Stderr, diags.String())
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	events := make(chan event.VRRP, 64)
	done := make(chan struct{})
	go func() {
		enc := json.NewEncoder(os.Stdout)
		for ev := range events {
			_ = enc.Encode(ev) // to stdout: nowhere else to report
		}
		close(done)
	}()
	err := vrrp.New(cfg, vrrp.WithLogger(logger)).Run(ctx, events)
	close(events)
	<-done
	if err != nil {
		logger.Error("vrrp stopped", "err", err)
		return 1
	}
	return 0
}
