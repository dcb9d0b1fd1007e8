package vrrp

import (
	"strings"
	"testing"
	"time"

	"halb/internal/netif"
	"halb/internal/vrrp/fsm"
)

// TestRunnerRouting: an instance's routes and rules are added with its
// VIPs on becoming master and removed when it leaves (and at start, as
// stale); static ones are added once and stay.
func TestRunnerRouting(t *testing.T) {
	tr := newTestRunner(t, `node: n
vrrp:
  static:
    addresses: [{address: 203.0.113.1/24, dev: eth1}]
    routes: [{to: 203.0.113.128/25, via: 203.0.113.254}]
  instances:
    - name: vi
      interface: eth0
      vrid: 10
      priority: 100
      vips: [192.0.2.100/24]
      routes: [{to: 198.51.100.0/24, via: 192.0.2.254, table: 100}]
      rules: [{from: 192.0.2.100/32, table: 100}]
`, "eth0")
	const (
		inst   = "[198.51.100.0/24 via 192.0.2.254 table 100] [from 192.0.2.100/32 table 100]"
		static = "[203.0.113.128/25 via 203.0.113.254] []"
	)
	want := []string{"-" + inst, "+" + static}
	if got := strings.Join(tr.net.routing, "\n"); got != strings.Join(want, "\n") {
		t.Fatalf("at start:\n%s\nwant\n%s", got, strings.Join(want, "\n"))
	}
	tr.advance(4 * time.Second)
	if tr.state("vi") != fsm.Master || tr.net.routing[len(tr.net.routing)-1] != "+"+inst {
		t.Fatalf("%s, routing %q; want MASTER with the instance's routes and rules added", tr.state("vi"), tr.net.routing)
	}
	tr.link(netif.LinkChange{Name: "eth0", Up: false})
	tr.flush()
	if tr.state("vi") != fsm.Fault || tr.net.routing[len(tr.net.routing)-1] != "-"+inst {
		t.Fatalf("%s, routing %q; want FAULT with the instance's routes and rules removed", tr.state("vi"), tr.net.routing)
	}
}
