package vrrp

import (
	"maps"
	"net/netip"
	"testing"
	"time"

	"halb/internal/vrrp/ah"
	"halb/internal/vrrp/fsm"
	"halb/internal/vrrp/packet"
)

const ahInstance = `node: n
vrrp:
  instances:
    - name: vi
      interface: eth0
      vrid: 10
      priority: 100
      version: 2
      advert_interval: 1s
      auth_type: ah
      auth_password: secret
      vips: [192.0.2.100/24]
`

// TestAH: an AH instance hears only adverts sealed with its key and
// numbered above the last it sent or heard, and numbers its own above
// both, as keepalived does.
func TestAH(t *testing.T) {
	tr := newTestRunner(t, ahInstance, "eth0")
	peer := addr("192.0.2.2")
	hear := func(prio int, seq uint32, key string) {
		t.Helper()
		a := packet.Advert{Version: 2, VRID: 10, Priority: uint8(prio), Interval: time.Second, AuthType: packet.AuthAH,
			Addrs: []netip.Addr{addr("192.0.2.100")}}
		msg, err := a.Marshal(peer, packet.GroupIPv4, packet.ChecksumPseudoHeader)
		if err != nil {
			t.Fatal(err)
		}
		d, err := ah.Seal{Src: peer, Dst: packet.GroupIPv4, ID: 1, Seq: seq, Key: key}.Datagram(msg)
		if err != nil {
			t.Fatal(err)
		}
		p, err := ah.Parse(d)
		if err != nil {
			t.Fatal(err)
		}
		tr.receive(received{sock: tr.conn, hdr: packet.Header{Src: p.Src, Dst: p.Dst, TTL: p.TTL}, msg: p.Msg, ah: p})
		tr.flush()
	}
	// sent checks the last advert sent: sealed with the key, from the
	// instance's address, numbered seq.
	sent := func(seq uint32) {
		t.Helper()
		if len(tr.conn.sent) == 0 {
			t.Fatal("no advert sent")
		}
		p, err := ah.Parse(tr.conn.sent[len(tr.conn.sent)-1].datagram)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Verify("secret", false); err != nil || p.Seq != seq || p.Src != addr("192.0.2.1") {
			t.Errorf("sent from %s seq %d (%v), want from 192.0.2.1 seq %d", p.Src, p.Seq, err, seq)
		}
	}

	// A plain advert is nothing an AH instance hears.
	plain := packet.Advert{Version: 2, VRID: 10, Priority: 150, Interval: time.Second, Addrs: []netip.Addr{addr("192.0.2.100")}}
	msg, err := plain.Marshal(peer, packet.GroupIPv4, packet.ChecksumPseudoHeader)
	if err != nil {
		t.Fatal(err)
	}
	tr.receive(received{sock: tr.conn, hdr: packet.Header{Src: peer, Dst: packet.GroupIPv4, TTL: 255}, msg: msg})
	hear(150, 5, "secret")
	hear(150, 5, "secret") // a replay
	hear(150, 6, "secrex")
	hear(150, 4, "secret")
	hear(150, 6, "secret")
	if tr.state("vi") != fsm.Backup || tr.instances["vi"].m.Master != peer {
		t.Fatalf("%s with master %s, want BACKUP to %s", tr.state("vi"), tr.instances["vi"].m.Master, peer)
	}
	hear(0, 7, "secret") // the master leaves
	tr.advance(time.Second)
	if tr.state("vi") != fsm.Master {
		t.Fatalf("%s after the master left, want MASTER", tr.state("vi"))
	}
	sent(8) // above what it heard
	tr.advance(time.Second)
	sent(9)
	// A lower-priority master numbering far above: the answer goes
	// above its number.
	hear(50, 100, "secret")
	sent(102)
	if tr.state("vi") != fsm.Master {
		t.Errorf("%s after a lower priority, want MASTER", tr.state("vi"))
	}

	c := tr.counters.of("vi")
	rejected := map[string]uint64{}
	for i, r := range rejectReasons {
		if v := c.rejected[i].Load(); v > 0 {
			rejected[r] = v
		}
	}
	if want := map[string]uint64{RejectReplay: 2, RejectICV: 1, RejectAuth: 1}; !maps.Equal(rejected, want) || c.received.Load() != 4 {
		t.Errorf("received %d, rejected %v; want 4 and %v", c.received.Load(), rejected, want)
	}
}
