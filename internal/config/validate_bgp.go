package config

import (
	"fmt"
	"net/netip"
	"time"
)

// bgp checks the bgp section: the local and peer ASNs, the router ID,
// each peer's timers, password file and BFD, and the announced VIPs,
// which VRRP must not also carry and a service should use.
func (v *validator) bgp() {
	b := v.c.BGP
	if !b.Enabled() {
		if v.c.has("bgp") {
			v.errorf("bgp", "bgp: asn is required")
		}
		return
	}
	v.checkASN("bgp.asn", b.ASN)
	if b.RouterID.IsValid() && !b.RouterID.Is4() {
		v.errorf("bgp.router_id", "bgp.router_id: %s is not an IPv4 address (a BGP identifier is 32 bits)", b.RouterID)
	}
	if len(b.Peers) == 0 {
		v.errorf("bgp", "bgp: no peers; the announced VIPs would reach no router")
	}
	peers := map[netip.Addr]int{}
	for i, p := range b.Peers {
		v.bgpPeer(i, p, peers)
	}
	if b.DrainTime.D() > 10*time.Minute {
		v.errorf("bgp.drain_time", "bgp.drain_time: %s keeps a stopping node for too long; at most 10m", b.DrainTime)
	}
	v.bgpAnnounce()
}

func (v *validator) checkASN(path string, asn uint32) {
	switch asn {
	case 0, bgpASTrans, 65535, 4294967295:
		v.errorf(path, "%s: %d is a reserved AS number", path, asn)
	}
}

func (v *validator) bgpPeer(i int, p BGPPeer, seen map[netip.Addr]int) {
	path := fmt.Sprintf("bgp.peers[%d]", i)
	if !p.Address.IsValid() {
		v.errorf(path, "%s: address is required", path)
	} else if j, dup := seen[p.Address]; dup {
		v.errorf(path+".address", "%s.address: peer %s is already bgp.peers[%d]", path, p.Address, j)
	} else {
		seen[p.Address] = i
	}
	if p.ASN == 0 && !v.c.has(path+".asn") {
		v.errorf(path, "%s: asn is required", path)
	} else {
		v.checkASN(path+".asn", p.ASN)
	}
	if h := p.HoldTime.D(); h < minBGPHoldTime || h%time.Second != 0 {
		v.errorf(path+".hold_time", "%s.hold_time: %s is not whole seconds of at least 3s (RFC 4271); use bfd for faster failure detection", path, p.HoldTime)
	}
	if p.PasswordFile != "" && p.PasswordFile[0] != '/' {
		v.errorf(path+".password_file", "%s.password_file: %q must be an absolute path", path, p.PasswordFile)
	}
	if f := p.BFD; f != nil {
		if f.Interval.D() < minBFDInterval || f.Interval.D()%time.Millisecond != 0 {
			v.errorf(path+".bfd.interval", "%s.bfd.interval: %s is not whole milliseconds of at least 10ms", path, f.Interval)
		}
		if f.Multiplier < 1 || f.Multiplier > maxBFDMultiplier {
			v.errorf(path+".bfd.multiplier", "%s.bfd.multiplier: %d is not from 1 to 255", path, f.Multiplier)
		}
		if p.Multihop {
			v.errorf(path+".bfd", "%s.bfd: BFD runs single-hop only; it cannot go with multihop", path)
		}
	}
}

// bgpAnnounce checks the announced VIPs: each once, none also carried by
// a VRRP instance, each sent to a peer of its family and served by a
// service.
func (v *validator) bgpAnnounce() {
	vrrp := map[netip.Addr]string{}
	for _, in := range v.c.VRRP.Instances {
		for _, vip := range in.VIPs {
			vrrp[vip.Addr()] = in.Name
		}
	}
	served := map[netip.Addr]bool{}
	for _, s := range v.c.Services {
		for _, vip := range s.VIPs {
			served[vip] = true
		}
	}
	peerFamily := map[bool]bool{} // Is4 → some peer
	for _, p := range v.c.BGP.Peers {
		if p.Address.IsValid() {
			peerFamily[p.Address.Is4()] = true
		}
	}
	seen := map[netip.Addr]string{}
	for i, a := range v.c.BGP.Announce {
		p := fmt.Sprintf("bgp.announce[%d]", i)
		if len(a.VIPs) == 0 {
			v.errorf(p, "%s: vips is required", p)
		}
		for j, vip := range a.VIPs {
			vp := fmt.Sprintf("%s.vips[%d]", p, j)
			if !vip.IsValid() {
				continue // reported when decoded
			}
			if prev, dup := seen[vip]; dup {
				v.errorf(vp, "%s: VIP %s is already announced by %s", vp, vip, prev)
				continue
			}
			seen[vip] = vp
			if in, ok := vrrp[vip]; ok {
				v.errorf(vp, "%s: VIP %s is carried by VRRP instance %q; a VIP is either VRRP-owned or BGP-announced, not both", vp, vip, in)
			}
			if len(v.c.BGP.Peers) > 0 && !peerFamily[vip.Is4()] {
				v.errorf(vp, "%s: no peer of VIP %s's address family; a session carries routes of its own family", vp, vip)
			}
			if !served[vip] {
				v.warnf(vp, "%s: no service uses VIP %s; the node would attract traffic it does not balance", vp, vip)
			}
		}
	}
}

// bgpAnnounced reports whether BGP announces vip.
func (v *validator) bgpAnnounced(vip netip.Addr) bool {
	for _, a := range v.c.BGP.Announce {
		for _, x := range a.VIPs {
			if x == vip {
				return true
			}
		}
	}
	return false
}
