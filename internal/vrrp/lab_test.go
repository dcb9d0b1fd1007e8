package vrrp

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"halb/internal/config"
	"halb/internal/event"
	"halb/internal/lab/labtest"
	"halb/internal/lab/netns"
)

const helperEnv = "HALB_VRRP_TEST_NODE"

// TestMain doubles as a VRRP node for lab tests: started inside a
// namespace with helperEnv naming a config file, the test binary runs the
// runner until SIGTERM, reloads on SIGHUP and prints events as JSON lines.
func TestMain(m *testing.M) {
	if path := os.Getenv(helperEnv); path != "" {
		os.Exit(helperNode(path))
	}
	os.Exit(m.Run())
}

func helperNode(path string) int {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg, diags := config.Load(path, config.Options{Hostname: "lab"})
	if cfg == nil {
		fmt.Fprint(os.Stderr, diags.String())
		return 1
	}
	n := New(cfg, WithLogger(log))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		for range hup {
			next, diags := config.Load(path, config.Options{Hostname: "lab"})
			if next == nil {
				log.Error("reload refused", "diags", diags.String())
				continue
			}
			if err := n.Reload(next); err != nil {
				log.Error("reload", "err", err)
				continue
			}
			log.Info(reloadDone)
		}
	}()
	events := make(chan event.VRRP, 16)
	var wg sync.WaitGroup
	wg.Go(func() {
		enc := json.NewEncoder(os.Stdout)
		for ev := range events {
			enc.Encode(ev)
		}
	})
	err := n.Run(ctx, events)
	close(events)
	wg.Wait()
	if err != nil {
		log.Error("vrrp stopped", "err", err)
		return 1
	}
	return 0
}

// node is a VRRP daemon running in a lab host: this test binary, the
// halb binary, or keepalived.
type node struct {
	t      *testing.T
	host   *netns.Host
	cmd    *exec.Cmd
	logs   *syncBuffer
	events chan event.VRRP
	exited chan struct{}
	conf   string
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startHelper runs this test binary as a VRRP node in host with the YAML
// configuration.
func startHelper(t *testing.T, host *netns.Host, yaml string) *node {
	t.Helper()
	conf := filepath.Join(t.TempDir(), "halb.yaml")
	if err := os.WriteFile(conf, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := host.Command(context.Background(), os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+conf)
	n := startNode(t, host, cmd, conf, true)
	n.waitReady(halbReady)
	return n
}

// Log lines that show a daemon has started its instances.
const (
	halbReady       = "VRRP instance starting"
	keepalivedReady = "Entering BACKUP STATE"
)

// reloadDone is the helper's log line once a SIGHUP reload is applied.
const reloadDone = "reload applied"

// reload sends SIGHUP to a helper node and waits until the reload is
// applied, calling check (which fails the test on a violation) meanwhile.
func (n *node) reload(check func()) {
	n.t.Helper()
	before := strings.Count(n.logs.String(), reloadDone)
	if err := syscall.Kill(n.cmd.Process.Pid, syscall.SIGHUP); err != nil {
		n.t.Fatal(err)
	}
	deadline := time.Now().Add(startupAllowance)
	for strings.Count(n.logs.String(), reloadDone) == before {
		check()
		if time.Now().After(deadline) {
			n.t.Fatalf("%s: reload not applied within %s", n.host.Name, startupAllowance)
		}
		time.Sleep(20 * time.Millisecond)
	}
	check()
}

// startupAllowance bounds a daemon's start-up (a race-instrumented binary
// on a loaded machine can take seconds); protocol timings are measured
// from readiness, so this bound proves nothing about VRRP itself.
const startupAllowance = 30 * time.Second

// waitReady waits until the node's log shows line: protocol timers run
// from there, so timing bounds do not include process start-up.
func (n *node) waitReady(line string) {
	n.t.Helper()
	deadline := time.Now().Add(startupAllowance)
	for !strings.Contains(n.logs.String(), line) {
		select {
		case <-n.exited:
			n.t.Fatalf("%s exited before it was ready", n.host.Name)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			n.t.Fatalf("%s not ready (%q) within %s", n.host.Name, line, startupAllowance)
		}
	}
}

// startKeepalived runs keepalived (VRRP only) in host with the config.
func startKeepalived(t *testing.T, host *netns.Host, conf string) *node {
	t.Helper()
	labtest.RequireTool(t, "keepalived")
	dir := t.TempDir()
	path := filepath.Join(dir, "keepalived.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := host.Command(context.Background(), "keepalived", "-n", "-l", "-D", "--vrrp", "-f", path,
		"-p", filepath.Join(dir, "k.pid"), "-r", filepath.Join(dir, "v.pid"))
	n := startNode(t, host, cmd, path, false)
	n.waitReady(keepalivedReady)
	return n
}

func startNode(t *testing.T, host *netns.Host, cmd *exec.Cmd, conf string, jsonEvents bool) *node {
	t.Helper()
	n := &node{t: t, host: host, cmd: cmd, logs: &syncBuffer{}, events: make(chan event.VRRP, 256), exited: make(chan struct{}), conf: conf}
	// keepalived signals its process group; give each node its own.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Stderr = n.logs
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if !jsonEvents {
				n.logs.Write(append(sc.Bytes(), '\n'))
				continue
			}
			var ev event.VRRP
			if json.Unmarshal(sc.Bytes(), &ev) == nil {
				n.events <- ev
			}
		}
		cmd.Wait()
		close(n.exited)
	}()
	t.Cleanup(func() {
		n.kill()
		if t.Failed() {
			t.Logf("logs of %s in %s:\n%s", filepath.Base(cmd.Path), host.Name, n.logs.String())
		}
	})
	return n
}

