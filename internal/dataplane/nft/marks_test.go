package nft

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"halb/internal/config"
	"halb/internal/dataplane"
)

const marksConfig = `
node: lb
services:
  - name: dns
    protocol: udp
    vips: [192.0.2.53, 2001:db8::53]
    ports: [53]
    mark: shared
    forward: nat
    pool: dns
  - name: dns-tcp
    protocol: tcp
    vips: [192.0.2.53, 2001:db8::53]
    ports: [53]
    mark: shared
    forward: nat
    pool: dns
  - name: ftp
    protocol: tcp
    vips: [192.0.2.21, 2001:db8::21]
    ports: [21, "10000-10100"]
    mark: per-vip
    forward: nat
    pool: dns
pools:
  dns:
    servers:
      - {address: 198.51.100.11}
      - {address: 2001:db8:1::11}
`

// TestMarksOnRealPackets sends TCP and UDP packets to every VIP and port of
// the services (both ends of the FTP range, IPv4 and IPv6, 53/tcp next to
// 53/udp) and counts, with counters in a table of the test's own, the
// marks the packets carry after halb's chain.
func TestMarksOnRealPackets(t *testing.T) {
	lab, lb := labHost(t)
	sw, err := lab.AddSwitch("sw")
	if err != nil {
		t.Fatal(err)
	}
	client, err := lab.AddHost("client")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lab.Connect(client, sw, "eth0", "192.0.2.100/24", "2001:db8::100/64"); err != nil {
		t.Fatal(err)
	}
	if _, err := lab.Connect(lb, sw, "eth0", "192.0.2.2/24", "2001:db8::2/64",
		"192.0.2.53/24", "192.0.2.21/24", "2001:db8::53/64", "2001:db8::21/64"); err != nil {
		t.Fatal(err)
	}
	cfg, diags := config.Parse("marks.yaml", []byte(marksConfig), config.Options{Hostname: "lb"})
	if cfg == nil {
		t.Fatal(diags)
	}
	st := stateOf(cfg)
	d := nsDataplane(t, lb)
	reconcile(t, d, st)

	// The test's own counting table, after halb's mangle chain.
	var rules strings.Builder
	marks := map[uint32]bool{}
	for _, r := range st.MarkRules {
		marks[r.Mark] = true
	}
	rules.WriteString("table inet count {\n chain c {\n  type filter hook prerouting priority 0;\n")
	for m := range marks {
		fmt.Fprintf(&rules, "  meta mark %d counter comment \"%d\"\n", m, m)
	}
	rules.WriteString("  meta mark 0 th dport { 53, 21, 10000, 10100, 10101 } counter comment \"0\"\n }\n}\n")
	nftApply(t, lb, rules.String())

	want := map[uint32]int{}
	send := func(proto string, vip netip.Addr, port uint16, mark uint32) {
		t.Helper()
		addr := netip.AddrPortFrom(vip, port).String()
		var out []byte
		var err error
		if proto == "udp" {
			out, err = client.Run("bash", "-c", fmt.Sprintf("echo x > /dev/udp/%s/%d", vip, port))
		} else {
			out, err = client.Run("bash", "-c", fmt.Sprintf("timeout 2 bash -c 'exec 3<>/dev/tcp/%s/%d' 2>/dev/null; true", vip, port))
		}
		if err != nil {
			t.Fatalf("send %s %s: %v: %s", proto, addr, err, out)
		}
		want[mark]++
	}
	markOf := func(proto string, vip netip.Addr, port uint16) uint32 {
		for _, r := range st.MarkRules {
			if r.Protocol == proto && r.VIP == vip && r.PortLo <= port && port <= r.PortHi {
				return r.Mark
			}
		}
		return 0
	}
	for _, vip := range []string{"192.0.2.53", "2001:db8::53", "192.0.2.21", "2001:db8::21"} {
		a := netip.MustParseAddr(vip)
		for _, p := range []uint16{53, 21, 10000, 10100, 10101} {
			for _, proto := range []string{"tcp", "udp"} {
				send(proto, a, p, markOf(proto, a, p))
			}
		}
	}
	time.Sleep(200 * time.Millisecond) // let the last packets land
	got := counters(t, lb)
	for m, n := range want {
		// A refused TCP connection is one SYN; a UDP send one datagram.
		if got[m] < uint64(n) {
			t.Errorf("mark %d: counted %d packets, want at least %d", m, got[m], n)
		}
	}
	if len(marks) != 4 {
		t.Errorf("%d distinct marks, want 4 (dns, dns-tcp, and ftp per VIP ×2)", len(marks))
	}
	if markOf("tcp", netip.MustParseAddr("192.0.2.53"), 53) == markOf("udp", netip.MustParseAddr("192.0.2.53"), 53) {
		t.Error("53/tcp and 53/udp share a mark")
	}
	t.Logf("packets by mark: %v (sent %v)", got, want)
}

