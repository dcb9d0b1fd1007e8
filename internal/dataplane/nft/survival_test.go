package nft

import (
	"fmt"
	"net"
	"testing"

	"halb/internal/dataplane"
	"halb/internal/lab/netns"
)

// TestConnectionSurvivesFailover: two LB nodes build identical tables from
// one state. Twenty long-lived TCP connections run through node A; then A
// is cut off and its VIP and gateway VIP move to B (by hand, as VRRP would:
// addresses added, neighbours relearn). Every connection goes on, on the
// same backend, through B, which has never seen it: B's conntrack picks up
// the mid-flow packets and its DNAT hashes them to the same backend.
func TestConnectionSurvivesFailover(t *testing.T) {
	st := natState(t, "", "inhibit")
	if survived := failover(t, st, st); survived != 20 {
		t.Errorf("%d of 20 connections survived the failover, want all", survived)
	}
}

// TestFailoverControl is the control of TestConnectionSurvivesFailover:
// when node B's table differs (other weights), some connections land on
// another backend there and break, so the survival above is the identical
// tables' doing.
func TestFailoverControl(t *testing.T) {
	if survived := failover(t, natState(t, "", "inhibit"), natStateW(t, "", "inhibit", [3]int{5, 1, 1})); survived == 20 {
		t.Error("all connections survived although node B balances differently: the survival test cannot fail")
	}
}

// failover runs 20 long-lived connections through node A (state stA), moves
// the VIPs to node B (state stB) and returns how many connections go on,
// answered by the same backend.
func failover(t *testing.T, stA, stB dataplane.State) int {
	lab, lbA := labHost(t)
	lbB, err := lab.AddHost("lbb")
	if err != nil {
		t.Fatal(err)
	}
	front, back, client := frontAndBack(t, lab, "203.0.113.100/24")
	var cut [][2]string // switch side ports of node A: front, back
	for i, lb := range []*netns.Host{lbA, lbB} {
		fp, err := lab.Connect(lb, front, "eth0", fmt.Sprintf("203.0.113.%d/24", 2+i))
		if err != nil {
			t.Fatal(err)
		}
		bp, err := lab.Connect(lb, back, "eth1", fmt.Sprintf("198.51.100.%d/24", 2+i))
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			cut = [][2]string{{"front", fp}, {"back", bp}}
		}
		must(t, lb, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	}
	vips := func(h *netns.Host, op string) {
		t.Helper()
		for _, a := range [][2]string{{"203.0.113.10/24", "eth0"}, {"198.51.100.1/24", "eth1"}} {
			if err := h.IP("addr", op, a[0], "dev", a[1]); err != nil {
				t.Fatal(err)
			}
		}
	}
	vips(lbA, "add")
	var backends []*netns.Host
	for i := range 3 {
		h, err := lab.AddHost(fmt.Sprintf("be%d", i+1))
		if err != nil {
			t.Fatal(err)
		}
		addr := fmt.Sprintf("198.51.100.%d", 21+i)
		if _, err := lab.Connect(h, back, "eth0", addr+"/24"); err != nil {
			t.Fatal(err)
		}
		if err := h.IP("route", "add", "default", "via", "198.51.100.1"); err != nil {
			t.Fatal(err)
		}
		serveNames(t, h, addr+":80", addr)
		backends = append(backends, h)
	}
	reconcile(t, nsDataplane(t, lbA, WithMode(LoadBalance)), stA)
	reconcile(t, nsDataplane(t, lbB, WithMode(LoadBalance)), stB)
	same := normalize(listTable(t, lbA, DefaultTable)) == normalize(listTable(t, lbB, DefaultTable))
	t.Logf("the nodes' tables are identical: %t", same)

	cl := newDialer(t, client)
	const n = 20
	conns := make([]net.Conn, n)
	on := make([]string, n)
	for i := range n {
		c, name, err := cl.dial("", "203.0.113.10:80")
		if err != nil {
			t.Fatal(err)
		}
		conns[i], on[i] = c, name
		defer c.Close()
		if err := echo(c, "before"); err != nil {
			t.Fatal(err)
		}
	}
	// Node A dies: its links go down; B takes the VIPs.
	switches := map[string]*netns.Host{"front": front, "back": back}
	for _, p := range cut {
		if err := switches[p[0]].IP("link", "set", p[1], "down"); err != nil {
			t.Fatal(err)
		}
	}
	vips(lbB, "add")
	for _, h := range append([]*netns.Host{client}, backends...) {
		must(t, h, "ip", "neigh", "flush", "all")
	}
	survived := 0
	for i, c := range conns {
		name, err := echoFrom(c, "after failover")
		switch {
		case err != nil:
			t.Logf("connection %d (on %s) did not survive the failover: %v", i, on[i], err)
		case name != on[i]:
			t.Logf("connection %d was on %s, now answered by %s", i, on[i], name)
		default:
			survived++
		}
	}
	t.Logf("%d of %d long-lived connections survived the failover", survived, n)
	return survived
}
