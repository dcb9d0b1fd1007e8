package vrrp

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"halb/internal/clock/clocktest"
	"halb/internal/config"
	"halb/internal/event"
	"halb/internal/lab/labtest"
	"halb/internal/netif"
	"halb/internal/proc"
	"halb/internal/vrrp/ah"
	"halb/internal/vrrp/fsm"
	"halb/internal/vrrp/packet"
)

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

// sentAdvert is an advert a fakeConn was asked to send; datagram is
// the whole datagram of an advert under AH.
type sentAdvert struct {
	at       time.Time
	priority int
	datagram []byte
}

// fakeConn records the adverts sent through it.
type fakeConn struct {
	clock *clocktest.Clock
	sent  []sentAdvert
	// dst is the group joined last; spec the kernel filter set last.
	dst  netip.Addr
	spec filterSpec
}

func (c *fakeConn) join(g netip.Addr) error               { c.dst = g; return nil }
func (c *fakeConn) read(chan<- received, <-chan struct{}) {}
func (c *fakeConn) filter(spec filterSpec) error          { c.spec = spec; return nil }
func (c *fakeConn) close()                                {}
func (c *fakeConn) send(b []byte, src, dst netip.Addr) error {
	msg, datagram := b, []byte(nil)
	if p, err := ah.Parse(b); err == nil {
		msg, datagram = p.Msg, b
	}
	a, err := packet.Decode(packet.Header{Src: src, Dst: dst, TTL: 255}, msg)
	if err != nil {
		return err
	}
	c.sent = append(c.sent, sentAdvert{c.clock.Now(), int(a.Priority), datagram})
	return nil
}

// fakeNet keeps link states and records VIP changes and announcements.
type fakeNet struct {
	clock     *clocktest.Clock
	up        map[string]bool
	hasVIPs   bool
	announced []time.Time
	// routing records routes and rules added (+) and removed (-).
	routing []string
	// vmacs records the virtual MAC interfaces made.
	vmacs []string
	// dropped records the lists of VIPs dropped (no_accept).
	dropped []string
}

func (n *fakeNet) AddAddrs(string, []netif.Address) error   { n.hasVIPs = true; return nil }
func (n *fakeNet) RemoveAddrs(string, []netip.Prefix) error { n.hasVIPs = false; return nil }
func (n *fakeNet) Announce(string, []netip.Addr) error {
	n.announced = append(n.announced, n.clock.Now())
	return nil
}
func (n *fakeNet) PrimaryAddr(string, int, []netip.Prefix) (netip.Addr, error) {
	return netip.MustParseAddr("192.0.2.1"), nil
}
func (n *fakeNet) LinkUp(name string) (bool, error) { return n.up[name], nil }
func (n *fakeNet) EnsureVMAC(base, name string, mac net.HardwareAddr) error {
	n.vmacs = append(n.vmacs, base+">"+name+"@"+mac.String())
	return nil
}
func (n *fakeNet) RemoveVMAC(string) error { return nil }
func (n *fakeNet) SetDropped(addrs []netip.Addr) error {
	n.dropped = append(n.dropped, fmt.Sprint(addrs))
	return nil
}
func (n *fakeNet) WatchLinks(ctx context.Context, _ chan<- netif.LinkChange) error {
	<-ctx.Done()
	return nil
}
func (n *fakeNet) WatchAddrs(ctx context.Context, _ chan<- netif.AddrChange) error {
	<-ctx.Done()
	return nil
}
func (n *fakeNet) AddRouting(routes []netif.Route, rules []netif.Rule) error {
	n.routing = append(n.routing, fmt.Sprintf("+%v %v", routes, rules))
	return nil
}
func (n *fakeNet) RemoveRouting(routes []netif.Route, rules []netif.Rule) error {
	n.routing = append(n.routing, fmt.Sprintf("-%v %v", routes, rules))
	return nil
}

// testRunner is a runner on a fake clock, socket and kernel, driven by
// the test as Run's loop would drive it.
type testRunner struct {
	*runner
	clock  *clocktest.Clock
	net    *fakeNet
	conn   *fakeConn
	evc    chan event.VRRP
	events []event.VRRP
}

