// Package packet encodes and decodes VRRP advertisements (VRRPv2 and
// VRRPv3, over IPv4 and IPv6), byte for byte as keepalived does. It is
// pure: no sockets, no I/O.
package packet

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// Protocol is VRRP's IP protocol number.
const Protocol = 112

// Multicast groups of VRRP adverts.
var (
	GroupIPv4 = netip.MustParseAddr("224.0.0.18")
	GroupIPv6 = netip.MustParseAddr("ff02::12")
)

// Auth types of VRRPv2.
const (
	AuthNone   = 0
	AuthSimple = 1
	// AuthAH: the advert travels under IPsec AH (package ah); its 8 auth
	// bytes are zero.
	AuthAH = 2
)

// Checksum selects how a VRRPv3 IPv4 advert's checksum is computed. IPv6
// always uses the pseudo-header and VRRPv2 never does.
type Checksum int

// Checksum forms.
const (
	// ChecksumPseudoHeader covers an IPv4 pseudo-header {src, dst, 0, 112,
	// length} and the message, as keepalived does by default.
	ChecksumPseudoHeader Checksum = iota
	// ChecksumMessage covers the VRRP message alone (RFC 9568, some routers).
	ChecksumMessage
)

// Errors Decode wraps; the wrapping message gives the details.
var (
	ErrLength   = errors.New("bad length")
	ErrVersion  = errors.New("bad version or type")
	ErrChecksum = errors.New("bad checksum")
	ErrTTL      = errors.New("TTL/hop limit is not 255")
	ErrCount    = errors.New("bad address count")
	ErrField    = errors.New("bad field")
	// ErrAddress: an IPv6 advert carries an IPv4-mapped address, which
	// is no IPv6 address of a virtual router.
	ErrAddress = errors.New("bad address")
)

// Advert is one VRRP advertisement.
type Advert struct {
	Version  int // 2 or 3
	VRID     uint8
	Priority uint8
	// Interval is the advert interval: whole seconds in v2, centiseconds
	// in v3.
	Interval time.Duration
	// AuthType and Auth are VRRPv2's authentication (AuthNone or
	// AuthSimple with a password of up to 8 bytes, zero padded).
	AuthType uint8
	Auth     [8]byte
	Addrs    []netip.Addr
}

// Header is what Decode needs from the IP header: the addresses (for the
// checksum) and the TTL or hop limit.
type Header struct {
	Src, Dst netip.Addr
	TTL      int
}

// Marshal encodes the advert as sent from src to dst. form matters only
// for VRRPv3 over IPv4.
func (a *Advert) Marshal(src, dst netip.Addr, form Checksum) ([]byte, error) {
	if len(a.Addrs) > 255 {
		return nil, fmt.Errorf("encode advert: %d addresses: %w", len(a.Addrs), ErrCount)
	}
	v6 := dst.Is6() && !dst.Is4In6()
	alen := 4
	if v6 {
		alen = 16
	}
	n := 8 + alen*len(a.Addrs)
	if a.Version == 2 {
		n += 8
	}
	b := make([]byte, n)
	b[1], b[2], b[3] = a.VRID, a.Priority, byte(len(a.Addrs))
	switch a.Version {
	case 2:
		if v6 {
			return nil, fmt.Errorf("encode advert: VRRPv2 over IPv6: %w", ErrVersion)
		}
		secs := a.Interval / time.Second
		if secs < 1 || secs > 255 || a.Interval%time.Second != 0 {
			return nil, fmt.Errorf("encode advert: v2 interval %s is not 1..255 whole seconds: %w", a.Interval, ErrField)
		}
		b[0] = 0x21
		b[4], b[5] = a.AuthType, byte(secs)
		copy(b[n-8:], a.Auth[:])
	case 3:
		cs := a.Interval / (10 * time.Millisecond)
		if cs < 1 || cs > 0xfff || a.Interval%(10*time.Millisecond) != 0 {
			return nil, fmt.Errorf("encode advert: v3 interval %s is not 10ms..40.95s in centiseconds: %w", a.Interval, ErrField)
		}
		b[0] = 0x31
		binary.BigEndian.PutUint16(b[4:], uint16(cs))
	default:
		return nil, fmt.Errorf("encode advert: version %d: %w", a.Version, ErrVersion)
	}
	for i, ad := range a.Addrs {
		if (alen == 16) != (ad.Is6() && !ad.Is4In6()) {
			return nil, fmt.Errorf("encode advert: address %s is not of the packet's family: %w", ad, ErrField)
		}
		s := ad.AsSlice()
		copy(b[8+i*alen:], s)
	}
	binary.BigEndian.PutUint16(b[6:], checksum(b, src, dst, a.Version, form))
	return b, nil
}

