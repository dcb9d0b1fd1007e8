package config

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// BGP defaults: a session's hold time, and BFD's interval and multiplier
// when a peer has a bfd block without them.
const (
	DefaultBGPHoldTime          = 9 * time.Second
	DefaultBFDInterval          = 300 * time.Millisecond
	DefaultBFDMultiplier        = 3
	DefaultBGPDrainTime         = 5 * time.Second
	minBGPHoldTime              = 3 * time.Second
	minBFDInterval              = 10 * time.Millisecond
	maxBFDMultiplier            = 255
	bgpASTrans           uint32 = 23456
)

// BGP announces VIPs to routers so that N active nodes share them by ECMP.
// A VIP is announced by BGP or carried by VRRP, never both.
type BGP struct {
	ASN uint32 `yaml:"asn"`
	// RouterID is the BGP identifier; invalid (unset) means the node's
	// address towards its first peer.
	RouterID netip.Addr    `yaml:"router_id"`
	Peers    []BGPPeer     `yaml:"peers"`
	Announce []BGPAnnounce `yaml:"announce"`
	// DrainTime is how long a stopping node keeps forwarding after it has
	// withdrawn its routes (default 5s).
	DrainTime Duration `yaml:"drain_time"`
}

// Enabled reports whether the configuration has a BGP speaker.
func (b BGP) Enabled() bool { return b.ASN != 0 }

// BGPPeer is one router the node keeps a BGP session with.
type BGPPeer struct {
	Address netip.Addr `yaml:"address"`
	ASN     uint32     `yaml:"asn"`
	// Port is the peer's TCP port (0: 179).
	Port uint16 `yaml:"port"`
	// HoldTime is the proposed hold time (default 9s; at least 3s).
	HoldTime Duration `yaml:"hold_time"`
	// PasswordFile holds the TCP MD5 (RFC 2385) password of the session.
	PasswordFile string `yaml:"password_file"`
	// Multihop allows an eBGP peer that is not directly connected.
	Multihop bool `yaml:"multihop"`
	// BFD, when set, runs single-hop asynchronous BFD with the peer; the
	// session is reset as soon as BFD declares the peer down.
	BFD *BFD `yaml:"bfd"`
}

// BFD is a peer's BFD timing: detection time is Interval × Multiplier.
type BFD struct {
	Interval   Duration `yaml:"interval"`
	Multiplier int      `yaml:"multiplier"`
}

// BGPAnnounce is a set of VIPs announced as host routes (/32, /128) with
// the same path attributes.
type BGPAnnounce struct {
	VIPs        []netip.Addr `yaml:"vips"`
	Communities []Community  `yaml:"communities"`
	MED         uint32       `yaml:"med"`
}

// Community is an RFC 1997 community, written "A:B" with two 16-bit halves.
type Community uint32

// ParseCommunity parses "A:B", each a number from 0 to 65535.
func ParseCommunity(s string) (Community, error) {
	hi, lo, ok := strings.Cut(s, ":")
	a, errA := strconv.ParseUint(hi, 10, 16)
	b, errB := strconv.ParseUint(lo, 10, 16)
	if !ok || errA != nil || errB != nil {
		return 0, fmt.Errorf("community %q is not A:B with A and B from 0 to 65535", s)
	}
	return Community(a<<16 | b), nil
}

// String renders "A:B".
func (c Community) String() string { return fmt.Sprintf("%d:%d", uint32(c)>>16, uint32(c)&0xffff) }

func (c *Community) decodeNode(d *decoder, n *yaml.Node, path string) {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		d.errorf(n, "%s: expected a community \"A:B\", got %s", displayPath(path), kindName(n))
		return
	}
	v, err := ParseCommunity(n.Value)
	if err != nil {
		d.errorf(n, "%s: %v", displayPath(path), err)
		return
	}
	*c = v
}

// BGPVIPs returns every VIP the node announces over BGP.
func (c *Config) BGPVIPs() []netip.Addr {
	var vips []netip.Addr
	for _, a := range c.BGP.Announce {
		vips = append(vips, a.VIPs...)
	}
	return vips
}

// bgpDefaults fills in the defaults of the bgp section.
func (c *Config) bgpDefaults() {
	b := &c.BGP
	if !b.Enabled() {
		return
	}
	if !c.has("bgp.drain_time") {
		b.DrainTime = Duration(DefaultBGPDrainTime)
	}
	for i := range b.Peers {
		p := &b.Peers[i]
		if !c.has(fmt.Sprintf("bgp.peers[%d].hold_time", i)) {
			p.HoldTime = Duration(DefaultBGPHoldTime)
		}
		if p.BFD != nil {
			if p.BFD.Interval == 0 {
				p.BFD.Interval = Duration(DefaultBFDInterval)
			}
			if !c.has(fmt.Sprintf("bgp.peers[%d].bfd.multiplier", i)) {
				p.BFD.Multiplier = DefaultBFDMultiplier
			}
		}
	}
}