func newTestRunner(t *testing.T, yaml string, up ...string) *testRunner {
	t.Helper()
	cfg, diags := config.Parse("t.yaml", []byte(yaml), config.Options{})
	if cfg == nil || len(diags.Errors()) > 0 {
		t.Fatalf("config: %s", diags)
	}
	clock := clocktest.New(time.Unix(1_000_000, 0))
	tr := &testRunner{clock: clock, net: &fakeNet{clock: clock, up: map[string]bool{}}, conn: &fakeConn{clock: clock},
		evc: make(chan event.VRRP, 1024)}
	for _, name := range up {
		tr.net.up[name] = true
	}
	tr.runner = &runner{
		log: slog.New(slog.DiscardHandler), clock: clock, net: tr.net, events: tr.evc,
		open:      func(sockKey) (conn, error) { return tr.conn, nil },
		sockets:   map[sockKey]conn{},
		instances: map[string]*instance{},
		scriptRes: make(chan scriptResult, 16),
		done:      make(chan struct{}),
		scripts:   map[string]*scriptRun{},
		linkUp:    map[string]bool{},
		counters:  &counterSet{},
		netq:      make(chan func(), 256),
		notifyq:   proc.NewQueue(1, notifyQueue),
		scanProcs: func() ([]process, error) { return nil, nil },
	}
	t.Cleanup(func() {
		close(tr.done)
		for _, sr := range tr.scripts {
			sr.stop()
		}
	})
	if err := tr.apply(cfg); err != nil {
		t.Fatal(err)
	}
	tr.flush()
	return tr
}

// flush runs the queued interface changes and collects the events.
func (tr *testRunner) flush() {
	for {
		select {
		case f := <-tr.netq:
			f()
		case ev := <-tr.evc:
			tr.events = append(tr.events, ev)
		default:
			return
		}
	}
}

// advance moves the clock by d, running every timer that falls due on
// the way at its time.
func (tr *testRunner) advance(d time.Duration) {
	end := tr.clock.Now().Add(d)
	for {
		next := tr.nextDeadline()
		if next.IsZero() || next.After(end) {
			break
		}
		tr.clock.Set(next)
		tr.tick()
		tr.flush()
	}
	tr.clock.Set(end)
}

func (tr *testRunner) state(name string) fsm.State { return tr.instances[name].m.State }

// lastEvent is the last event reported, failing the test if none.
func (tr *testRunner) lastEvent(t *testing.T) event.VRRP {
	t.Helper()
	if len(tr.events) == 0 {
		t.Fatal("no event reported")
	}
	return tr.events[len(tr.events)-1]
}

// lastPriority is the priority of the last advert sent.
func (tr *testRunner) lastPriority(t *testing.T) int {
	t.Helper()
	if len(tr.conn.sent) == 0 {
		t.Fatal("no advert sent")
	}
	return tr.conn.sent[len(tr.conn.sent)-1].priority
}

const oneInstance = `node: n
vrrp:
  instances:
    - name: vi
      interface: eth0
      vrid: 10
      priority: 100
      advert_interval: 1s
      vips: [192.0.2.100/24]
`

