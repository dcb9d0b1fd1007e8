package netif

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"

	"github.com/vishvananda/netlink"
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
// VIPs at the virtual MAC only.
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
	for _, dev := range []string{base, name} {
		for key, v := range map[string]string{"arp_ignore": "1", "arp_announce": "2"} {
			if err := os.WriteFile(filepath.Join("/proc/sys/net/ipv4/conf", dev, key), []byte(v), 0o644); err != nil {
				return fmt.Errorf("virtual MAC interface %s: %s of %s: %w", name, key, dev, err)
			}
		}
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("virtual MAC interface %s up: %w", name, err)
	}
	return nil
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
	return nil
}
