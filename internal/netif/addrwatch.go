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

// WatchAddrs sends the interfaces' address changes until ctx is done;
// after a lost subscription the addresses that exist come again as added.
func WatchAddrs(ctx context.Context, out chan<- AddrChange) error {
	return watch(ctx, "addresses", 64, func(ch chan<- netlink.AddrUpdate, done <-chan struct{}, relist bool) error {
		return netlink.AddrSubscribeWithOptions(ch, done, netlink.AddrSubscribeOptions{ListExisting: relist})
	}, addrChange, out)
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
