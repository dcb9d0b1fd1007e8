// Package ah seals and opens VRRPv2 adverts under IPsec AH (RFC 2402) as
// keepalived's auth_type AH does: the whole IPv4 datagram is built here
// (the kernel is told IP_HDRINCL) so that the ICV covers the header it
// carries. It is pure: no sockets, no I/O.
//
// The format, as keepalived 2.2.7 sends and checks it:
//
//	IPv4 header (protocol 51, TOS 0xc0, TTL 255, a non-zero ID)
//	AH: next header 112, payload length 4, reserved 0,
//	    SPI = the source address, sequence number, 12-byte ICV
//	VRRPv2 advert with auth type 2 and 8 zero auth bytes
//
// The ICV is HMAC-MD5-96 keyed with the password (at most 8 bytes) over
// the IP header with TOS, flags/fragment offset and checksum zeroed (and
// the TTL too when the adverts are unicast), the AH header with a zero
// ICV, and the advert.
package ah

import (
	"crypto/hmac"
	"crypto/md5"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// Protocol is AH's IP protocol number.
const Protocol = 51

const (
	ipLen     = 20 // the IPv4 header Seal writes (no options)
	icvLen    = 12 // HMAC-MD5-96
	headerLen = 12 + icvLen
	// payloadLen is AH's length field: its length in 32-bit words minus 2.
	payloadLen = headerLen/4 - 2
	vrrp       = 112
	tos        = 0xc0 // internetwork control, as keepalived
	ttl        = 255
)

// KeyLen is the longest key: keepalived keeps the first 8 bytes of
// auth_pass.
const KeyLen = 8

// Errors Open wraps; the wrapping message gives the details.
var (
	// ErrFormat: not an IPv4 datagram carrying VRRP under AH as
	// keepalived sends it.
	ErrFormat = errors.New("malformed AH datagram")
	// ErrICV: the ICV does not match (another password, or a changed
	// packet).
	ErrICV = errors.New("bad ICV")
	// ErrSPI: the SPI is not the source address.
	ErrSPI = errors.New("SPI is not the source address")
)

// Seal is what one sealed advert is sent with.
type Seal struct {
	Src, Dst netip.Addr
	// ID is the IP header's identification; it must not be 0 (the
	// kernel would pick one after the ICV was computed).
	ID uint16
	// Seq is the AH sequence number.
	Seq uint32
	// Key is the password (at most KeyLen bytes).
	Key string
	// Unicast leaves the TTL out of the ICV, as keepalived does for
	// unicast peers.
	Unicast bool
}

// Datagram returns the IPv4 datagram carrying msg (a VRRPv2 advert
// encoded by package packet) under AH. Its header checksum is zero: the
// kernel fills it in.
func (s Seal) Datagram(msg []byte) ([]byte, error) {
	if !s.Src.Is4() || !s.Dst.Is4() {
		return nil, fmt.Errorf("seal advert from %s to %s: AH is IPv4 only: %w", s.Src, s.Dst, ErrFormat)
	}
	if s.ID == 0 || len(s.Key) > KeyLen {
		return nil, fmt.Errorf("seal advert: IP ID %d or key of %d bytes: %w", s.ID, len(s.Key), ErrFormat)
	}
	n := ipLen + headerLen + len(msg)
	if n > 0xffff {
		return nil, fmt.Errorf("seal advert: %d bytes: %w", n, ErrFormat)
	}
	d := make([]byte, n)
	d[0], d[1] = 0x45, tos
	binary.BigEndian.PutUint16(d[2:], uint16(n))
	binary.BigEndian.PutUint16(d[4:], s.ID)
	d[8], d[9] = ttl, Protocol
	src, dst := s.Src.As4(), s.Dst.As4()
	copy(d[12:], src[:])
	copy(d[16:], dst[:])
	a := d[ipLen:]
	a[0], a[1] = vrrp, payloadLen
	copy(a[4:], src[:])
	binary.BigEndian.PutUint32(a[8:], s.Seq)
	copy(a[headerLen:], msg)
	copy(a[12:headerLen], icv(d, ipLen, []byte(s.Key), s.Unicast))
	return d, nil
}

// Packet is a received AH datagram, parsed but not yet verified.
type Packet struct {
	Src, Dst netip.Addr
	TTL      int
	SPI, Seq uint32
	// Msg is the VRRP advert the AH header protects.
	Msg []byte
	d   []byte
	ihl int
}

// Parse reads an IPv4 datagram as a raw socket delivers it (header
// included). It checks the form only; Verify checks the ICV and SPI. It
// never panics.
func Parse(d []byte) (*Packet, error) {
	if len(d) < ipLen {
		return nil, fmt.Errorf("parse AH datagram: %d bytes: %w", len(d), ErrFormat)
	}
	ihl := int(d[0]&0x0f) * 4
	switch {
	case d[0]>>4 != 4 || ihl < ipLen:
		return nil, fmt.Errorf("parse AH datagram: version %d, header length %d: %w", d[0]>>4, ihl, ErrFormat)
	case d[9] != Protocol:
		return nil, fmt.Errorf("parse AH datagram: protocol %d: %w", d[9], ErrFormat)
	case len(d) < ihl+headerLen:
		return nil, fmt.Errorf("parse AH datagram: %d bytes, want at least %d: %w", len(d), ihl+headerLen, ErrFormat)
	case int(binary.BigEndian.Uint16(d[2:])) != len(d):
		return nil, fmt.Errorf("parse AH datagram: total length %d, got %d bytes: %w", binary.BigEndian.Uint16(d[2:]), len(d), ErrFormat)
	}
	a := d[ihl:]
	if a[0] != vrrp || a[1] != payloadLen {
		return nil, fmt.Errorf("parse AH datagram: next header %d, payload length %d, want %d and %d: %w",
			a[0], a[1], vrrp, payloadLen, ErrFormat)
	}
	return &Packet{
		Src: netip.AddrFrom4([4]byte(d[12:16])), Dst: netip.AddrFrom4([4]byte(d[16:20])), TTL: int(d[8]),
		SPI: binary.BigEndian.Uint32(a[4:]), Seq: binary.BigEndian.Uint32(a[8:]),
		Msg: a[headerLen:], d: d, ihl: ihl,
	}, nil
}

// Verify checks the ICV with key (unicast as Seal's) and that the SPI is
// the source address.
func (p *Packet) Verify(key string, unicast bool) error {
	if len(key) > KeyLen {
		return fmt.Errorf("verify AH advert: key of %d bytes: %w", len(key), ErrFormat)
	}
	got := p.d[p.ihl+12 : p.ihl+headerLen]
	if !hmac.Equal(got, icv(p.d, p.ihl, []byte(key), unicast)) {
		return fmt.Errorf("verify AH advert from %s: %w", p.Src, ErrICV)
	}
	if src := p.Src.As4(); p.SPI != binary.BigEndian.Uint32(src[:]) {
		return fmt.Errorf("verify AH advert from %s: SPI %#08x: %w", p.Src, p.SPI, ErrSPI)
	}
	return nil
}

// icv computes the ICV of datagram d whose IP header is ihl bytes long,
// with the mutable fields and the ICV taken as zero.
func icv(d []byte, ihl int, key []byte, unicast bool) []byte {
	h := make([]byte, ihl+headerLen)
	copy(h, d)
	h[1] = 0            // TOS
	h[6], h[7] = 0, 0   // flags, fragment offset
	h[10], h[11] = 0, 0 // checksum
	clear(h[ihl+12:])   // ICV
	if unicast {
		h[8] = 0 // TTL
	}
	m := hmac.New(md5.New, key)
	m.Write(h)
	m.Write(d[ihl+headerLen:])
	return m.Sum(nil)[:icvLen]
}

// Sequence is an instance's AH sequence counter. As keepalived's, one
// counter serves both directions: a sent advert takes the next number,
// and a received one is accepted only above the counter, which it then
// raises. A node that takes over thus continues above what it heard.
type Sequence struct{ n uint32 }

// lastSeq is where keepalived stops counting (it then gives up being
// master; 136 years of 1-second adverts).
const lastSeq = 0xfffffffe

// Next returns the number of the next sent advert.
func (s *Sequence) Next() uint32 {
	if s.n < lastSeq {
		s.n++
	}
	return s.n
}

// Accept reports whether a received advert's number is new, raising the
// counter to it if so.
func (s *Sequence) Accept(seq uint32) bool {
	if seq <= s.n {
		return false
	}
	s.n = seq
	return true
}

// Skip puts the counter past seq, so that the next sent advert is
// accepted by a node that sent seq: a master does this on hearing a
// lower-priority master, as keepalived does.
func (s *Sequence) Skip(seq uint32) {
	s.n = min(seq, lastSeq-1) + 1
}
