package nft

import (
	"regexp"
	"strings"
	"testing"

	"halb/internal/lab/netns"
)

// TestRestartAdoptsTable: a new data plane (a restart) on a namespace that
// holds halb's table for the same state changes nothing: a long-lived
// connection goes on with its backend, clients stay pinned (the pin sets
// keep their elements) and the counters keep counting from where they
// were. Restarted with other weights, it changes only what differs and
// still keeps the pins.
func TestRestartAdoptsTable(t *testing.T) {
	l := newNATLab(t, 3)
	srcs := l.clients(t, 8)
	const persist = "persistence: {timeout: 60s}"
	st := natState(t, persist, "inhibit")
	reconcile(t, nsDataplane(t, l.lb, WithMode(LoadBalance)), st)
	cl := newDialer(t, l.client)
	pinned := map[string]string{}
	for _, src := range srcs {
		name, err := cl.hit(src, "203.0.113.10:80")
		if err != nil {
			t.Fatal(err)
		}
		pinned[src] = name
	}
	conn, backend, err := cl.dial(srcs[0], "203.0.113.10:80")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	pins, packets := pinCount(t, l), countedPackets(t, l)
	if pins != len(srcs) || packets == 0 {
		t.Fatalf("before the restart: %d pins for %d clients, %d packets counted", pins, len(srcs), packets)
	}

	d := nsDataplane(t, l.lb, WithMode(LoadBalance))
	reconcile(t, d, st)
	if n := d.Changes(); n != 0 {
		t.Errorf("a restart with the same state made %d changes, want 0", n)
	}
	if got := pinCount(t, l); got != pins {
		t.Errorf("%d pins after the restart, want %d", got, pins)
	}
	if got := countedPackets(t, l); got < packets {
		t.Errorf("the counters went from %d to %d packets: reset by the restart", packets, got)
	}
	if got, err := echoFrom(conn, "still there"); err != nil || got != backend {
		t.Errorf("the long-lived connection to %s after the restart: %q, %v", backend, got, err)
	}

	d = nsDataplane(t, l.lb, WithMode(LoadBalance))
	reconcile(t, d, natStateW(t, persist, "inhibit", [3]int{5, 1, 1}))
	if n := d.Changes(); n == 0 {
		t.Error("a restart with other weights made no change")
	}
	if got := pinCount(t, l); got != pins {
		t.Errorf("%d pins after a restart with other weights, want %d", got, pins)
	}
	for src, name := range pinned {
		if got, err := cl.hit(src, "203.0.113.10:80"); err != nil || got != name {
			t.Errorf("client %s pinned to %s went to %q (%v) after the restart", src, name, got, err)
		}
	}
}

// pinCount counts the elements of the pin sets.
func pinCount(t testing.TB, l *natLab) int {
	t.Helper()
	out := listTable(t, l.lb, DefaultTable)
	n := 0
	for _, m := range regexp.MustCompile(`(?s)set pin-[^{]*\{[^}]*elements = \{([^}]*)\}`).FindAllStringSubmatch(out, -1) {
		n += len(strings.Split(m[1], ","))
	}
	return n
}

// countedPackets sums the packets of the counters table.
func countedPackets(t testing.TB, l *natLab) int {
	t.Helper()
	out := listTable(t, l.lb, DefaultTable+countSuffix)
	n := 0
	for _, m := range regexp.MustCompile(`counter packets (\d+)`).FindAllStringSubmatch(out, -1) {
		var v int
		for _, c := range m[1] {
			v = 10*v + int(c-'0')
		}
		n += v
	}
	return n
}

// TestRestartKeepsDRFlows: a restart on a netdev table it wrote changes
// nothing: long-lived direct-routing connections go on with their
// backends and the flow sets keep their elements.
func TestRestartKeepsDRFlows(t *testing.T) {
	lab, lb := labHost(t)
	lan, client := drLAN(t, lab)
	if _, err := lab.Connect(lb, lan, "eth0", "192.0.2.2/24", "192.0.2.9/24"); err != nil {
		t.Fatal(err)
	}
	st := drState(t)
	reconcile(t, nsDataplane(t, lb, WithMode(LoadBalance)), st)
	cl := newDialer(t, client)
	conns, on := cl.openMany(t, 10, "192.0.2.9:80")
	flows := flowCount(t, lb)
	if flows < len(conns) {
		t.Fatalf("%d flows recorded for %d connections", flows, len(conns))
	}
	d := nsDataplane(t, lb, WithMode(LoadBalance))
	reconcile(t, d, st)
	if n := d.Changes(); n != 0 {
		t.Errorf("a restart with the same direct-routing state made %d changes, want 0", n)
	}
	if got := flowCount(t, lb); got < flows {
		t.Errorf("%d flows after the restart, %d before", got, flows)
	}
	for i, c := range conns {
		if name, err := echoFrom(c, "after the restart"); err != nil || name != on[i] {
			t.Errorf("connection %d on %s after the restart: %q, %v", i, on[i], name, err)
		}
	}
}

// flowCount counts the elements of the netdev table's flow sets.
func flowCount(t testing.TB, h *netns.Host) int {
	t.Helper()
	out, err := h.Run("nft", "list", "table", "netdev", DefaultTable)
	if err != nil {
		t.Fatalf("nft list table netdev: %v: %s", err, out)
	}
	n := 0
	for _, m := range regexp.MustCompile(`(?s)elements = \{([^}]*)\}`).FindAllStringSubmatch(string(out), -1) {
		if strings.Contains(m[1], "expires") {
			n += len(strings.Split(m[1], ","))
		}
	}
	return n
}
