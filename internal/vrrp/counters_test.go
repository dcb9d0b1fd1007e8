package vrrp

import (
	"log/slog"
	"maps"
	"net/netip"
	"testing"
	"time"

	"halb/internal/clock/clocktest"
	"halb/internal/config"
	"halb/internal/event"
	"halb/internal/vrrp/fsm"
	"halb/internal/vrrp/packet"
)

// counterRunner is a runner with backup instances on a socket that is
// never opened: adverts are handed to receive directly.
func counterRunner(t *testing.T, n *Node, ins ...config.Instance) (*runner, *socket) {
	t.Helper()
	s := &socket{}
	r := &runner{log: slog.New(slog.DiscardHandler), clock: clocktest.New(time.Unix(1000, 0)), events: make(chan event.VRRP, 64),
		instances: map[string]*instance{}, counters: &n.counters, netq: make(chan func(), 64)}
	for _, in := range ins {
		x := &instance{cfg: in, sock: s, src: addr("192.0.2.2"), peers: map[netip.Addr]bool{}, faults: map[string]string{},
			weights: map[string]int{}, cnt: r.counters.of(in.Name)}
		for _, p := range in.UnicastPeers {
			x.peers[p] = true
		}
		for _, v := range in.VIPs {
			x.vipAddrs = append(x.vipAddrs, v.Addr())
		}
		x.m = fsm.NewMachine(fsm.Params{Version: in.Version, Priority: in.Priority, Interval: in.AdvertInterval.D(), Self: x.src})
		r.instances[in.Name] = x
		r.step(x, fsm.Event{Start: true}, r.clock.Now())
	}
	return r, s
}

func TestReceiveCounts(t *testing.T) {
	vip := []netip.Prefix{netip.MustParsePrefix("192.0.2.100/24")}
	n := &Node{}
	r, s := counterRunner(t, n,
		config.Instance{Name: "v3", VRID: 10, Priority: 100, Version: 3, AdvertInterval: config.Duration(time.Second), VIPs: vip},
		config.Instance{Name: "uni", VRID: 11, Priority: 100, Version: 3, AdvertInterval: config.Duration(time.Second), VIPs: vip,
			UnicastPeers: []netip.Addr{addr("192.0.2.1")}},
		config.Instance{Name: "v2", VRID: 12, Priority: 100, Version: 2, AdvertInterval: config.Duration(time.Second), VIPs: vip,
			AuthPassword: "secret"},
	)
	peer, group := addr("192.0.2.1"), packet.GroupIPv4
	advertTo := func(dst netip.Addr, version, vrid int, interval time.Duration, pass string) []byte {
		a := packet.Advert{Version: version, VRID: uint8(vrid), Priority: 150, Interval: interval, Addrs: []netip.Addr{addr("192.0.2.100")}}
		if pass != "" {
			a.AuthType, a.Auth = packet.AuthSimple, packet.Password(pass)
		}
		b, err := a.Marshal(peer, dst, packet.ChecksumPseudoHeader)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	advert := func(version, vrid int, interval time.Duration, pass string) []byte {
		return advertTo(group, version, vrid, interval, pass)
	}
	hdr := packet.Header{Src: peer, Dst: group, TTL: 255}
	deliver := func(h packet.Header, b []byte) { r.receive(received{sock: s, hdr: h, msg: b}) }

	good := advert(3, 10, time.Second, "")
	deliver(hdr, good)
	deliver(hdr, good)
	deliver(packet.Header{Src: peer, Dst: group, TTL: 64}, good)
	bad := append([]byte(nil), good...)
	bad[7] ^= 0xff
	deliver(hdr, bad)
	deliver(hdr, good[:len(good)-1])
	noAddrs := append([]byte(nil), good[:8]...)
	noAddrs[3] = 0
	deliver(hdr, noAddrs)
	deliver(hdr, advert(2, 10, time.Second, ""))                               // v2 to a v3 instance
	deliver(hdr, advert(3, 200, time.Second, ""))                              // no such VRID: nobody's
	deliver(packet.Header{Src: addr("192.0.2.2"), Dst: group, TTL: 255}, good) // our own

	deliver(packet.Header{Src: peer, Dst: addr("192.0.2.2"), TTL: 64}, advertTo(addr("192.0.2.2"), 3, 11, time.Second, ""))
	deliver(packet.Header{Src: addr("192.0.2.9"), Dst: addr("192.0.2.2"), TTL: 64}, advertTo(addr("192.0.2.2"), 3, 11, time.Second, ""))

	deliver(hdr, advert(2, 12, time.Second, "secret"))
	deliver(hdr, advert(2, 12, time.Second, "wrong"))
	deliver(hdr, advert(2, 12, 2*time.Second, "secret"))

	want := map[string]struct {
		received uint64
		rejected map[string]uint64
	}{
		"v3":  {2, map[string]uint64{RejectTTL: 1, RejectChecksum: 2, RejectLength: 1, RejectVersion: 1}},
		"uni": {1, map[string]uint64{RejectUnknownSource: 1}},
		"v2":  {1, map[string]uint64{RejectAuth: 1, RejectInterval: 1}},
	}
	got := n.VRRPCounters()
	if len(got) != 3 || got[0].Instance != "uni" || got[1].Instance != "v2" || got[2].Instance != "v3" {
		t.Fatalf("counters %+v, want uni, v2, v3 in order", got)
	}
	for _, c := range got {
		w := want[c.Instance]
		if c.AdvertsReceived != w.received || !maps.Equal(c.Rejected, w.rejected) || c.AdvertsSent != 0 {
			t.Errorf("%s: received %d rejected %v sent %d, want received %d rejected %v sent 0",
				c.Instance, c.AdvertsReceived, c.Rejected, c.AdvertsSent, w.received, w.rejected)
		}
	}
	// A backup that heard its master is still a backup.
	if st := r.instances["v3"].m.State; st != fsm.Backup {
		t.Errorf("v3 is %s after the adverts, want BACKUP", st)
	}

	// Counters outlive a restart of their instance, not its removal.
	n.counters.keep(map[string]bool{"v3": true, "v2": true})
	if c := n.counters.of("v3"); c.received.Load() != 2 {
		t.Errorf("v3 counters reset: received %d", c.received.Load())
	}
	if got := n.VRRPCounters(); len(got) != 2 {
		t.Errorf("after removing uni: %+v", got)
	}
}

func TestDecodeReasons(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{{packet.ErrLength, RejectLength}, {packet.ErrVersion, RejectVersion}, {packet.ErrChecksum, RejectChecksum}, {packet.ErrTTL, RejectTTL},
		{packet.ErrCount, RejectAddressCount}, {packet.ErrField, RejectInterval}, {nil, RejectOther}} {
		if got := decodeReason(tc.err); got != tc.want {
			t.Errorf("decodeReason(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}
