package vrrp

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"halb/internal/netif"
	"halb/internal/vrrp/fsm"
)

// TestRunnerVIPOptions: VIPs go on their interfaces with their options,
// excluded ones are not in the adverts, and an instance without VIPs
// runs and advertises no address.
func TestRunnerVIPOptions(t *testing.T) {
	tr := newTestRunner(t, `node: n
vrrp:
  instances:
    - name: vi
      interface: eth0
      vrid: 10
      priority: 100
      vips:
        - 192.0.2.9/24
        - {address: 198.51.100.9/24, dev: eth1, scope: link, label: eth1:vip}
        - {address: 192.0.2.10/24, excluded: true}
    - {name: quiet, interface: eth0, vrid: 11, priority: 100}
`, "eth0")
	var got []string
	for _, s := range vipSets(tr.instances["vi"].cfg) {
		for _, a := range s.addrs {
			got = append(got, fmt.Sprintf("%s:%s/%s/%s", s.dev, a.Prefix, a.Scope, a.Label))
		}
	}
	if s := strings.Join(got, " "); s != "eth0:192.0.2.9/24// eth0:192.0.2.10/24// eth1:198.51.100.9/24/link/eth1:vip" {
		t.Errorf("VIPs by interface: %s", s)
	}
	if got := fmt.Sprint(tr.instances["vi"].vipAddrs); got != "[192.0.2.9 198.51.100.9]" {
		t.Errorf("advertised %s, want all but the excluded", got)
	}
	if sets := vipSets(tr.instances["quiet"].cfg); len(sets) != 1 || len(sets[0].addrs) != 0 {
		t.Errorf("quiet's sets %v", sets)
	}
	tr.advance(4 * time.Second)
	if tr.state("vi") != fsm.Master || tr.state("quiet") != fsm.Master {
		t.Fatalf("%s and %s, want both MASTER", tr.state("vi"), tr.state("quiet"))
	}
	// The fake conn decodes what it sends: quiet's adverts list nothing.
	if len(tr.conn.sent) < 2 {
		t.Errorf("adverts sent: %v", tr.conn.sent)
	}
}

// TestRunnerIgnoreInterfaceDown: with ignore_interface_down, the
// instance's own interface going down is no FAULT.
func TestRunnerIgnoreInterfaceDown(t *testing.T) {
	tr := newTestRunner(t, oneInstance+"      ignore_interface_down: true\n", "eth0")
	tr.advance(4 * time.Second)
	tr.link(netif.LinkChange{Name: "eth0", Up: false})
	tr.flush()
	if tr.state("vi") != fsm.Master {
		t.Errorf("eth0 down: %s, want MASTER", tr.state("vi"))
	}
}

// TestRunnerMulticastGroup: adverts go to the configured group, joined
// on the interface.
func TestRunnerMulticastGroup(t *testing.T) {
	tr := newTestRunner(t, strings.Replace(oneInstance, "vrrp:\n", "vrrp:\n  multicast_group4: 224.0.0.19\n", 1), "eth0")
	if tr.conn.dst != addr("224.0.0.19") || tr.instances["vi"].dsts[0] != addr("224.0.0.19") {
		t.Errorf("joined %s, sending to %v; want 224.0.0.19", tr.conn.dst, tr.instances["vi"].dsts)
	}
}

// TestRunnerVMAC: an instance with vmac makes the macvlan interface with
// the virtual router MAC and puts its VIPs there.
func TestRunnerVMAC(t *testing.T) {
	tr := newTestRunner(t, oneInstance+"      vmac: true\n", "eth0")
	if got := strings.Join(tr.net.vmacs, " "); got != "eth0>vrrp.10@00:00:5e:00:01:0a" {
		t.Errorf("virtual MAC interfaces %q", got)
	}
	if sets := tr.instances["vi"].sets; len(sets) != 1 || sets[0].dev != "vrrp.10" {
		t.Errorf("VIPs go on %+v, want vrrp.10", sets)
	}
}

// TestRunnerNoAccept: the VIPs of an instance with no_accept are dropped
// while it is master, and accepted again when it leaves.
func TestRunnerNoAccept(t *testing.T) {
	tr := newTestRunner(t, oneInstance+"      no_accept: true\n", "eth0")
	tr.advance(4 * time.Second)
	tr.link(netif.LinkChange{Name: "eth0", Up: false})
	tr.flush()
	if got := strings.Join(tr.net.dropped, " "); got != "[192.0.2.100] []" {
		t.Errorf("dropped %q, want [192.0.2.100] while master, then []", got)
	}
}
