package vrrp

import (
	"net/netip"
	"testing"
	"time"

	"halb/internal/netif"
	"halb/internal/vrrp/fsm"
)

// TestRunnerRestoresVIP: a VIP removed from its interface while the
// instance is master is put back and announced at once, with a notice;
// while backup, or for other addresses and interfaces, nothing happens.
func TestRunnerRestoresVIP(t *testing.T) {
	tr := newTestRunner(t, oneInstance, "eth0")
	gone := func(ifname, pfx string) {
		tr.net.hasVIPs = false
		tr.addrChange(netif.AddrChange{Ifname: ifname, Prefix: netip.MustParsePrefix(pfx), Removed: true})
		tr.flush()
	}
	gone("eth0", "192.0.2.100/24")
	if tr.net.hasVIPs || len(tr.events) != 1 {
		t.Fatalf("a backup put the VIP back (%v) or reported it (%+v)", tr.net.hasVIPs, tr.events)
	}
	tr.advance(4 * time.Second)
	if tr.state("vi") != fsm.Master {
		t.Fatalf("%s, want MASTER", tr.state("vi"))
	}
	announced, events := len(tr.net.announced), len(tr.events)
	for _, other := range [][2]string{{"eth1", "192.0.2.100/24"}, {"eth0", "192.0.2.1/24"}} {
		gone(other[0], other[1])
		if tr.net.hasVIPs || len(tr.events) != events {
			t.Fatalf("%s gone from %s: VIPs added (%v) or reported (%+v)", other[1], other[0], tr.net.hasVIPs, tr.events[events:])
		}
	}
	tr.addrChange(netif.AddrChange{Ifname: "eth0", Prefix: netip.MustParsePrefix("192.0.2.100/24")})
	tr.flush()
	if len(tr.events) != events {
		t.Fatalf("an added address was reported: %+v", tr.events[events:])
	}
	gone("eth0", "192.0.2.100/24")
	if !tr.net.hasVIPs || len(tr.net.announced) != announced+5 {
		t.Fatalf("VIP back %v, %d announcements; want back and 5 announcements", tr.net.hasVIPs, len(tr.net.announced)-announced)
	}
	ev := tr.lastEvent(t)
	if want := "VIP 192.0.2.100/24 was removed from eth0 while master; put back"; !ev.Notice || ev.Reason != want || ev.New != "MASTER" {
		t.Errorf("event %+v, want a MASTER notice %q", ev, want)
	}
}
