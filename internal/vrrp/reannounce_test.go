package vrrp

import (
	"net/netip"
	"testing"
	"time"

	"halb/internal/vrrp/fsm"
	"halb/internal/vrrp/packet"
)

// TestRunnerReannounce: a master hearing a lower-priority master (a
// healed split brain) answers with an advert at once and announces its
// VIPs again, lower_priority_count at once and again after
// lower_priority_delay; a priority-0 advert only gets the advert.
func TestRunnerReannounce(t *testing.T) {
	tr := newTestRunner(t, oneInstance+`      garp: {count: 2, second_burst: 0s, lower_priority_count: 3, lower_priority_delay: 2s}
`, "eth0")
	tr.advance(4 * time.Second)
	if tr.state("vi") != fsm.Master || len(tr.net.announced) != 2 {
		t.Fatalf("%s with %d announcements, want MASTER with 2", tr.state("vi"), len(tr.net.announced))
	}
	deliver := func(prio int) {
		a := packet.Advert{Version: 3, VRID: 10, Priority: uint8(prio), Interval: time.Second, Addrs: []netip.Addr{addr("192.0.2.100")}}
		b, err := a.Marshal(addr("192.0.2.7"), packet.GroupIPv4, packet.ChecksumPseudoHeader)
		if err != nil {
			t.Fatal(err)
		}
		tr.receive(received{sock: tr.conn, hdr: packet.Header{Src: addr("192.0.2.7"), Dst: packet.GroupIPv4, TTL: 255}, msg: b})
		tr.flush()
	}
	sent := len(tr.conn.sent)
	deliver(0)
	if len(tr.conn.sent) != sent+1 || len(tr.net.announced) != 2 {
		t.Fatalf("priority 0: %d adverts, %d announcements; want 1 advert, no announcement", len(tr.conn.sent)-sent, len(tr.net.announced)-2)
	}
	now := tr.clock.Now()
	deliver(50)
	if len(tr.conn.sent) != sent+2 || tr.conn.sent[sent+1].at != now || len(tr.net.announced) != 5 {
		t.Fatalf("lower priority: %d adverts, %d announcements; want one advert at once, 3 announcements",
			len(tr.conn.sent)-sent-1, len(tr.net.announced)-2)
	}
	tr.advance(1900 * time.Millisecond)
	if len(tr.net.announced) != 5 {
		t.Fatalf("%d announcements before the delay, want 5", len(tr.net.announced))
	}
	tr.advance(200 * time.Millisecond)
	if len(tr.net.announced) != 8 || !tr.net.announced[7].Equal(now.Add(2*time.Second)) {
		t.Fatalf("announcements %v, want 3 more at +2s", tr.net.announced)
	}
	if tr.state("vi") != fsm.Master {
		t.Errorf("%s, want MASTER", tr.state("vi"))
	}
}
