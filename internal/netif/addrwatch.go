package netif

import (
	"context"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
)

// AddrChange is an address added to or removed from an interface.
type AddrChange struct {
	Ifname  string
	Prefix  netip.Prefix
	Removed bool
}

// WatchAddrs sends the interfaces' address changes until ctx is done.
func WatchAddrs(ctx context.Context, out chan<- AddrChange) error {
	return watch(ctx, "addresses", 64, netlink.AddrSubscribe, addrChange, out)
}

// addrChange reads a netlink address update; ok is false for an
// interface that is gone already.
func addrChange(u netlink.AddrUpdate) (AddrChange, bool) {
	ip, ok := netip.AddrFromSlice(u.LinkAddress.IP)
	if !ok {
		return AddrChange{}, false
	}
	ifi, err := net.InterfaceByIndex(u.LinkIndex)
	if err != nil {
		return AddrChange{}, false
	}
	ones, _ := u.LinkAddress.Mask.Size()
	return AddrChange{Ifname: ifi.Name, Prefix: netip.PrefixFrom(ip.Unmap(), ones), Removed: !u.NewAddr}, true
}
