package config

import (
	"crypto/sha256"
	"encoding/binary"
	"net/netip"
	"sort"
)

// Derived marks live in a range of their own, away from the small numbers
// that hand-written firewall scripts use: 0x10000000 to 0x1fffffff.
const (
	markBase = 0x1000_0000
	markSpan = 0x1000_0000
)

// MarkAssignment is one firewall mark of the mark plan and the traffic it
// covers: every (VIP, protocol, port range) below gets Mark.
type MarkAssignment struct {
	Service  string
	Mark     uint32
	Protocol string
	VIPs     []netip.Addr
	Ports    []PortRange
	// External marks are set by rules outside halb; halb installs no rule.
	External bool
}

// DeriveMark returns the mark of a service, or of one of its VIPs when vip
// is valid (mark: per-vip). It depends on nothing else, so it is the same
// on every node, across restarts and when other services change.
func DeriveMark(service string, vip netip.Addr) uint32 {
	h := sha256.New()
	h.Write([]byte("halb-mark-v1\x00"))
	h.Write([]byte(service))
	if vip.IsValid() {
		h.Write([]byte{0})
		h.Write(vip.AsSlice())
	}
	return markBase + uint32(binary.BigEndian.Uint64(h.Sum(nil))%markSpan)
}

// MarkPlan turns the services into their firewall marks, sorted by service
// then VIP. Services with mark: none have no entry.
func (c *Config) MarkPlan() []MarkAssignment {
	var plan []MarkAssignment
	for _, s := range c.Services {
		switch s.Mark.Mode {
		case MarkShared:
			plan = append(plan, MarkAssignment{Service: s.Name, Mark: DeriveMark(s.Name, netip.Addr{}),
				Protocol: s.Protocol, VIPs: s.VIPs, Ports: s.Ports})
		case MarkPerVIP:
			vips := append([]netip.Addr(nil), s.VIPs...)
			sort.Slice(vips, func(i, j int) bool { return vips[i].Less(vips[j]) })
			for _, vip := range vips {
				plan = append(plan, MarkAssignment{Service: s.Name, Mark: DeriveMark(s.Name, vip),
					Protocol: s.Protocol, VIPs: []netip.Addr{vip}, Ports: s.Ports})
			}
		case MarkExternal:
			plan = append(plan, MarkAssignment{Service: s.Name, Mark: s.Mark.Value,
				Protocol: s.Protocol, VIPs: s.VIPs, Ports: s.Ports, External: true})
		}
	}
	return plan
}