// Decode parses and validates an advert received with IP header h; its
// error names the problem. It never panics.
func Decode(h Header, b []byte) (*Advert, error) {
	if len(b) < 8 {
		return nil, fmt.Errorf("decode advert: %d bytes, want at least 8: %w", len(b), ErrLength)
	}
	if h.Dst.IsMulticast() && h.TTL != 255 {
		return nil, fmt.Errorf("decode advert: TTL %d on a multicast advert: %w", h.TTL, ErrTTL)
	}
	v6 := h.Dst.Is6() && !h.Dst.Is4In6()
	a := &Advert{Version: int(b[0] >> 4), VRID: b[1], Priority: b[2]}
	if b[0]&0x0f != 1 {
		return nil, fmt.Errorf("decode advert: type %d, want 1 (advertisement): %w", b[0]&0x0f, ErrVersion)
	}
	alen := 4
	if v6 {
		alen = 16
	}
	count := int(b[3])
	want := 8 + count*alen
	switch a.Version {
	case 2:
		if v6 {
			return nil, fmt.Errorf("decode advert: VRRPv2 over IPv6: %w", ErrVersion)
		}
		want += 8
		a.AuthType = b[4]
		a.Interval = time.Duration(b[5]) * time.Second
		if a.Interval == 0 {
			return nil, fmt.Errorf("decode advert: advert interval 0: %w", ErrField)
		}
	case 3:
		cs := binary.BigEndian.Uint16(b[4:]) & 0x0fff
		if cs == 0 {
			return nil, fmt.Errorf("decode advert: advert interval 0: %w", ErrField)
		}
		a.Interval = time.Duration(cs) * 10 * time.Millisecond
	default:
		return nil, fmt.Errorf("decode advert: version %d: %w", a.Version, ErrVersion)
	}
	if len(b) != want {
		return nil, fmt.Errorf("decode advert: %d bytes for version %d with %d addresses, want %d: %w", len(b), a.Version, count, want, ErrLength)
	}
	got := binary.BigEndian.Uint16(b[6:])
	if !checksumOK(b, h, a.Version) {
		return nil, fmt.Errorf("decode advert: checksum %#04x does not match the message from %s: %w", got, h.Src, ErrChecksum)
	}
	a.Addrs = make([]netip.Addr, count)
	for i := range count {
		raw := b[8+i*alen : 8+(i+1)*alen]
		if v6 {
			a.Addrs[i] = netip.AddrFrom16([16]byte(raw))
			if a.Addrs[i].Is4In6() {
				return nil, fmt.Errorf("decode advert: address %s is IPv4-mapped: %w", a.Addrs[i], ErrAddress)
			}
		} else {
			a.Addrs[i] = netip.AddrFrom4([4]byte(raw))
		}
	}
	if a.Version == 2 {
		copy(a.Auth[:], b[want-8:])
	}
	return a, nil
}

// checksumOK accepts both IPv4 v3 forms.
func checksumOK(b []byte, h Header, version int) bool {
	want := binary.BigEndian.Uint16(b[6:])
	c := make([]byte, len(b))
	copy(c, b)
	c[6], c[7] = 0, 0
	if checksum(c, h.Src, h.Dst, version, ChecksumPseudoHeader) == want {
		return true
	}
	return version == 3 && h.Dst.Is4() && checksum(c, h.Src, h.Dst, version, ChecksumMessage) == want
}

// checksum computes the Internet checksum of msg (whose checksum field is
// zero) with the pseudo-header the version, family and form call for.
func checksum(msg []byte, src, dst netip.Addr, version int, form Checksum) uint16 {
	var sum uint32
	if version == 3 {
		switch {
		case dst.Is6() && !dst.Is4In6():
			s, d := src.As16(), dst.As16()
			sum = add(sum, s[:])
			sum = add(sum, d[:])
			var tail [8]byte
			binary.BigEndian.PutUint32(tail[:], uint32(len(msg)))
			tail[7] = Protocol
			sum = add(sum, tail[:])
		case form == ChecksumPseudoHeader:
			s, d := src.Unmap().As4(), dst.Unmap().As4()
			sum = add(sum, s[:])
			sum = add(sum, d[:])
			sum = add(sum, []byte{0, Protocol, byte(len(msg) >> 8), byte(len(msg))})
		}
	}
	sum = add(sum, msg)
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

func add(sum uint32, b []byte) uint32 {
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	return sum
}

// Password returns the v2 auth data for a simple password.
func Password(s string) [8]byte {
	var p [8]byte
	copy(p[:], s)
	return p
}