// TestRunnerTrackInterfaceWeights: tracked interfaces with weights move
// the advertised priority as they go down and up; the instance's own
// interface going down is a FAULT that releases the VIPs.
func TestRunnerTrackInterfaceWeights(t *testing.T) {
	tr := newTestRunner(t, oneInstance+`      track_interfaces: [{name: eth1, weight: -30}, {name: eth2, weight: 20}]
`, "eth0", "eth1", "eth2")
	if got := tr.instances["vi"].m.Effective; got != 120 {
		t.Fatalf("effective priority %d at start, want 100 + 20", got)
	}
	tr.advance(4 * time.Second) // master down: 3 s + skew, nobody else
	if tr.state("vi") != fsm.Master || !tr.net.hasVIPs || tr.lastPriority(t) != 120 {
		t.Fatalf("after 4 s: %s, VIPs %v, adverts %v", tr.state("vi"), tr.net.hasVIPs, tr.conn.sent)
	}
	for _, step := range []struct {
		link string
		up   bool
		want int
	}{{"eth1", false, 90}, {"eth2", false, 70}, {"eth1", true, 100}, {"eth2", true, 120}} {
		tr.link(netif.LinkChange{Name: step.link, Up: step.up})
		tr.flush()
		ev := tr.lastEvent(t)
		if ev.EffectivePriority != step.want || !strings.Contains(ev.Reason, "effective priority") {
			t.Errorf("%s up=%v: event %+v, want effective priority %d", step.link, step.up, ev, step.want)
		}
		tr.advance(time.Second)
		if got := tr.lastPriority(t); got != step.want {
			t.Errorf("%s up=%v: advertised %d, want %d", step.link, step.up, got, step.want)
		}
	}
	// The same state again changes nothing.
	n := len(tr.events)
	tr.link(netif.LinkChange{Name: "eth2", Up: true})
	tr.flush()
	if len(tr.events) != n {
		t.Errorf("a repeated link state reported %+v", tr.events[n:])
	}

	tr.link(netif.LinkChange{Name: "eth0", Up: false})
	tr.flush()
	if tr.state("vi") != fsm.Fault || tr.net.hasVIPs || tr.lastPriority(t) != 0 {
		t.Fatalf("eth0 down: %s, VIPs %v, last advert priority %d; want FAULT, no VIPs, priority 0",
			tr.state("vi"), tr.net.hasVIPs, tr.lastPriority(t))
	}
	sent := len(tr.conn.sent)
	tr.advance(5 * time.Second)
	if len(tr.conn.sent) != sent {
		t.Errorf("adverts sent in FAULT: %v", tr.conn.sent[sent:])
	}
	tr.link(netif.LinkChange{Name: "eth0", Up: true})
	tr.flush()
	if tr.state("vi") != fsm.Backup {
		t.Errorf("eth0 up: %s, want BACKUP", tr.state("vi"))
	}
}

// TestRunnerScriptFallRise: a tracking script of weight 0 puts the
// instance in FAULT after fall failures and out of it after rise
// successes, not before.
func TestRunnerScriptFallRise(t *testing.T) {
	tr := newTestRunner(t, oneInstance+`      track_scripts: [{name: chk}]
  scripts:
    - {name: chk, command: ["true"], user: nobody, interval: 1h, timeout: 1s, rise: 2, fall: 3}
`, "eth0")
	tr.advance(4 * time.Second)
	if tr.state("vi") != fsm.Master {
		t.Fatalf("%s, want MASTER", tr.state("vi"))
	}
	res := func(ok bool) {
		tr.script(scriptResult{name: "chk", cfg: tr.scripts["chk"].cfg, ok: ok, out: "x"})
		tr.flush()
	}
	for _, step := range []struct {
		ok   bool
		want fsm.State
	}{{false, fsm.Master}, {false, fsm.Master}, {true, fsm.Master}, {false, fsm.Master}, {false, fsm.Master}, {false, fsm.Fault},
		{true, fsm.Fault}, {false, fsm.Fault}, {true, fsm.Fault}, {true, fsm.Backup}} {
		res(step.ok)
		if got := tr.state("vi"); got != step.want {
			t.Fatalf("after a result ok=%v: %s, want %s", step.ok, got, step.want)
		}
	}
	if ev := tr.events[len(tr.events)-1]; ev.New != "BACKUP" || !strings.Contains(ev.Reason, "recovered") {
		t.Errorf("recovery event %+v", ev)
	}
	// A result for another version of the script is ignored.
	stale := tr.scripts["chk"].cfg
	stale.Fall = 1
	tr.script(scriptResult{name: "chk", cfg: stale, ok: false})
	if tr.scripts["chk"].streak != 0 {
		t.Errorf("a stale result counted")
	}
}

