package netif

import (
	"net"
	"net/netip"
	"testing"

	"github.com/vishvananda/netlink"
)

func TestAddrChange(t *testing.T) {
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Skip("no lo:", err)
	}
	for _, tc := range []struct {
		ip   string
		bits int
		add  bool
		want AddrChange
	}{
		{"192.0.2.9", 24, false, AddrChange{Ifname: "lo", Prefix: netip.MustParsePrefix("192.0.2.9/24"), Removed: true}},
		{"2001:db8::9", 64, true, AddrChange{Ifname: "lo", Prefix: netip.MustParsePrefix("2001:db8::9/64")}},
	} {
		ip := net.ParseIP(tc.ip)
		u := netlink.AddrUpdate{LinkIndex: lo.Index, NewAddr: tc.add,
			LinkAddress: net.IPNet{IP: ip, Mask: net.CIDRMask(tc.bits, 8*len(ip.To16()))}}
		if ip.To4() != nil {
			u.LinkAddress = net.IPNet{IP: ip.To4(), Mask: net.CIDRMask(tc.bits, 32)}
		}
		if got, ok := addrChange(u); !ok || got != tc.want {
			t.Errorf("addrChange(%s/%d, new %v) = %+v, %v; want %+v", tc.ip, tc.bits, tc.add, got, ok, tc.want)
		}
	}
	if _, ok := addrChange(netlink.AddrUpdate{LinkIndex: 1 << 30, LinkAddress: net.IPNet{IP: net.ParseIP("192.0.2.9").To4(), Mask: net.CIDRMask(24, 32)}}); ok {
		t.Error("an address of an interface that is gone was reported")
	}
}
