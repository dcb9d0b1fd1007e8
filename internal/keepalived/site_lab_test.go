package keepalived

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"halb/internal/lab/labtest"
	"halb/internal/lab/netns"
)

// The site's pair: lb-a is the primary for web-a's VIPs, lb-b for web-b's.
var (
	siteWebA = []string{"192.0.2.9", "192.0.2.49", "192.0.2.139"}
	siteWebB = []string{"192.0.2.10", "192.0.2.50", "192.0.2.140"}
)

// siteLab is the site's two load balancers on one segment.
type siteLab struct {
	sw, a, b *netns.Host
}

func newSiteLab(t *testing.T) *siteLab {
	t.Helper()
	labtest.RequireTool(t, "keepalived", "unshare", "tcpdump")
	lab := labtest.NewLab(t)
	l := &siteLab{}
	var err error
	l.sw, err = lab.AddSwitch("sw")
	must(t, err)
	out, err := l.sw.Run("ip", "link", "set", "br0", "type", "bridge", "mcast_snooping", "0")
	if err != nil {
		t.Fatalf("bridge: %v: %s", err, out)
	}
	l.a, err = lab.AddHost("a")
	must(t, err)
	l.b, err = lab.AddHost("b")
	must(t, err)
	_, err = lab.Connect(l.a, l.sw, "eth0", "192.0.2.1/24")
	must(t, err)
	_, err = lab.Connect(l.b, l.sw, "eth0", "192.0.2.2/24")
	must(t, err)
	return l
}

// siteNode is keepalived or halb run on one of the site's files, in a
// host named like the node, so that both pick their @lb-a / @lb-b lines
// from the host name as they would in production.
type siteNode struct {
	cmd *exec.Cmd
	// childPID is keepalived's VRRP process's pid file ("" for halb).
	childPID string
	logs     *safeBuffer
	done     chan struct{}
}

func startSiteNode(t *testing.T, h *netns.Host, kind, node string) *siteNode {
	t.Helper()
	conf, err := filepath.Abs("../../examples/keepalived/" + node + ".conf")
	must(t, err)
	dir := t.TempDir()
	var argv []string
	switch kind {
	case "keepalived":
		argv = []string{"keepalived", "--dont-fork", "--log-console", "--vrrp", "--use-file", conf,
			"--pid", filepath.Join(dir, "k.pid"), "--vrrp_pid", filepath.Join(dir, "v.pid")}
	case "halb":
		argv = []string{labtest.HalbBinary(t), "run", "--config", conf, "--dataplane", "none",
			"--socket", filepath.Join(dir, "halb.sock")}
	}
	cmd := h.Command(context.Background(), "unshare", append([]string{"--uts", "sh", "-c", `hostname "$0" && exec "$@"`, node}, argv...)...)
	n := &siteNode{cmd: cmd, logs: &safeBuffer{}, done: make(chan struct{})}
	if kind == "keepalived" {
		n.childPID = filepath.Join(dir, "v.pid")
	}
	cmd.Stdout, cmd.Stderr = n.logs, n.logs
	must(t, cmd.Start())
	go func() { cmd.Wait(); close(n.done) }()
	t.Cleanup(n.stop)
	return n
}

// stop ends the node with SIGTERM (SIGKILL after 10 s).
func (n *siteNode) stop() {
	n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.done:
	case <-time.After(10 * time.Second):
		n.cmd.Process.Kill()
		<-n.done
	}
}

