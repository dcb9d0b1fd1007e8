package netif

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Route is a route as ip-route(8) would add it.
type Route struct {
	To  netip.Prefix
	Via netip.Addr
	Dev string
	Src netip.Addr
	// Table 0 is the main table.
	Table  int
	Metric int
	// Scope is global (or empty), site, link, host or nowhere; Type is
	// unicast (or empty), blackhole, unreachable or prohibit.
	Scope, Type string
	// Protocol is the route's protocol number (rt_protos); 0 is boot,
	// the kernel's default.
	Protocol uint8
}

func (r Route) String() string {
	s := r.To.String()
	if r.Type != "" && r.Type != "unicast" {
		s = r.Type + " " + s
	}
	if r.Via.IsValid() {
		s += " via " + r.Via.String()
	}
	if r.Dev != "" {
		s += " dev " + r.Dev
	}
	if r.Table != 0 {
		s += fmt.Sprintf(" table %d", r.Table)
	}
	return s
}

var routeTypes = map[string]int{"": unix.RTN_UNICAST, "unicast": unix.RTN_UNICAST, "blackhole": unix.RTN_BLACKHOLE,
	"unreachable": unix.RTN_UNREACHABLE, "prohibit": unix.RTN_PROHIBIT}

func (r Route) netlink() (*netlink.Route, error) {
	scope, ok := scopes[r.Scope]
	if !ok {
		return nil, fmt.Errorf("route %s: unknown scope %q", r, r.Scope)
	}
	typ, ok := routeTypes[r.Type]
	if !ok {
		return nil, fmt.Errorf("route %s: unknown type %q", r, r.Type)
	}
	nr := &netlink.Route{Dst: ipNet(r.To), Table: r.Table, Priority: r.Metric, Scope: scope, Type: typ,
		Family: family(r.To.Addr()), Protocol: netlink.RouteProtocol(r.Protocol)}
	if r.Via.IsValid() {
		nr.Gw = r.Via.AsSlice()
	}
	if r.Src.IsValid() {
		nr.Src = r.Src.AsSlice()
	}
	if r.Dev != "" {
		link, err := netlink.LinkByName(r.Dev)
		if err != nil {
			return nil, fmt.Errorf("route %s: %w", r, err)
		}
		nr.LinkIndex = link.Attrs().Index
	}
	return nr, nil
}

// AddRoute adds a route, or replaces the one to the same destination.
func AddRoute(r Route) error {
	nr, err := r.netlink()
	if err != nil {
		return fmt.Errorf("add %w", err)
	}
	if err := netlink.RouteReplace(nr); err != nil {
		return fmt.Errorf("add route %s: %w", r, err)
	}
	return nil
}

// RemoveRoute removes a route; one not there is not an error.
func RemoveRoute(r Route) error {
	nr, err := r.netlink()
	if err != nil {
		return fmt.Errorf("remove %w", err)
	}
	if err := netlink.RouteDel(nr); err != nil && !errors.Is(err, syscall.ESRCH) && !errors.Is(err, syscall.ENOENT) {
		return fmt.Errorf("remove route %s: %w", r, err)
	}
	return nil
}

// Rule is a policy routing rule as ip-rule(8) would add it.
type Rule struct {
	From, To netip.Prefix
	Table    int
	Priority int
	Mark     uint32
	IIF, OIF string
	IPv6     bool // for a rule without From and To
}

func (r Rule) String() string {
	s := "from all"
	if r.From.IsValid() {
		s = "from " + r.From.String()
	}
	if r.To.IsValid() {
		s += " to " + r.To.String()
	}
	if r.Mark != 0 {
		s += fmt.Sprintf(" fwmark %#x", r.Mark)
	}
	return s + fmt.Sprintf(" table %d", r.Table)
}

func (r Rule) netlink() *netlink.Rule {
	nr := netlink.NewRule()
	nr.Table, nr.Priority, nr.Mark, nr.IifName, nr.OifName = r.Table, r.Priority, r.Mark, r.IIF, r.OIF
	if r.Priority == 0 {
		nr.Priority = -1
	}
	nr.Family = unix.AF_INET
	if r.IPv6 || r.From.Addr().Is6() || r.To.Addr().Is6() {
		nr.Family = unix.AF_INET6
	}
	if r.From.IsValid() {
		nr.Src = ipNet(r.From)
	}
	if r.To.IsValid() {
		nr.Dst = ipNet(r.To)
	}
	return nr
}

// AddRule adds a rule; the same rule already there is not an error.
func AddRule(r Rule) error {
	if err := netlink.RuleAdd(r.netlink()); err != nil && !errors.Is(err, syscall.EEXIST) {
		return fmt.Errorf("add rule %s: %w", r, err)
	}
	return nil
}

// RemoveRule removes a rule; one not there is not an error.
func RemoveRule(r Rule) error {
	if err := netlink.RuleDel(r.netlink()); err != nil && !errors.Is(err, syscall.ENOENT) {
		return fmt.Errorf("remove rule %s: %w", r, err)
	}
	return nil
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func family(a netip.Addr) int {
	if a.Is6() {
		return unix.AF_INET6
	}
	return unix.AF_INET
}
