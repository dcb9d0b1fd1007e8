package netif

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"syscall"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// VirtualMAC is the VRRP virtual router MAC address of RFC 5798:
// 00:00:5e:00:01:VRID for IPv4, 00:00:5e:00:02:VRID for IPv6.
func VirtualMAC(vrid, family int) net.HardwareAddr {
	kind := byte(1)
	if family == 6 {
		kind = 2
	}
	return net.HardwareAddr{0, 0, 0x5e, 0, kind, byte(vrid)}
}

// EnsureVMAC makes a macvlan interface name on base with the MAC mac, up,
// as keepalived's use_vmac does: ARP for an address on it is answered
// with its MAC only, not by base (arp_ignore 1), and neither asks with
// the other's addresses (arp_announce 2), so that the link learns the
// VIPs at the virtual MAC only. The kernel makes it no link-local address
// of the virtual MAC, which every node's interface would share: with
// IPv6's virtual MAC (00:00:5e:00:02:VRID) it has base's, so that adverts
// leave from the virtual MAC and an address of the node's own. Its
// multicast membership reports leave out of base (see reportsFromParent).
func EnsureVMAC(base, name string, mac net.HardwareAddr) error {
	parent, err := netlink.LinkByName(base)
	if err != nil {
		return fmt.Errorf("virtual MAC interface %s: %w", name, err)
	}
	link, err := netlink.LinkByName(name)
	if err == nil && (link.Type() != "macvlan" || link.Attrs().ParentIndex != parent.Attrs().Index ||
		link.Attrs().HardwareAddr.String() != mac.String()) {
		return fmt.Errorf("virtual MAC interface %s: an interface of that name is there already, not a macvlan on %s with %s", name, base, mac)
	}
	if err != nil {
		mv := &netlink.Macvlan{LinkAttrs: netlink.LinkAttrs{Name: name, ParentIndex: parent.Attrs().Index, HardwareAddr: mac},
			Mode: netlink.MACVLAN_MODE_PRIVATE}
		if err := netlink.LinkAdd(mv); err != nil {
			return fmt.Errorf("add virtual MAC interface %s on %s: %w", name, base, err)
		}
		link = mv
	}
	// Before the interface is up, so that the kernel makes no link-local
	// address of the virtual MAC (RFC 5798 7.4).
	if err := netlink.LinkSetIP6AddrGenMode(link, nl.IN6_ADDR_GEN_MODE_NONE); err != nil {
		return fmt.Errorf("virtual MAC interface %s: no IPv6 address generation: %w", name, err)
	}
	for _, dev := range []string{base, name} {
		for key, v := range map[string]string{"arp_ignore": "1", "arp_announce": "2"} {
			if err := os.WriteFile(filepath.Join("/proc/sys/net/ipv4/conf", dev, key), []byte(v), 0o644); err != nil {
				return fmt.Errorf("virtual MAC interface %s: %s of %s: %w", name, key, dev, err)
			}
		}
	}
	if link, err = netlink.LinkByName(name); err != nil {
		return fmt.Errorf("virtual MAC interface %s: %w", name, err)
	}
	// Before the interface is up, so that no report leaves from the
	// virtual MAC.
	if err := reportsFromParent(link.Attrs().Index, parent.Attrs().Index); err != nil {
		return fmt.Errorf("virtual MAC interface %s: %w", name, err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("virtual MAC interface %s up: %w", name, err)
	}
	if len(mac) == 6 && mac[4] == 2 { // IPv6's virtual MAC
		return setLinkLocal(parent, link)
	}
	return nil
}

// setLinkLocal gives link the link-local address of parent (made from
// parent's MAC when it has none), and no other.
func setLinkLocal(parent, link netlink.Link) error {
	name := link.Attrs().Name
	ll, err := linkLocal(parent)
	if err != nil {
		return fmt.Errorf("virtual MAC interface %s: %w", name, err)
	}
	addrs, err := netlink.AddrList(link, netlink.FAMILY_V6)
	if err != nil {
		return fmt.Errorf("virtual MAC interface %s: list addresses: %w", name, err)
	}
	for _, a := range addrs {
		if a.IP.IsLinkLocalUnicast() && !a.IP.Equal(ll.AsSlice()) {
			if err := netlink.AddrDel(link, &a); err != nil {
				return fmt.Errorf("virtual MAC interface %s: remove %s: %w", name, a.IP, err)
			}
		}
	}
	a := &netlink.Addr{IPNet: ipNet(netip.PrefixFrom(ll, 64)), Flags: unix.IFA_F_NODAD}
	if err := netlink.AddrReplace(link, a); err != nil {
		return fmt.Errorf("virtual MAC interface %s: add link-local %s: %w", name, ll, err)
	}
	return nil
}

// linkLocal is link's IPv6 link-local address, or the one its MAC makes
// (EUI-64) when it has none.
func linkLocal(link netlink.Link) (netip.Addr, error) {
	addrs, err := netlink.AddrList(link, netlink.FAMILY_V6)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("addresses of %s: %w", link.Attrs().Name, err)
	}
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP); ok && ip.IsLinkLocalUnicast() {
			return ip.Unmap(), nil
		}
	}
	return eui64LinkLocal(link.Attrs().HardwareAddr)
}

// eui64LinkLocal is the link-local address the kernel makes of a MAC.
func eui64LinkLocal(mac net.HardwareAddr) (netip.Addr, error) {
	if len(mac) != 6 {
		return netip.Addr{}, fmt.Errorf("no link-local address, and no Ethernet MAC to make one of")
	}
	return netip.AddrFrom16([16]byte{0xfe, 0x80, 8: mac[0] ^ 2, mac[1], mac[2], 0xff, 0xfe, mac[3], mac[4], mac[5]}), nil
}

// RemoveVMAC removes the interface name; one not there is not an error.
func RemoveVMAC(name string) error {
	link, err := netlink.LinkByName(name)
	if err != nil {
		return nil
	}
	if err := netlink.LinkDel(link); err != nil && !errors.Is(err, syscall.ENODEV) {
		return fmt.Errorf("remove virtual MAC interface %s: %w", name, err)
	}
	if err := reportsFromParentDone(link.Attrs().Index); err != nil {
		return fmt.Errorf("remove virtual MAC interface %s: %w", name, err)
	}
	return nil
}