// TestRunScriptTimeout runs a real script that outlives its timeout and
// leaves a grandchild: both are killed and the run is reported as failed,
// with the timeout as its output.
func TestRunScriptTimeout(t *testing.T) {
	out := make(chan scriptResult, 1)
	done := make(chan struct{})
	defer close(done)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	pidFile := filepath.Join(t.TempDir(), "pid")
	s := config.Script{Name: "slow", Command: []string{"sh", "-c", "sleep 30 & echo $! > " + pidFile + "; wait"}, User: me.Username,
		Interval: config.Duration(time.Hour), Timeout: config.Duration(200 * time.Millisecond)}
	start := time.Now()
	go runScript(ctx, clocktest.New(time.Time{}), s, out, done)
	select {
	case res := <-out:
		if res.ok || res.out != "timed out after 200ms" || res.name != "slow" {
			t.Errorf("result %+v, want a failure that timed out after 200ms", res)
		}
		if took := time.Since(start); took > 200*time.Millisecond+2*time.Second {
			t.Errorf("the result took %s", took)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no result within 10 s of a 200 ms timeout")
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	running := func() bool { // a killed process may stay a zombie a while
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		_, state, _ := strings.Cut(string(b), ") ")
		return err == nil && !strings.HasPrefix(state, "Z")
	}
	for deadline := time.Now().Add(time.Second); running() && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
	}
	if running() {
		syscall.Kill(pid, syscall.SIGKILL)
		t.Errorf("the script's child %d outlived the timeout", pid)
	}
}

// TestRunScriptUser: a script runs as its user; one that cannot be
// resolved fails every run, saying why.
func TestRunScriptUser(t *testing.T) {
	labtest.RequireRoot(t)
	run := func(s config.Script) scriptResult {
		out := make(chan scriptResult, 1)
		done := make(chan struct{})
		defer close(done)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go runScript(ctx, clocktest.New(time.Time{}), s, out, done)
		select {
		case res := <-out:
			return res
		case <-time.After(10 * time.Second):
			t.Fatal("no result")
		}
		return scriptResult{}
	}
	s := config.Script{Name: "id", Command: []string{"id", "-un"}, User: "nobody", Interval: config.Duration(time.Hour), Timeout: config.Duration(5 * time.Second)}
	if res := run(s); !res.ok || res.out != "nobody" {
		t.Errorf("as nobody: %+v", res)
	}
	s.User = "no-such-user-here"
	if res := run(s); res.ok || !strings.Contains(res.out, "no-such-user-here") {
		t.Errorf("unknown user: %+v", res)
	}
}

// TestRunnerNotifyFlood: the notify executable runs one transition at a
// time, in order; a flood of transitions while it is busy fills the
// queue, the rest is dropped and counted, and no goroutine is added.
func TestRunnerNotifyFlood(t *testing.T) {
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	log, release := filepath.Join(dir, "log"), filepath.Join(dir, "release")
	script := filepath.Join(dir, "notify.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho \"$1 $3\" >> "+log+"\nwhile [ ! -e "+release+" ]; do sleep 0.01; done\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	tr := newTestRunner(t, oneInstance+"      notify: "+script+"\n      notify_user: "+me.Username+"\n", "eth0")
	lines := func() []string {
		b, _ := os.ReadFile(log)
		return strings.Split(strings.TrimSpace(string(b)), "\n")
	}
	// The start's INIT → BACKUP runs and waits for the release.
	for deadline := time.Now().Add(5 * time.Second); lines()[0] != "vi BACKUP"; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the first notification did not run: %q", lines())
		}
	}
	before := runtime.NumGoroutine()
	ins := tr.instances["vi"]
	for i := range 10000 {
		tr.notify(ins, event.VRRP{Instance: "vi", Old: "BACKUP", New: strconv.Itoa(i)})
		if n := runtime.NumGoroutine(); n > before {
			t.Fatalf("goroutines grew from %d to %d", before, n)
		}
	}
	if d := tr.notifyq.Dropped(); d != 10000-notifyQueue {
		t.Errorf("dropped %d, want %d", d, 10000-notifyQueue)
	}
	if err := os.WriteFile(release, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	want := []string{"vi BACKUP"}
	for i := range notifyQueue {
		want = append(want, "vi "+strconv.Itoa(i))
	}
	for deadline := time.Now().Add(20 * time.Second); len(lines()) < len(want) && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
	}
	if got := lines(); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("notified %q, want %q", got, want)
	}
}

