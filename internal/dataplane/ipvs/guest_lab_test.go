package ipvs

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"halb/internal/config"
	"halb/internal/dataplane"
	"halb/internal/engine"
	"halb/internal/lab/labtest"
	"halb/internal/lab/netns"
)

// siteVIPs are the VIPs of examples/site-lb-a.yaml.
var siteVIPs = []string{"192.0.2.9", "192.0.2.10", "192.0.2.49", "192.0.2.50", "192.0.2.139", "192.0.2.140"}

// drLab is a direct-routing topology on one segment: a client
// (203.0.113.2), load balancers (203.0.113.1, .3, … and 198.51.100.1, .2,
// …) holding the VIPs, and one real-server namespace holding
// 198.51.100.11-13 with the VIPs on lo (arp_ignore/arp_announce set) and
// a TCP echo server on port 80, 443 and 21 that answers the client
// directly.
type drLab struct {
	lab    *netns.Lab
	client *netns.Host
	lbs    []*netns.Host
	real   *netns.Host
	// accepted counts connections the real servers accepted.
	accepted atomic.Int64
}

func newDRLab(t *testing.T, lbs int) *drLab {
	t.Helper()
	l := &drLab{lab: labtest.NewLab(t)}
	sw, err := l.lab.AddSwitch("sw")
	must(t, err)
	out, err := sw.Run("ip", "link", "set", "br0", "type", "bridge", "mcast_snooping", "0")
	if err != nil {
		t.Fatalf("bridge: %v: %s", err, out)
	}
	l.client, err = l.lab.AddHost("client")
	must(t, err)
	_, err = l.lab.Connect(l.client, sw, "eth0", "203.0.113.2/24")
	must(t, err)
	for i := range lbs {
		lb, err := l.lab.AddHost(fmt.Sprintf("lb%d", i))
		must(t, err)
		_, err = l.lab.Connect(lb, sw, "eth0", fmt.Sprintf("203.0.113.%d/24", 1+2*i), fmt.Sprintf("198.51.100.%d/24", 1+i))
		must(t, err)
		l.lbs = append(l.lbs, lb)
	}
	// The first load balancer holds the VIPs; the others are its backups.
	for _, v := range siteVIPs {
		must(t, l.lbs[0].IP("addr", "add", v+"/32", "dev", "lo"))
	}
	must(t, l.client.IP("route", "add", "192.0.2.0/24", "via", "203.0.113.1"))
	l.real, err = l.lab.AddHost("real")
	must(t, err)
	_, err = l.lab.Connect(l.real, sw, "eth0", "198.51.100.11/24", "198.51.100.12/24", "198.51.100.13/24")
	must(t, err)
	for _, v := range siteVIPs {
		must(t, l.real.IP("addr", "add", v+"/32", "dev", "lo"))
	}
	for _, kv := range []string{"net.ipv4.conf.all.arp_ignore=1", "net.ipv4.conf.all.arp_announce=2"} {
		if out, err := l.real.Run("sysctl", "-w", kv); err != nil {
			t.Fatalf("%s: %v: %s", kv, err, out)
		}
	}
	must(t, l.real.IP("route", "add", "203.0.113.0/24", "dev", "eth0"))
	for _, port := range []string{"80", "443", "21"} {
		ln := listenIn(t, l.real, ":"+port)
		go l.serve(ln)
	}
	return l
}

// serve echoes every line back, prefixed with the address the client
// reached.
func (l *drLab) serve(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		l.accepted.Add(1)
		go func() {
			defer c.Close()
			sc := bufio.NewScanner(c)
			for sc.Scan() {
				fmt.Fprintf(c, "%s %s\n", c.LocalAddr(), sc.Text())
			}
		}()
	}
}

