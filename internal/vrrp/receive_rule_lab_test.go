package vrrp

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"halb/internal/lab/labtest"
	"halb/internal/vrrp/packet"
)

// TestLabAddressListRule: a master hearing higher-priority adverts that
// list another VIP (a misconfigured peer) stays master, and counts them
// as rejected for their address list.
func TestLabAddressListRule(t *testing.T) {
	labtest.RequireRoot(t)
	m := modes[0]
	p := newPair(t)
	const metricsAddr = "127.0.0.1:9464"
	yaml := func(n, prio int) string {
		return fmt.Sprintf("api: {metrics: %q}\n", metricsAddr) + m.halbYAML(n, prio, true, "")
	}
	a, _ := startHalbRun(t, p.a, yaml(1, 150))
	startHalbRun(t, p.b, yaml(2, 100))
	waitVIP(t, m.vip(), generous(masterDown(m.interval, 100)), p.a, p.a, p.b)
	const key = "halb_vrrp_adverts_rejected_total/address list"
	before := scrape(t, p.a, metricsAddr)[key]

	adv := packet.Advert{Version: 3, VRID: 10, Priority: 200, Interval: m.interval, Addrs: []netip.Addr{netip.MustParseAddr("192.0.2.99")}}
	msg, err := adv.Marshal(netip.MustParseAddr(m.self(2)), packet.GroupIPv4, packet.ChecksumPseudoHeader)
	if err != nil {
		t.Fatal(err)
	}
	// From b, whose own daemon ignores them as its own; a drops them.
	inject(t, p.b, 255, msg, msg, msg, msg, msg)
	holdVIP(t, m.vip(), 5*m.interval, p.a, p.a, p.b)
	if got := scrape(t, p.a, metricsAddr)[key]; got != before+5 {
		t.Errorf("a counted %d adverts rejected for their address list, want %d", got, before+5)
	}
	if n := strings.Count(a.logs.String(), "adverts listing other VIPs dropped"); n != 1 {
		t.Errorf("a logged the drop %d times, want once:\n%s", n, a.logs.String())
	}
}
