// Package dataplane defines the desired state of the packet path — virtual
// services, their real servers, and firewall-mark rules — and the interface
// every data plane (IPVS, nftables, none) implements to reach it.
package dataplane

import (
	"cmp"
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// Dataplane brings the kernel to a desired state.
type Dataplane interface {
	// Reconcile reads what the kernel has, and applies only the difference
	// to want. It never flushes. Objects the data plane did not create are
	// left alone. It may keep want until its next call, not longer: the
	// caller then reuses older states' memory.
	Reconcile(ctx context.Context, want State) error
	// Close releases the data plane's resources; installed state stays.
	Close() error
}

// ChangeCounter is a Dataplane that tells how many changes its last
// successful Reconcile made in the kernel (0 after a restart that found
// the kernel as wanted).
type ChangeCounter interface {
	Changes() int
}

// ChangesOf returns what dp's last successful Reconcile changed, if dp
// (or the data plane it wraps, by an Unwrap method) tells; a Layered data
// plane tells when both its layers do.
func ChangesOf(dp Dataplane) (int, bool) {
	for dp != nil {
		if l, ok := dp.(*Layered); ok {
			return l.countedChanges()
		}
		if c, ok := dp.(ChangeCounter); ok {
			return c.Changes(), true
		}
		u, ok := dp.(interface{ Unwrap() Dataplane })
		if !ok {
			break
		}
		dp = u.Unwrap()
	}
	return 0, false
}

// State is the whole desired packet path of a node.
type State struct {
	Services  []VirtualService `json:"services"`
	MarkRules []MarkRule       `json:"mark_rules"`
	// Sync is the wanted IPVS connection-sync daemon state (nil: none).
	Sync *SyncDaemons `json:"sync,omitempty"`
	// Delta, when set, says how the state differs from the one before
	// it, so that a data plane can compare only what changed.
	Delta *Delta `json:"-"`
}

// Delta relates a state to the one before it. When From is not zero,
// the state differs from state From only in the services at the indexes
// Services lists (changed or added) and in Sync: every other service is
// equal to the one of the same key there, none went, and the mark rules
// are the same. A data plane that applied state From may compare only
// those services; any other compares the whole state. Gen names the
// state itself, for the next Delta.
type Delta struct {
	From, Gen uint64
	Services  []int
}

// Since returns the indexes of the services of want that differ from
// those of have (changed or added), and false when a service went or
// the mark rules differ: a Delta then cannot describe the change. States
// in the same order cost one walk without allocations.
func Since(have, want State) ([]int, bool) {
	if !slices.Equal(have.MarkRules, want.MarkRules) {
		return nil, false
	}
	var changed []int
	var haveIndex map[ServiceKey]int // built only when the orders differ
	found := 0
	for i, w := range want.Services {
		h, ok := VirtualService{}, i < len(have.Services) && have.Services[i].Key == w.Key
		if ok {
			h = have.Services[i]
		} else {
			if haveIndex == nil {
				haveIndex = make(map[ServiceKey]int, len(have.Services))
				for j, s := range have.Services {
					haveIndex[s.Key] = j
				}
			}
			var j int
			if j, ok = haveIndex[w.Key]; ok {
				h = have.Services[j]
			}
		}
		if ok {
			found++
		}
		if !ok || !equalService(h, w) {
			changed = append(changed, i)
		}
	}
	return changed, found == len(have.Services)
}

// equalService reports whether two services are equal in everything.
func equalService(a, b VirtualService) bool {
	return SameAttributes(a, b) && a.Service == b.Service && a.Netmask == b.Netmask && a.MaglevSize == b.MaglevSize &&
		(sameSlice(a.Reals, b.Reals) || slices.Equal(a.Reals, b.Reals))
}

// ServiceKey identifies a virtual service: by protocol, address and port,
// or (Mark != 0) by firewall mark and address family.
type ServiceKey struct {
	Family   int        `json:"family"` // 4 or 6
	Protocol string     `json:"protocol,omitempty"`
	Addr     netip.Addr `json:"addr,omitzero"`
	Port     uint16     `json:"port,omitempty"`
	Mark     uint32     `json:"mark,omitempty"`
}

// String renders "tcp 192.0.2.9:443" or "fwmark 268435457 ipv4".
func (k ServiceKey) String() string {
	if k.Mark != 0 {
		return fmt.Sprintf("fwmark %d ipv%d", k.Mark, k.Family)
	}
	return fmt.Sprintf("%s %s", k.Protocol, netip.AddrPortFrom(k.Addr, k.Port))
}

// Compare orders keys by mark (address services first), family,
// protocol, address and port.
func (k ServiceKey) Compare(o ServiceKey) int {
	if c := cmp.Compare(k.Mark, o.Mark); c != 0 {
		return c
	}
	if c := cmp.Compare(k.Family, o.Family); c != 0 {
		return c
	}
	if c := cmp.Compare(k.Protocol, o.Protocol); c != 0 {
		return c
	}
	if c := k.Addr.Compare(o.Addr); c != 0 {
		return c
	}
	return cmp.Compare(k.Port, o.Port)
}

// VirtualService is one IPVS-style virtual service.
type VirtualService struct {
	Key ServiceKey `json:"key"`
	// Service is the configuration service it comes from.
	Service   string   `json:"service"`
	Scheduler string   `json:"scheduler"`
	Flags     []string `json:"flags,omitempty"`
	// Persistence is the persistence timeout; 0 means none.
	Persistence time.Duration `json:"persistence,omitempty"`
	Netmask     int           `json:"netmask,omitempty"`
	// MaglevSize is the nftables lookup-table size (0: data plane's choice).
	MaglevSize int    `json:"maglev_size,omitempty"`
	Reals      []Real `json:"reals"`
}

// Real is one real server of a virtual service.
type Real struct {
	Addr netip.Addr `json:"addr"`
	Port uint16     `json:"port"`
	// Tunnel is the encapsulation of forward tun (zero otherwise). It
	// packs next to Port.
	Tunnel  Tunnel `json:"tunnel,omitzero"`
	Weight  int    `json:"weight"`
	Forward string `json:"forward"` // dr | nat | tun
	// MaxConns and MinConns are IPVS's upper and lower connection
	// thresholds (0: none).
	MaxConns uint32 `json:"max_connections,omitempty"`
	MinConns uint32 `json:"min_connections,omitempty"`
}

// Tunnel is an IPVS tunnel encapsulation.
type Tunnel struct {
	Type     TunnelType     `json:"type"`
	Port     uint16         `json:"port,omitempty"` // GUE's UDP port
	Checksum TunnelChecksum `json:"checksum"`
}

// String renders "gue:6080 csum", or "ipip".
func (t Tunnel) String() string {
	s := t.Type.String()
	if t.Port != 0 {
		s += fmt.Sprintf(":%d", t.Port)
	}
	if t.Checksum > NoChecksum {
		s += " " + t.Checksum.String()
	}
	return s
}

// TunnelType is a tunnel's encapsulation; zero is unset.
type TunnelType uint8

// Tunnel types.
const (
	IPIP TunnelType = iota + 1
	GUE
	GRE
)

// TunnelChecksum is a tunnel's checksum mode; zero is unset.
type TunnelChecksum uint8

// Checksum modes.
const (
	NoChecksum TunnelChecksum = iota + 1
	Checksum
	RemoteChecksum
)

var (
	tunnelTypeNames = []string{"", "ipip", "gue", "gre"}
	checksumNames   = []string{"", "none", "csum", "remcsum"}
)

func (t TunnelType) String() string                   { return enumName(tunnelTypeNames, t) }
func (t TunnelType) MarshalText() ([]byte, error)     { return []byte(t.String()), nil }
func (t *TunnelType) UnmarshalText(b []byte) error    { return enumParse(tunnelTypeNames, t, string(b)) }
func (c TunnelChecksum) String() string               { return enumName(checksumNames, c) }
func (c TunnelChecksum) MarshalText() ([]byte, error) { return []byte(c.String()), nil }
func (c *TunnelChecksum) UnmarshalText(b []byte) error {
	return enumParse(checksumNames, c, string(b))
}

// ParseTunnel reads a tunnel as the configuration writes it; empty names
// give the defaults, ipip without checksum.
func ParseTunnel(typ string, port uint16, checksum string) (Tunnel, error) {
	t := Tunnel{Type: IPIP, Port: port, Checksum: NoChecksum}
	if typ != "" {
		if err := t.Type.UnmarshalText([]byte(typ)); err != nil {
			return t, err
		}
	}
	if checksum != "" {
		if err := t.Checksum.UnmarshalText([]byte(checksum)); err != nil {
			return t, err
		}
	}
	return t, nil
}

func enumName[T ~uint8](names []string, v T) string {
	if int(v) < len(names) {
		return names[v]
	}
	return fmt.Sprintf("%d", v)
}

func enumParse[T ~uint8](names []string, v *T, s string) error {
	if i := slices.Index(names, s); i > 0 {
		*v = T(i)
		return nil
	}
	return fmt.Errorf("%q is not one of %s", s, strings.Join(names[1:], ", "))
}

// AddrPort returns the real server's address and port.
func (r Real) AddrPort() netip.AddrPort { return netip.AddrPortFrom(r.Addr, r.Port) }

// MarkRule marks packets to VIP, protocol and ports PortLo..PortHi.
type MarkRule struct {
	Mark     uint32     `json:"mark"`
	Protocol string     `json:"protocol"`
	VIP      netip.Addr `json:"vip"`
	PortLo   uint16     `json:"port_lo"`
	PortHi   uint16     `json:"port_hi"`
	Service  string     `json:"service"`
}

// Compare orders rules by VIP, protocol and ports.
func (r MarkRule) Compare(o MarkRule) int {
	return cmp.Or(r.VIP.Compare(o.VIP), cmp.Compare(r.Protocol, o.Protocol),
		cmp.Compare(r.PortLo, o.PortLo), cmp.Compare(r.PortHi, o.PortHi), cmp.Compare(r.Mark, o.Mark))
}

// SyncDaemons is the wanted IPVS connection-sync daemon state.
type SyncDaemons struct {
	Master     bool       `json:"master"`
	Backup     bool       `json:"backup"`
	Interface  string     `json:"interface"`
	SyncID     int        `json:"sync_id"`
	McastGroup netip.Addr `json:"mcast_group,omitzero"`
	McastPort  uint16     `json:"mcast_port,omitempty"`
	McastTTL   int        `json:"mcast_ttl,omitempty"`
	MaxLen     int        `json:"max_len,omitempty"`
}

// Sort puts a state in its canonical order, so that equal states compare
// and render equal.
func (s *State) Sort() {
	slices.SortFunc(s.Services, func(a, b VirtualService) int { return a.Key.Compare(b.Key) })
	for i := range s.Services {
		SortReals(s.Services[i].Reals)
	}
	slices.SortFunc(s.MarkRules, MarkRule.Compare)
}

// SortReals puts reals in their canonical order (by address and port).
func SortReals(rs []Real) {
	slices.SortFunc(rs, func(a, b Real) int { return a.AddrPort().Compare(b.AddrPort()) })
}