// connect opens a TCP connection from the client to addr and checks one
// request and answer through it.
func (l *drLab) connect(t *testing.T, addr string) net.Conn {
	t.Helper()
	fd := nsFD(t, l.client)
	var c net.Conn
	err := inNetNS(fd, func() (err error) {
		c, err = net.DialTimeout("tcp", addr, 5*time.Second)
		return err
	})
	if err != nil {
		t.Fatalf("connect to %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	must(t, c.SetDeadline(time.Now().Add(10*time.Second)))
	fmt.Fprintf(c, "hello\n")
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, addr+" hello") {
		t.Fatalf("answer through %s: %q, %v", addr, line, err)
	}
	return c
}

// nsFD opens a lab namespace; the file is closed when the test ends.
func nsFD(t testing.TB, h *netns.Host) int {
	t.Helper()
	f, err := os.Open(filepath.Join("/run/netns", h.Name))
	must(t, err)
	t.Cleanup(func() { f.Close() })
	return int(f.Fd())
}

func listenIn(t *testing.T, h *netns.Host, addr string) net.Listener {
	t.Helper()
	var ln net.Listener
	must(t, inNetNS(nsFD(t, h), func() (err error) { ln, err = net.Listen("tcp", addr); return err }))
	t.Cleanup(func() { ln.Close() })
	return ln
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// node is a load balancer namespace programmed as halb run does: the
// marking rules first (with the nft tool here), then IPVS.
type node struct {
	h    *netns.Host
	ipvs *Dataplane
	dir  string
}

func newNode(t *testing.T, h *netns.Host, dir string) *node {
	t.Helper()
	n := &node{h: h, dir: dir}
	var err error
	n.ipvs, err = New(WithNetNS(nsFD(t, h)), WithStateDir(dir))
	must(t, err)
	t.Cleanup(func() { n.ipvs.Close() })
	return n
}

func (n *node) apply(t *testing.T, st dataplane.State) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	n.setMarks(t, st.MarkRules)
	if err := n.ipvs.Reconcile(ctx, st); err != nil {
		t.Fatalf("ipvs: %v", err)
	}
}

// setMarks replaces the namespace's marking table with the rules.
func (n *node) setMarks(t *testing.T, rules []dataplane.MarkRule) {
	t.Helper()
	var b strings.Builder
	b.WriteString("table inet halbtest\ndelete table inet halbtest\ntable inet halbtest {\n")
	b.WriteString(" chain pre { type filter hook prerouting priority mangle;\n")
	for _, r := range rules {
		fam := "ip"
		if r.VIP.Is6() {
			fam = "ip6"
		}
		fmt.Fprintf(&b, "  %s daddr %s %s dport %d-%d meta mark set %d\n", fam, r.VIP, r.Protocol, r.PortLo, r.PortHi, r.Mark)
	}
	b.WriteString(" }\n}\n")
	cmd := n.h.Command(context.Background(), "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(b.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft: %v: %s\n%s", err, out, b.String())
	}
}

// siteConfig reads the seed's site, with edits (old → new text) applied.
func siteConfig(t testing.TB, edits ...string) *config.Config {
	t.Helper()
	b, err := os.ReadFile("../../../examples/site-lb-a.yaml")
	must(t, err)
	text := string(b)
	for i := 0; i+1 < len(edits); i += 2 {
		if !strings.Contains(text, edits[i]) {
			t.Fatalf("site config has no %q", edits[i])
		}
		text = strings.Replace(text, edits[i], edits[i+1], 1)
	}
	cfg, diags := config.Parse("site-lb-a.yaml", []byte(text), config.Options{Hostname: "lb-a"})
	if cfg == nil {
		t.Fatalf("site config: %v", diags)
	}
	return cfg
}

func desired(cfg *config.Config, vrrp map[string]string) dataplane.State {
	return engine.Desired(engine.Inputs{Config: cfg, VRRP: vrrp}).State
}

// ipvsadm runs ipvsadm in a namespace.
func ipvsadm(t testing.TB, h *netns.Host, args ...string) string {
	t.Helper()
	out, err := h.Run("ipvsadm", args...)
	if err != nil {
		t.Fatalf("ipvsadm %v: %v: %s", args, err, out)
	}
	return string(out)
}

var counters = regexp.MustCompile(`(?m)^(  -> \S+\s+\S+\s+\d+)\s+\d+\s+\d+\s*$`)

// withoutCounters drops the connection counters of `ipvsadm -Ln` output.
func withoutCounters(s string) string { return counters.ReplaceAllString(s, "$1") }

// golden compares got with testdata/name; on a difference it leaves got in
// the VM's run directory (kept with HALB_VM_KEEP=1) for review.
func golden(t *testing.T, name, got string) {
	t.Helper()
	want, err := os.ReadFile(filepath.Join("testdata", name))
	if err == nil && string(want) == got {
		return
	}
	if dir := os.Getenv("HALB_VM_RUN_DIR"); dir != "" {
		os.WriteFile(filepath.Join(dir, name), []byte(got), 0o644)
	}
	t.Errorf("%s differs (err %v); got:\n%s\nwant:\n%s", name, err, got, want)
}

func netipMust(s string) netip.Addr { return netip.MustParseAddr(s) }