// crash ends the node at once, as a failure would: keepalived's VRRP
// process first, which would otherwise release its VIPs when its parent
// dies.
func (n *siteNode) crash() {
	if n.childPID != "" {
		if b, err := os.ReadFile(n.childPID); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	n.cmd.Process.Kill()
	<-n.done
}

// safeBuffer collects a process's output while tests read it.
type safeBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *safeBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *safeBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// holders lists the VIPs each host has.
func holders(t *testing.T, hosts map[string]*netns.Host) map[string]string {
	t.Helper()
	out := map[string]string{}
	for name, h := range hosts {
		b, err := h.Run("ip", "-o", "-4", "addr", "show", "dev", "eth0")
		if err != nil {
			t.Fatalf("ip addr: %v: %s", err, b)
		}
		for _, vip := range append(slices.Clone(siteWebA), siteWebB...) {
			if strings.Contains(string(b), " "+vip+"/") {
				out[vip] += name
			}
		}
	}
	return out
}

// waitPlacement waits until, of hosts, web-a's VIPs are on host ownerA
// only and web-b's on ownerB only, for at most d.
func waitPlacement(t *testing.T, hosts map[string]*netns.Host, ownerA, ownerB string, d time.Duration, logs ...*siteNode) time.Duration {
	t.Helper()
	want := map[string]string{}
	for _, v := range siteWebA {
		want[v] = ownerA
	}
	for _, v := range siteWebB {
		want[v] = ownerB
	}
	var got map[string]string
	start := time.Now()
	for deadline := start.Add(d); ; time.Sleep(50 * time.Millisecond) {
		got = holders(t, hosts)
		if fmt.Sprint(got) == fmt.Sprint(want) {
			return time.Since(start)
		}
		if time.Now().After(deadline) {
			break
		}
	}
	var b strings.Builder
	for _, n := range logs {
		b.WriteString(n.logs.String())
	}
	t.Fatalf("after %s the VIPs are on %v, want %v\nlogs:\n%s", d, got, want, b.String())
	return 0
}

// TestSitePairElects runs the site's keepalived.conf pair, unchanged, with
// keepalived and halb in every combination: each pair splits the VIPs as
// the files say (lb-a web-a, lb-b web-b), keeps them so, and the survivor
// takes all of them when the other node fails — halb against keepalived as
// each against itself.
func TestSitePairElects(t *testing.T) {
	labtest.RequireRoot(t)
	// Protocol bounds with advert 1 s: master down after 3 × 1 s + skew.
	down := func(prio int) time.Duration { return 3*time.Second + time.Duration(256-prio)*time.Second/256 }
	generous := func(d time.Duration) time.Duration { return 2*d + time.Second }
	for _, kinds := range [][2]string{{"keepalived", "keepalived"}, {"halb", "halb"}, {"keepalived", "halb"}, {"halb", "keepalived"}} {
		t.Run(kinds[0]+"-"+kinds[1], func(t *testing.T) {
			l := newSiteLab(t)
			a := startSiteNode(t, l.a, kinds[0], "lb-a")
			b := startSiteNode(t, l.b, kinds[1], "lb-b")
			both := map[string]*netns.Host{"a": l.a, "b": l.b}
			waitPlacement(t, both, "a", "b", generous(down(100)), a, b)
			// Stable: nothing moves for three advert intervals.
			time.Sleep(3 * time.Second)
			waitPlacement(t, both, "a", "b", 0, a, b)
			// a fails (killed, its addresses may stay behind): b takes
			// web-a's VIPs too.
			a.crash()
			took := waitPlacement(t, map[string]*netns.Host{"b": l.b}, "b", "b", generous(down(100)), b)
			t.Logf("%s on lb-b took web-a's VIPs %s after %s on lb-a was killed (bound %s)", kinds[1], took.Round(10*time.Millisecond), kinds[0], down(100).Round(10*time.Millisecond))
			b.stop()
		})
	}
}

// TestSiteAdvertsSameAsKeepalived runs lb-a's file alone, with keepalived
// and then with halb, and compares the adverts each sends for web-a and
// web-b once master: version, VRID, priority, interval, addresses, source
// and destination.
func TestSiteAdvertsSameAsKeepalived(t *testing.T) {
	labtest.RequireRoot(t)
	sent := map[string][]string{}
	for _, kind := range []string{"keepalived", "halb"} {
		l := newSiteLab(t)
		pcap := filepath.Join(t.TempDir(), "vrrp.pcap")
		stopDump := startDump(t, l.sw, pcap)
		n := startSiteNode(t, l.a, kind, "lb-a")
		var got []captured
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
			got = readPcap(t, pcap)
			if countPrio(got, 9) >= 3 && countPrio(got, 10) >= 3 {
				break
			}
		}
		stopDump()
		n.stop()
		kinds := map[string]bool{}
		for _, c := range got {
			if c.advert.Priority == 0 {
				continue
			}
			a := c.advert
			kinds[fmt.Sprintf("v%d vrid %d prio %d interval %s addrs %v %s -> %s", a.Version, a.VRID, a.Priority, a.Interval, a.Addrs, c.src, c.dst)] = true
		}
		for k := range kinds {
			sent[kind] = append(sent[kind], k)
		}
		slices.Sort(sent[kind])
		if len(sent[kind]) == 0 {
			t.Fatalf("%s sent no advert:\n%s", kind, n.logs.String())
		}
	}
	if !slices.Equal(sent["keepalived"], sent["halb"]) {
		t.Errorf("adverts differ\nkeepalived:\n%s\nhalb:\n%s", strings.Join(sent["keepalived"], "\n"), strings.Join(sent["halb"], "\n"))
	}
	t.Logf("adverts of both:\n%s", strings.Join(sent["halb"], "\n"))
}

func countPrio(cs []captured, vrid uint8) int {
	n := 0
	for _, c := range cs {
		if c.advert.VRID == vrid && c.advert.Priority != 0 {
			n++
		}
	}
	return n
}

// startDump captures VRRP on the lab's bridge into pcap; the returned
// function stops it.
func startDump(t *testing.T, sw *netns.Host, pcap string) func() {
	t.Helper()
	dump := sw.Command(context.Background(), "tcpdump", "-i", "br0", "-U", "-n", "-w", pcap, "ip proto 112 or ip6 proto 112")
	var out safeBuffer
	dump.Stderr = &out
	must(t, dump.Start())
	done := make(chan struct{})
	go func() { dump.Wait(); close(done) }()
	stop := func() {
		dump.Process.Signal(syscall.SIGTERM)
		<-done
	}
	t.Cleanup(func() {
		select {
		case <-done:
		default:
			stop()
		}
	})
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if strings.Contains(out.String(), "listening on") {
			return stop
		}
		if time.Now().After(deadline) {
			t.Fatalf("tcpdump did not start")
		}
	}
}
