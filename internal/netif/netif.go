// Package netif changes and watches the node's network interfaces for VIP
// ownership: it adds and removes virtual addresses (netlink), announces
// them (gratuitous ARP, unsolicited neighbour advertisements), finds an
// interface's own addresses and reports link state changes.
package netif

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// AddAddrs adds prefixes to an interface; an address already there is
// left as it is. IPv6 addresses skip duplicate address detection.
func AddAddrs(ifname string, prefixes []netip.Prefix) error {
	addrs := make([]Address, len(prefixes))
	for i, p := range prefixes {
		addrs[i] = Address{Prefix: p}
	}
	return AddAddresses(ifname, addrs)
}

// RemoveAddrs removes prefixes from an interface; an address not there is
// not an error.
func RemoveAddrs(ifname string, prefixes []netip.Prefix) error {
	link, err := netlink.LinkByName(ifname)
	if err != nil {
		return fmt.Errorf("remove addresses from %s: %w", ifname, err)
	}
	for _, p := range prefixes {
		err := netlink.AddrDel(link, nlAddr(p))
		if err != nil && !errors.Is(err, syscall.EADDRNOTAVAIL) && !errors.Is(err, syscall.ENOENT) {
			return fmt.Errorf("remove %s from %s: %w", p, ifname, err)
		}
	}
	return nil
}

func nlAddr(p netip.Prefix) *netlink.Addr {
	a := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
	if p.Addr().Is6() {
		a.Flags = unix.IFA_F_NODAD
	}
	return a
}

// Addrs lists an interface's addresses of one family (4 or 6).
func Addrs(ifname string, family int) ([]netip.Prefix, error) {
	link, err := netlink.LinkByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("list addresses of %s: %w", ifname, err)
	}
	fam := netlink.FAMILY_V4
	if family == 6 {
		fam = netlink.FAMILY_V6
	}
	list, err := netlink.AddrList(link, fam)
	if err != nil {
		return nil, fmt.Errorf("list addresses of %s: %w", ifname, err)
	}
	out := make([]netip.Prefix, 0, len(list))
	for _, a := range list {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok {
			continue
		}
		ones, _ := a.Mask.Size()
		out = append(out, netip.PrefixFrom(ip.Unmap(), ones))
	}
	return out, nil
}

// PrimaryAddr returns the address a VRRP instance speaks from on an
// interface: for IPv4 the first address that is not one of the VIPs, for
// IPv6 the link-local address.
func PrimaryAddr(ifname string, family int, vips []netip.Prefix) (netip.Addr, error) {
	addrs, err := Addrs(ifname, family)
	if err != nil {
		return netip.Addr{}, err
	}
	isVIP := func(a netip.Addr) bool {
		for _, v := range vips {
			if v.Addr() == a {
				return true
			}
		}
		return false
	}
	for _, p := range addrs {
		a := p.Addr()
		if isVIP(a) {
			continue
		}
		if family == 6 && a.IsLinkLocalUnicast() || family == 4 && a.Is4() {
			return a, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("primary address of %s: no IPv%d address to send adverts from", ifname, family)
}

// Announce tells the link that addrs are here: a gratuitous ARP request
// for each IPv4 address, an unsolicited neighbour advertisement (override)
// to all nodes for each IPv6 address.
func Announce(ifname string, addrs []netip.Addr) error {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return fmt.Errorf("announce on %s: %w", ifname, err)
	}
	var v4, v6 []netip.Addr
	for _, a := range addrs {
		if a.Is4() {
			v4 = append(v4, a)
		} else {
			v6 = append(v6, a)
		}
	}
	if len(v4) > 0 {
		if err := garp(ifi, v4); err != nil {
			return err
		}
	}
	if len(v6) > 0 {
		return unsolicitedNA(ifi, v6)
	}
	return nil
}

func garp(ifi *net.Interface, addrs []netip.Addr) error {
	c, err := arp.Dial(ifi)
	if err != nil {
		return fmt.Errorf("gratuitous ARP on %s: %w", ifi.Name, err)
	}
	defer c.Close()
	zero := make(net.HardwareAddr, len(ifi.HardwareAddr))
	for _, a := range addrs {
		p, err := arp.NewPacket(arp.OperationRequest, ifi.HardwareAddr, a, zero, a)
		if err != nil {
			return fmt.Errorf("gratuitous ARP for %s: %w", a, err)
		}
		if err := c.WriteTo(p, ethernet.Broadcast); err != nil {
			return fmt.Errorf("gratuitous ARP for %s on %s: %w", a, ifi.Name, err)
		}
	}
	return nil
}

var allNodes = netip.MustParseAddr("ff02::1")

func unsolicitedNA(ifi *net.Interface, addrs []netip.Addr) error {
	c, _, err := ndp.Listen(ifi, ndp.LinkLocal)
	if err != nil {
		return fmt.Errorf("neighbour advertisement on %s: %w", ifi.Name, err)
	}
	defer c.Close()
	for _, a := range addrs {
		m := &ndp.NeighborAdvertisement{Override: true, TargetAddress: a,
			Options: []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: ifi.HardwareAddr}}}
		if err := c.WriteTo(m, nil, allNodes); err != nil {
			return fmt.Errorf("neighbour advertisement for %s on %s: %w", a, ifi.Name, err)
		}
	}
	return nil
}

