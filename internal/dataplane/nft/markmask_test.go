package nft

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"halb/internal/config"
	"halb/internal/dataplane"
)

// TestMarkMaskKeepsForeignBits: another table sets bit 0x4000 of the
// packet mark (as kube-proxy does) before halb's chain; with a mark mask
// without that bit, the packet leaves halb's chain with both marks. The
// control: with a full mask, halb's mark replaces the foreign bit.
func TestMarkMaskKeepsForeignBits(t *testing.T) {
	const foreign, mask = 0x4000, 0x1fff3fff
	name := ""
	for i := 0; name == ""; i++ { // a service whose derived mark fits the mask
		if n := fmt.Sprintf("svc%d", i); config.DeriveMark(n, netip.Addr{})&^mask == 0 {
			name = n
		}
	}
	mark := config.DeriveMark(name, netip.Addr{})
	st := dataplane.State{MarkRules: []dataplane.MarkRule{{Mark: mark, Protocol: "udp", VIP: netip.MustParseAddr("192.0.2.53"), PortLo: 53, PortHi: 53, Service: name}}}

	lab, lb := labHost(t)
	sw, err := lab.AddSwitch("sw")
	if err != nil {
		t.Fatal(err)
	}
	client, err := lab.AddHost("client")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lab.Connect(client, sw, "eth0", "192.0.2.100/24"); err != nil {
		t.Fatal(err)
	}
	if _, err := lab.Connect(lb, sw, "eth0", "192.0.2.2/24", "192.0.2.53/24"); err != nil {
		t.Fatal(err)
	}
	nftApply(t, lb, fmt.Sprintf(`table inet other {
 chain c {
  type filter hook prerouting priority -200;
  udp dport 53 meta mark set meta mark | %#x
 }
}
table inet count {
 chain c {
  type filter hook prerouting priority 0;
  meta mark %d counter comment "%d"
  meta mark %d counter comment "%d"
 }
}
`, foreign, mark|foreign, mark|foreign, mark, mark))
	for _, tc := range []struct {
		mask uint32
		want uint32
	}{{mask, mark | foreign}, {0xffffffff, mark}} {
		reconcile(t, nsDataplane(t, lb, WithMarkMask(tc.mask)), st)
		before := counters(t, lb)[tc.want]
		for range 5 {
			if out, err := client.Run("bash", "-c", "echo x > /dev/udp/192.0.2.53/53"); err != nil {
				t.Fatalf("send: %v: %s", err, out)
			}
		}
		time.Sleep(200 * time.Millisecond) // let the packets land
		got := counters(t, lb)
		if n := got[tc.want] - before; n < 5 {
			t.Errorf("mask %#x: %d of 5 packets left halb's chain with mark %#x; by mark: %v", tc.mask, n, tc.want, got)
		}
	}
}