func stateOf(cfg *config.Config) dataplane.State {
	var st dataplane.State
	for _, m := range cfg.MarkPlan() {
		if m.External {
			continue
		}
		for _, vip := range m.VIPs {
			for _, r := range m.Ports {
				st.MarkRules = append(st.MarkRules, dataplane.MarkRule{Mark: m.Mark, Protocol: m.Protocol, VIP: vip, PortLo: r.Lo, PortHi: r.Hi, Service: m.Service})
			}
		}
	}
	st.Sort()
	return st
}

// nftApply loads a ruleset text into a host.
func nftApply(t testing.TB, h interface {
	Run(string, ...string) ([]byte, error)
}, text string) {
	t.Helper()
	if out, err := h.Run("bash", "-c", "nft -f - <<'EOF'\n"+text+"EOF\n"); err != nil {
		t.Fatalf("nft -f: %v: %s", err, out)
	}
}

// counters returns the packet counts of table inet count, by the mark in
// each rule's comment.
func counters(t testing.TB, h interface {
	Run(string, ...string) ([]byte, error)
}) map[uint32]uint64 {
	t.Helper()
	out, err := h.Run("nft", "list", "chain", "inet", "count", "c")
	if err != nil {
		t.Fatalf("nft list chain: %v: %s", err, out)
	}
	got := map[uint32]uint64{}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		for i := range f {
			if f[i] == "packets" && i+1 < len(f) {
				n, _ := strconv.ParseUint(f[i+1], 10, 64)
				c := strings.Trim(f[len(f)-1], `"`)
				m, _ := strconv.ParseUint(c, 10, 32)
				got[uint32(m)] += n
			}
		}
	}
	return got
}

// TestMarkingHookOnlyWithMarks: the marking chain, which every packet
// crosses, is in the table only while there are marks to set, in both
// modes.
func TestMarkingHookOnlyWithMarks(t *testing.T) {
	_, h := labHost(t)
	vip := netip.MustParseAddr("192.0.2.53")
	marked := dataplane.State{MarkRules: []dataplane.MarkRule{{Mark: 5, VIP: vip, Protocol: "udp", PortLo: 53, PortHi: 53, Service: "dns"}}}
	for _, mode := range []Mode{MarksOnly, LoadBalance} {
		d := nsDataplane(t, h, WithMode(mode), WithRemoveOnClose(true))
		for _, step := range []struct {
			st   dataplane.State
			hook bool
		}{{dataplane.State{}, false}, {marked, true}, {dataplane.State{}, false}} {
			reconcile(t, d, step.st)
			_, err := h.Run("nft", "list", "chain", "inet", DefaultTable, chainMark)
			if got := err == nil; got != step.hook {
				t.Errorf("%s, %d mark rules: marking chain there: %t, want %t", mode, len(step.st.MarkRules), got, step.hook)
			}
		}
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