// TestRunnerGARPRefresh: on becoming master the VIPs are announced
// count times, again after second_burst, then once every refresh while
// master; nothing more once it is backup.
func TestRunnerGARPRefresh(t *testing.T) {
	tr := newTestRunner(t, oneInstance+`      garp: {count: 3, second_burst: 5s, refresh: 10s}
`, "eth0")
	tr.advance(4 * time.Second)
	if tr.state("vi") != fsm.Master {
		t.Fatalf("%s, want MASTER", tr.state("vi"))
	}
	became := tr.instances["vi"].m.Since
	tr.advance(36 * time.Second) // until 36 s after start, 32+ s as master
	var offsets []time.Duration
	for _, at := range tr.net.announced {
		offsets = append(offsets, at.Sub(became))
	}
	want := []time.Duration{0, 0, 0, 5 * time.Second, 5 * time.Second, 5 * time.Second,
		10 * time.Second, 20 * time.Second, 30 * time.Second}
	if len(offsets) != len(want) {
		t.Fatalf("announcements at %v after becoming master, want %v", offsets, want)
	}
	for i := range want {
		if offsets[i] != want[i] {
			t.Fatalf("announcements at %v after becoming master, want %v", offsets, want)
		}
	}
	// A higher priority takes over: no more announcements while it is
	// heard.
	peer := mustMarshal(t, packet.Advert{Version: 3, VRID: 10, Priority: 200, Interval: time.Second,
		Addrs: []netip.Addr{netip.MustParseAddr("192.0.2.100")}}, "192.0.2.2")
	hear := func() {
		tr.receive(received{sock: tr.conn, hdr: packet.Header{Src: netip.MustParseAddr("192.0.2.2"), Dst: packet.GroupIPv4, TTL: 255}, msg: peer})
		tr.flush()
	}
	hear()
	if tr.state("vi") != fsm.Backup || tr.net.hasVIPs {
		t.Fatalf("after a higher priority: %s, VIPs %v", tr.state("vi"), tr.net.hasVIPs)
	}
	n := len(tr.net.announced)
	for range 30 {
		tr.advance(time.Second)
		hear()
	}
	if tr.state("vi") != fsm.Backup || len(tr.net.announced) != n {
		t.Errorf("%s, announced as backup at %v", tr.state("vi"), tr.net.announced[n:])
	}
}

func mustMarshal(t *testing.T, a packet.Advert, src string) []byte {
	t.Helper()
	b, err := a.Marshal(netip.MustParseAddr(src), packet.GroupIPv4, packet.ChecksumPseudoHeader)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestGroupPriority: every member of a sync group runs with the lowest
// effective priority of the members (the address owner's aside).
func TestGroupPriority(t *testing.T) {
	mk := func(name string, prio int, weights map[string]int) *instance {
		return &instance{cfg: config.Instance{Name: name, Priority: prio}, group: "web", weights: weights}
	}
	r := &runner{instances: map[string]*instance{
		"vi10":  mk("vi10", 150, map[string]int{"script chk": -100}),
		"vi11":  mk("vi11", 150, nil),
		"owner": mk("owner", 255, nil),
	}}
	lone := &instance{cfg: config.Instance{Name: "vi12", Priority: 120}}
	r.instances["vi12"] = lone
	for name, want := range map[string]int{"vi10": 50, "vi11": 50, "vi12": 120} {
		if got := r.effective(r.instances[name]); got != want {
			t.Errorf("%s: effective %d, want %d", name, got, want)
		}
	}
	if why := r.weightWhy(r.instances["vi11"]); why != "sync group web: vi10 at 50" {
		t.Errorf("vi11 why %q", why)
	}
}