// LinkUp reports whether an interface is up and has a carrier.
func LinkUp(ifname string) (bool, error) {
	link, err := netlink.LinkByName(ifname)
	if err != nil {
		return false, fmt.Errorf("link state of %s: %w", ifname, err)
	}
	return linkUp(link.Attrs()), nil
}

func linkUp(a *netlink.LinkAttrs) bool {
	return a.Flags&net.FlagUp != 0 && (a.OperState == netlink.OperUp || a.OperState == netlink.OperUnknown)
}

// LinkChange is an interface going up or down.
type LinkChange struct {
	Name string
	Up   bool
}

// WatchLinks sends link state changes until ctx is done.
func WatchLinks(ctx context.Context, out chan<- LinkChange) error {
	return watch(ctx, "links", 16, func(ch chan<- netlink.LinkUpdate, done <-chan struct{}, relist bool) error {
		return netlink.LinkSubscribeWithOptions(ch, done, netlink.LinkSubscribeOptions{ListExisting: relist})
	}, linkChange, out)
}

func linkChange(u netlink.LinkUpdate) (LinkChange, bool) {
	a := u.Link.Attrs()
	return LinkChange{Name: a.Name, Up: linkUp(a)}, true
}

// watch subscribes to a kind of netlink update, what, with a buffer of size
// updates, and sends each one conv reads to out until ctx is done. The
// library ends a subscription when its socket fails, on an overrun
// (ENOBUFS) too: watch then subscribes again, asking for what exists now
// (relist), so that the updates lost are made good by a full read.
func watch[U, C any](ctx context.Context, what string, size int, subscribe func(ch chan<- U, done <-chan struct{}, relist bool) error, conv func(U) (C, bool), out chan<- C) error {
	for relist := false; ; relist = true {
		updates := make(chan U, size)
		done := make(chan struct{})
		if err := subscribe(updates, done, relist); err != nil {
			close(done)
			return fmt.Errorf("watch %s: %w", what, err)
		}
		ended := forward(ctx, updates, conv, out)
		close(done)
		if !ended {
			return nil
		}
	}
}

// forward sends what conv reads of updates to out until ctx is done
// (false) or the subscription ends (true).
func forward[U, C any](ctx context.Context, updates <-chan U, conv func(U) (C, bool), out chan<- C) bool {
	for {
		select {
		case <-ctx.Done():
			return false
		case u, ok := <-updates:
			if !ok {
				return true
			}
			c, ok := conv(u)
			if !ok {
				continue
			}
			select {
			case out <- c:
			case <-ctx.Done():
				return false
			}
		}
	}
}

// Address is an address with the options ip-address(8) would give it.
type Address struct {
	Prefix netip.Prefix
	// Scope is global (or empty), site, link, host or nowhere.
	Scope     string
	Label     string
	Broadcast netip.Addr
}

var scopes = map[string]netlink.Scope{"": netlink.SCOPE_UNIVERSE, "global": netlink.SCOPE_UNIVERSE,
	"site": netlink.SCOPE_SITE, "link": netlink.SCOPE_LINK, "host": netlink.SCOPE_HOST, "nowhere": netlink.SCOPE_NOWHERE}

// AddAddresses adds addresses with their options to an interface; an
// address already there is left as it is.
func AddAddresses(ifname string, addrs []Address) error {
	link, err := netlink.LinkByName(ifname)
	if err != nil {
		return fmt.Errorf("add addresses to %s: %w", ifname, err)
	}
	for _, x := range addrs {
		a := nlAddr(x.Prefix)
		scope, ok := scopes[x.Scope]
		if !ok {
			return fmt.Errorf("add %s to %s: unknown scope %q", x.Prefix, ifname, x.Scope)
		}
		a.Scope, a.Label = int(scope), x.Label
		if x.Broadcast.IsValid() {
			a.Broadcast = x.Broadcast.AsSlice()
		}
		if err := netlink.AddrAdd(link, a); err != nil && !errors.Is(err, syscall.EEXIST) {
			return fmt.Errorf("add %s to %s: %w", x.Prefix, ifname, err)
		}
	}
	return nil
}
