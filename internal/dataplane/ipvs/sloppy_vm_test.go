package ipvs

import (
	"bufio"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"halb/internal/dataplane"
	"halb/internal/lab/netns"
	"halb/internal/lab/vm"
)

// TestGuestSloppyMH is two nodes behind a router's ECMP: both program the
// same mh service (mh-port) with sloppy TCP. Connections opened through
// the first node are moved mid-stream to the second, which never saw
// their SYN: each goes on, and both nodes chose the same real server for
// every (client address, port).
func TestGuestSloppyMH(t *testing.T) {
	vm.RequireGuest(t)
	const vip, flows = "192.0.2.9", 60
	l := newDRLab(t, 2)
	must(t, l.lbs[1].IP("addr", "add", vip+"/32", "dev", "lo"))
	vs := dataplane.VirtualService{
		Key:       dataplane.ServiceKey{Family: 4, Protocol: "tcp", Addr: netip.MustParseAddr(vip), Port: 80},
		Scheduler: "mh", Flags: []string{"mh-port"},
	}
	for _, a := range []string{"198.51.100.11", "198.51.100.12", "198.51.100.13"} {
		vs.Reals = append(vs.Reals, dataplane.Real{Addr: netip.MustParseAddr(a), Port: 80, Weight: 1, Forward: "dr"})
	}
	st := dataplane.State{Services: []dataplane.VirtualService{vs}}
	var nodes []*node
	for _, h := range l.lbs {
		if got := readSysctl(t, h, "sloppy_tcp"); got != "0" {
			t.Fatalf("%s: sloppy_tcp is %s before halb, want the default 0", h.Name, got)
		}
		n := &node{h: h, dir: t.TempDir()}
		var err error
		n.ipvs, err = New(WithNetNS(nsFD(t, h)), WithStateDir(n.dir), WithSloppy(true))
		must(t, err)
		t.Cleanup(func() { n.ipvs.Close() })
		n.apply(t, st)
		for _, name := range []string{"sloppy_tcp", "sloppy_sctp"} {
			if got := readSysctl(t, h, name); got != "1" {
				t.Errorf("%s: net.ipv4.vs.%s = %s, want 1", h.Name, name, got)
			}
			if got := n.ipvs.Sysctls()["net.ipv4.vs."+name]; got != "1" {
				t.Errorf("%s: Sysctls() reports %s = %q, want 1", h.Name, name, got)
			}
		}
		nodes = append(nodes, n)
	}

	// Open the flows through the first node, from fixed client ports.
	fd := nsFD(t, l.client)
	conns := make([]net.Conn, flows)
	for i := range conns {
		d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP("203.0.113.2"), Port: 41000 + i}}
		must(t, inNetNS(fd, func() (err error) { conns[i], err = d.Dial("tcp", vip+":80"); return err }))
		c := conns[i].(*net.TCPConn)
		t.Cleanup(func() { c.SetLinger(0); c.Close() })
		must(t, c.SetDeadline(time.Now().Add(20*time.Second)))
		echo(t, c, "first")
	}
	// The router moves every flow to the second node; they reach it in
	// the reverse order (a scheduler that counts, such as rr, would pick
	// other reals for them).
	must(t, l.client.IP("route", "replace", "192.0.2.0/24", "via", "203.0.113.3"))
	for _, c := range slices.Backward(conns) {
		echo(t, c, "moved")
	}

	picked := make([]map[uint16]netip.Addr, len(nodes))
	for i, n := range nodes {
		picked[i] = realsByClientPort(t, n)
	}
	used := map[netip.Addr]bool{}
	for i := range flows {
		port := uint16(41000 + i)
		a, b := picked[0][port], picked[1][port]
		if !a.IsValid() || a != b {
			t.Errorf("client port %d: first node sent it to %v, second to %v", port, a, b)
		}
		used[a] = true
	}
	if len(used) < 2 {
		t.Errorf("all %d flows went to %v: the comparison shows nothing", flows, used)
	}
	t.Logf("%d flows moved mid-stream; both nodes picked the same real for each (%d reals used)", flows, len(used))
}

// echo sends one line through c and checks its answer.
func echo(t *testing.T, c net.Conn, line string) {
	t.Helper()
	fmt.Fprintf(c, "%s\n", line)
	got, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || !strings.HasSuffix(got, " "+line+"\n") {
		t.Fatalf("%s: answer %q, %v", c.LocalAddr(), got, err)
	}
}

func readSysctl(t *testing.T, h *netns.Host, name string) string {
	t.Helper()
	out, err := h.Run("cat", "/proc/sys/net/ipv4/vs/"+name)
	if err != nil {
		t.Fatalf("%s: read %s: %v: %s", h.Name, name, err, out)
	}
	return strings.TrimSpace(string(out))
}

// realsByClientPort reads a node's connection table: the real server of
// each client port.
func realsByClientPort(t *testing.T, n *node) map[uint16]netip.Addr {
	t.Helper()
	cs, err := n.ipvs.Conns()
	must(t, err)
	out := map[uint16]netip.Addr{}
	for _, c := range cs {
		if !c.Template() {
			out[c.Client.Port()] = c.Real.Addr()
		}
	}
	return out
}
