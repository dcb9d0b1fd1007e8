package netif

import (
	"context"
	"errors"
	"fmt"
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
	updates := make(chan netlink.AddrUpdate, 64)
	done := make(chan struct{})
	defer close(done)
	if err := netlink.AddrSubscribe(updates, done); err != nil {
		return fmt.Errorf("watch addresses: %w", err)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case u, ok := <-updates:
			if !ok {
				return errors.New("watch addresses: netlink subscription closed")
			}
			ac, ok := addrChange(u)
			if !ok {
				continue
			}
			select {
			case out <- ac:
			case <-ctx.Done():
				return nil
			}
		}
	}
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