func (n *node) confPath() string { return n.conf }

// kill stops the node with SIGKILL (its whole process group).
func (n *node) kill() {
	if n.cmd.Process != nil {
		syscall.Kill(-n.cmd.Process.Pid, syscall.SIGKILL)
		<-n.exited
	}
}

// term stops the node with SIGTERM and waits for it.
func (n *node) term() {
	n.t.Helper()
	syscall.Kill(n.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-n.exited:
	case <-time.After(10 * time.Second):
		n.t.Fatalf("%s did not stop on SIGTERM", n.host.Name)
	}
}

// hasAddr reports whether host has addr on any interface.
func hasAddr(t *testing.T, host *netns.Host, addr string) bool {
	t.Helper()
	out, err := host.Run("ip", "-o", "addr", "show")
	if err != nil {
		t.Fatalf("ip addr: %v: %s", err, out)
	}
	for _, f := range strings.Fields(string(out)) {
		if strings.HasPrefix(f, addr+"/") {
			return true
		}
	}
	return false
}

// waitVIP waits until the VIP is on exactly the want host of hosts, and
// returns how long that took.
func waitVIP(t *testing.T, vip string, within time.Duration, want *netns.Host, hosts ...*netns.Host) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := start.Add(within)
	for {
		ok := true
		var holders []string
		for _, h := range hosts {
			has := hasAddr(t, h, vip)
			if has {
				holders = append(holders, h.Name)
			}
			if has != (h == want) {
				ok = false
			}
		}
		if ok {
			return time.Since(start)
		}
		if time.Now().After(deadline) {
			name := "nobody"
			if want != nil {
				name = want.Name
			}
			t.Fatalf("after %s, %s held by %v; want %s only", within, vip, holders, name)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// holdVIP checks that the VIP stays on want only for d (at least once,
// so d = 0 checks now).
func holdVIP(t *testing.T, vip string, d time.Duration, want *netns.Host, hosts ...*netns.Host) {
	t.Helper()
	end := time.Now().Add(d)
	for {
		for _, h := range hosts {
			if hasAddr(t, h, vip) != (h == want) {
				t.Fatalf("%s moved: %s holds it = %v", vip, h.Name, h != want)
			}
		}
		if !time.Now().Before(end) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// pair is two lab nodes a (192.0.2.1, 2001:db8::1) and b (.2) on one
// switch; aPort and bPort are their switch ports.
type pair struct {
	lab          *netns.Lab
	sw, a, b     *netns.Host
	aPort, bPort string
}

func newPair(t *testing.T) *pair {
	t.Helper()
	lab := labtest.NewLab(t)
	p := &pair{lab: lab}
	var err error
	must := func(e error) {
		t.Helper()
		if e != nil {
			t.Fatal(e)
		}
	}
	p.sw, err = lab.AddSwitch("sw")
	must(err)
	p.a, err = lab.AddHost("a")
	must(err)
	p.b, err = lab.AddHost("b")
	must(err)
	for _, h := range []*netns.Host{p.a, p.b} {
		_, err := h.Run("sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")
		must(err)
	}
	p.aPort, err = lab.Connect(p.a, p.sw, "eth0", "192.0.2.1/24", "2001:db8::1/64")
	must(err)
	p.bPort, err = lab.Connect(p.b, p.sw, "eth0", "192.0.2.2/24", "2001:db8::2/64")
	must(err)
	return p
}

// masterDown is the protocol bound for a crash: 3 × advert + skew.
func masterDown(interval time.Duration, prio int) time.Duration {
	return 3*interval + time.Duration(256-prio)*interval/256
}

// generous is the test bound: twice the protocol bound plus a second.
func generous(d time.Duration) time.Duration { return 2*d + time.Second }

// scriptDir is a temporary directory that tracking and notify scripts,
// which run as nobody, can read and write.
func scriptDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o777); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func halbConf(name string, vrid, prio int, extra string, vips ...string) string {
	return fmt.Sprintf(`node: %s
vrrp:
  instances:
    - name: vi%d
      interface: eth0
      vrid: %d
      priority: %d
      advert_interval: 100ms
      garp: {count: 1, second_burst: 0s}
      vips: [%s]
%s`, name, vrid, vrid, prio, strings.Join(vips, ", "), extra)
}

// TestLabHalbPair: stale VIP removal at start, election by priority,
// kill -9 of the master, preemption on its return, SIGTERM (priority 0),
// in VRRPv3 over IPv4 multicast.
func TestLabHalbPair(t *testing.T) {
	p := newPair(t)
	const vip = "192.0.2.100"
	iv := 100 * time.Millisecond
	// b holds a stale VIP from an earlier life: it removes it at start.
	if err := p.b.IP("addr", "add", vip+"/24", "dev", "eth0"); err != nil {
		t.Fatal(err)
	}
	a := startHelper(t, p.a, halbConf("a", 10, 150, "", vip+"/24"))
	b := startHelper(t, p.b, halbConf("b", 10, 100, "", vip+"/24"))
	waitVIP(t, vip, 5*iv, p.a, p.b) // gone from b before any election
	waitEvent(t, b, "vi10", "BACKUP", time.Second)
	waitVIP(t, vip, generous(masterDown(iv, 100)), p.a, p.a, p.b)
	holdVIP(t, vip, 5*iv, p.a, p.a, p.b)

	a.kill() // its VIP stays behind on a, as on a crashed node
	took := waitVIP(t, vip, generous(masterDown(iv, 100)), p.b, p.b)
	t.Logf("kill -9 of the master: VIP moved in %s (bound %s)", took, masterDown(iv, 100))
	// The killed node left its VIP behind: the restarted node removes the
	// stale VIP at start, then preempts.
	if !hasAddr(t, p.a, vip) {
		t.Fatal("the killed node's VIP is gone")
	}
	a = startHelper(t, p.a, halbConf("a", 10, 150, "", vip+"/24"))
	waitVIP(t, vip, generous(masterDown(iv, 150)), p.a, p.a, p.b)

	a.term()
	took = waitVIP(t, vip, generous(iv*106/256), p.b, p.a, p.b)
	t.Logf("SIGTERM of the master: VIP moved in %s", took)
	_ = b
}

// mode is one protocol variant of a failover scenario.
type mode struct {
	name     string
	version  int
	interval time.Duration
	v6       bool
	unicast  bool
	auth     string
	ah       bool // auth under IPsec AH, not in clear
}

func (m mode) vip() string {
	if m.v6 {
		return "2001:db8::100"
	}
	return "192.0.2.100"
}

func (m mode) self(host int) string {
	if m.v6 {
		return fmt.Sprintf("2001:db8::%d", host)
	}
	return fmt.Sprintf("192.0.2.%d", host)
}

func (m mode) plen() string {
	if m.v6 {
		return "/64"
	}
	return "/24"
}

// halbYAML is a halb configuration of one instance for host (1 or 2).
func (m mode) halbYAML(host, prio int, preempt bool, extra string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "node: n%d\nvrrp:\n  instances:\n    - name: vi\n      interface: eth0\n      vrid: 10\n", host)
	fmt.Fprintf(&b, "      priority: %d\n      version: %d\n      advert_interval: %s\n      preempt: %v\n", prio, m.version, m.interval, preempt)
	fmt.Fprintf(&b, "      garp: {count: 1, second_burst: 0s}\n      vips: [%s%s]\n", m.vip(), m.plen())
	if m.unicast {
		fmt.Fprintf(&b, "      unicast_source: %s\n      unicast_peers: [%s]\n", m.self(host), m.self(3-host))
	}
	if m.auth != "" {
		fmt.Fprintf(&b, "      auth_password: %s\n", m.auth)
	}
	if m.ah {
		b.WriteString("      auth_type: ah\n")
	}
	b.WriteString(extra)
	return b.String()
}

// keepalivedConf is the same instance for keepalived.
func (m mode) keepalivedConf(host, prio int, preempt bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "global_defs {\n  router_id n%d\n  vrrp_garp_master_repeat 1\n  vrrp_garp_master_refresh 0\n}\n", host)
	fmt.Fprintf(&b, "vrrp_instance vi {\n  state BACKUP\n  interface eth0\n  virtual_router_id 10\n  priority %d\n", prio)
	fmt.Fprintf(&b, "  advert_int %g\n  version %d\n", m.interval.Seconds(), m.version)
	if !preempt {
		b.WriteString("  nopreempt\n")
	}
	if m.unicast {
		fmt.Fprintf(&b, "  unicast_src_ip %s\n  unicast_peer {\n    %s\n  }\n", m.self(host), m.self(3-host))
	}
	if m.auth != "" {
		kind := "PASS"
		if m.ah {
			kind = "AH"
		}
		fmt.Fprintf(&b, "  authentication {\n    auth_type %s\n    auth_pass %s\n  }\n", kind, m.auth)
	}
	fmt.Fprintf(&b, "  virtual_ipaddress {\n    %s%s\n  }\n}\n", m.vip(), m.plen())
	return b.String()
}

var modes = []mode{
	{name: "v3-ipv4", version: 3, interval: 100 * time.Millisecond},
	{name: "v3-ipv6", version: 3, interval: 100 * time.Millisecond, v6: true},
	{name: "v3-ipv4-unicast", version: 3, interval: 100 * time.Millisecond, unicast: true},
	{name: "v3-ipv6-unicast", version: 3, interval: 100 * time.Millisecond, v6: true, unicast: true},
	{name: "v2-ipv4-auth", version: 2, interval: time.Second, auth: "s3cret"},
}

// start runs kind ("halb" or "keepalived") on host number n of the pair.
func (p *pair) start(t *testing.T, kind string, m mode, n, prio int, preempt bool) *node {
	t.Helper()
	host := p.a
	if n == 2 {
		host = p.b
	}
	if kind == "keepalived" {
		return startKeepalived(t, host, m.keepalivedConf(n, prio, preempt))
	}
	return startHelper(t, host, m.halbYAML(n, prio, preempt, ""))
}

// TestLabFailover runs the VRRP runner in-process (this test binary as
// the daemon), with halb or keepalived on either side: election by
// priority, kill -9 of the master, preemption when it returns, and
// SIGTERM of the master (priority 0). It covers the variant that
// TestLabHalbRun (the halb binary, the other variants) leaves out.
func TestLabFailover(t *testing.T) {
	labtest.RequireRoot(t)
	for _, m := range []mode{modes[3]} {
		for _, kinds := range [][2]string{{"halb", "halb"}, {"halb", "keepalived"}, {"keepalived", "halb"}} {
			t.Run(fmt.Sprintf("%s/%s-%s", m.name, kinds[0], kinds[1]), func(t *testing.T) {
				p := newPair(t)
				vip := m.vip()
				crash := generous(masterDown(m.interval, 100))
				a := p.start(t, kinds[0], m, 1, 150, true)
				p.start(t, kinds[1], m, 2, 100, true)
				waitVIP(t, vip, crash, p.a, p.a, p.b)
				holdVIP(t, vip, 3*m.interval, p.a, p.a, p.b)

				a.kill()
				took := waitVIP(t, vip, crash, p.b, p.b)
				t.Logf("kill -9: %s moved in %s", vip, took)

				p.a.IP("addr", "del", vip+m.plen(), "dev", "eth0")
				a = p.start(t, kinds[0], m, 1, 150, true)
				waitVIP(t, vip, generous(masterDown(m.interval, 150)), p.a, p.a, p.b)

				a.term()
				took = waitVIP(t, vip, generous(m.interval), p.b, p.a, p.b)
				t.Logf("SIGTERM: %s moved in %s", vip, took)
			})
		}
	}
}

// TestLabNoPreempt: a higher-priority node with preempt off does not take
// the VIP back from a running master (halb or keepalived).
func TestLabNoPreempt(t *testing.T) {
	labtest.RequireRoot(t)
	m := modes[0]
	for _, peer := range []string{"halb", "keepalived"} {
		t.Run(peer, func(t *testing.T) {
			p := newPair(t)
			p.start(t, peer, m, 2, 100, true)
			waitVIP(t, m.vip(), generous(masterDown(m.interval, 100)), p.b, p.a, p.b)
			p.start(t, "halb", m, 1, 150, false)
			holdVIP(t, m.vip(), 3*masterDown(m.interval, 150), p.b, p.a, p.b)
		})
	}
}
