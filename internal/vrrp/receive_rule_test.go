package vrrp

import (
	"maps"
	"net/netip"
	"testing"
	"time"

	"halb/internal/config"
	"halb/internal/event"
	"halb/internal/vrrp/fsm"
	"halb/internal/vrrp/packet"
)

// TestReceiveAddressList: an advert listing other addresses than the
// instance's is dropped and counted unless it comes from the address
// owner (priority 255), as RFC 5798 §7.1 and keepalived want.
func TestReceiveAddressList(t *testing.T) {
	vips := []netip.Prefix{netip.MustParsePrefix("192.0.2.100/24"), netip.MustParsePrefix("192.0.2.101/24")}
	n := &Node{}
	r, s := counterRunner(t, n,
		config.Instance{Name: "v3", VRID: 10, Priority: 100, Version: 3, AdvertInterval: config.Duration(time.Second), VIPs: vips},
		config.Instance{Name: "v2", VRID: 12, Priority: 100, Version: 2, AdvertInterval: config.Duration(time.Second), VIPs: vips},
	)
	peer := addr("192.0.2.1")
	deliver := func(version, vrid, prio int, addrs ...string) {
		a := packet.Advert{Version: version, VRID: uint8(vrid), Priority: uint8(prio), Interval: time.Second}
		for _, s := range addrs {
			a.Addrs = append(a.Addrs, addr(s))
		}
		b, err := a.Marshal(peer, packet.GroupIPv4, packet.ChecksumPseudoHeader)
		if err != nil {
			t.Fatal(err)
		}
		r.receive(received{sock: s, hdr: packet.Header{Src: peer, Dst: packet.GroupIPv4, TTL: 255}, msg: b})
	}
	for _, v := range []struct {
		version, vrid int
	}{{3, 10}, {2, 12}} {
		deliver(v.version, v.vrid, 150, "192.0.2.100")                // one missing
		deliver(v.version, v.vrid, 150, "192.0.2.100", "192.0.2.102") // one other
		deliver(v.version, v.vrid, 0, "192.0.2.9")                    // a release of another list
	}
	for _, name := range []string{"v3", "v2"} {
		ins := r.instances[name]
		if ins.m.Master.IsValid() || ins.m.State != fsm.Backup {
			t.Errorf("%s: %s with master %s after adverts of other lists, want BACKUP with no master", name, ins.m.State, ins.m.Master)
		}
	}
	// The same list in another order is the same list; the owner may
	// list anything.
	deliver(3, 10, 150, "192.0.2.101", "192.0.2.100")
	deliver(2, 12, 255, "192.0.2.9")
	for _, name := range []string{"v3", "v2"} {
		if ins := r.instances[name]; ins.m.Master != peer {
			t.Errorf("%s: master %s, want %s", name, ins.m.Master, peer)
		}
	}
	for _, c := range n.VRRPCounters() {
		if want := map[string]uint64{RejectAddressList: 3}; c.AdvertsReceived != 1 || !maps.Equal(c.Rejected, want) {
			t.Errorf("%s: received %d rejected %v, want received 1 rejected %v", c.Instance, c.AdvertsReceived, c.Rejected, want)
		}
	}
}

// TestReceiveOtherVersion: adverts of the other VRRP version for the
// instance's VRID are dropped, and reported once as a notice.
func TestReceiveOtherVersion(t *testing.T) {
	vips := []netip.Prefix{netip.MustParsePrefix("192.0.2.100/24")}
	n := &Node{}
	r, s := counterRunner(t, n,
		config.Instance{Name: "v3", VRID: 10, Priority: 100, Version: 3, AdvertInterval: config.Duration(time.Second), VIPs: vips})
	evc := make(chan event.VRRP, 8)
	r.events = evc
	a := packet.Advert{Version: 2, VRID: 10, Priority: 150, Interval: time.Second, Addrs: []netip.Addr{addr("192.0.2.100")}}
	b, err := a.Marshal(addr("192.0.2.1"), packet.GroupIPv4, packet.ChecksumPseudoHeader)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		r.receive(received{sock: s, hdr: packet.Header{Src: addr("192.0.2.1"), Dst: packet.GroupIPv4, TTL: 255}, msg: b})
	}
	if len(evc) != 1 {
		t.Fatalf("%d events after 3 adverts of another version, want 1", len(evc))
	}
	ev := <-evc
	want := "hears VRRPv2 adverts for VRID 10 from 192.0.2.1 but speaks VRRPv3: they are dropped; set the same version on every node"
	if !ev.Notice || ev.Reason != want || ev.Old != "BACKUP" || ev.New != "BACKUP" {
		t.Errorf("event %+v, want a BACKUP notice %q", ev, want)
	}
	if c := n.VRRPCounters()[0]; c.Rejected[RejectVersion] != 3 || c.AdvertsReceived != 0 {
		t.Errorf("counters %+v, want 3 rejected for their version", c)
	}
}
