package vrrp

import (
	"net/netip"
	"testing"
	"time"

	"halb/internal/config"
	"halb/internal/event"
	"halb/internal/vrrp/fsm"
	"halb/internal/vrrp/packet"
)

// TestReceiveOtherInterval: adverts sent at another interval are reported
// once, as a notice; VRRPv2 drops them, VRRPv3 takes them (a backup
// follows its master's interval).
func TestReceiveOtherInterval(t *testing.T) {
	vips := []netip.Prefix{netip.MustParsePrefix("192.0.2.100/24")}
	n := &Node{}
	r, s := counterRunner(t, n,
		config.Instance{Name: "v3", VRID: 10, Priority: 100, Version: 3, AdvertInterval: config.Duration(time.Second), VIPs: vips},
		config.Instance{Name: "v2", VRID: 12, Priority: 100, Version: 2, AdvertInterval: config.Duration(time.Second), VIPs: vips})
	evc := make(chan event.VRRP, 8)
	r.events = evc
	peer := addr("192.0.2.1")
	for _, vrid := range []int{10, 12} {
		version := 3
		if vrid == 12 {
			version = 2
		}
		a := packet.Advert{Version: version, VRID: uint8(vrid), Priority: 150, Interval: 2 * time.Second, Addrs: []netip.Addr{addr("192.0.2.100")}}
		b, err := a.Marshal(peer, packet.GroupIPv4, packet.ChecksumPseudoHeader)
		if err != nil {
			t.Fatal(err)
		}
		for range 3 {
			r.receive(received{sock: s, hdr: packet.Header{Src: peer, Dst: packet.GroupIPv4, TTL: 255}, msg: b})
		}
	}
	close(evc)
	notices := map[string]string{}
	for ev := range evc {
		if ev.Notice {
			if _, dup := notices[ev.Instance]; dup {
				t.Errorf("%s: a second notice %q", ev.Instance, ev.Reason)
			}
			notices[ev.Instance] = ev.Reason
		}
	}
	want := map[string]string{
		"v3": "hears adverts for VRID 10 from 192.0.2.1 every 2s but sends every 1s: a backup follows its master's (VRRPv3); set the same advert_interval on every node",
		"v2": "hears adverts for VRID 12 from 192.0.2.1 every 2s but sends every 1s: they are dropped (VRRPv2); set the same advert_interval on every node",
	}
	for name, w := range want {
		if notices[name] != w {
			t.Errorf("%s: notice %q, want %q", name, notices[name], w)
		}
	}
	if m := r.instances["v3"].m; m.Master != peer || m.MasterInterval != 2*time.Second || m.State != fsm.Backup {
		t.Errorf("v3: %s, master %s every %v; want BACKUP following %s every 2s", m.State, m.Master, m.MasterInterval, peer)
	}
	if m := r.instances["v2"].m; m.Master.IsValid() {
		t.Errorf("v2: master %s, want none (the adverts are dropped)", m.Master)
	}
	for _, c := range n.VRRPCounters() {
		if c.Instance == "v2" && (c.Rejected[RejectInterval] != 3 || c.AdvertsReceived != 0) {
			t.Errorf("v2: counters %+v, want 3 rejected for their interval", c)
		}
		if c.Instance == "v3" && c.AdvertsReceived != 3 {
			t.Errorf("v3: counters %+v, want 3 received", c)
		}
	}
}
