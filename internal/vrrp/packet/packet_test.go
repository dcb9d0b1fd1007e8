package packet

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

// capturedAdverts reads the IP packets of a pcap file written by tcpdump
// on an Ethernet (veth) interface.
func capturedAdverts(t *testing.T, name string) [][]byte {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) < 24 || binary.LittleEndian.Uint32(raw) != 0xa1b2c3d4 {
		t.Fatalf("%s: not a little-endian pcap file", name)
	}
	if lt := binary.LittleEndian.Uint32(raw[20:]); lt != 1 {
		t.Fatalf("%s: link type %d, want Ethernet", name, lt)
	}
	var pkts [][]byte
	for off := 24; off+16 <= len(raw); {
		n := int(binary.LittleEndian.Uint32(raw[off+8:]))
		off += 16
		if off+n > len(raw) || n < 14 {
			t.Fatalf("%s: truncated record", name)
		}
		pkts = append(pkts, raw[off+14:off+n])
		off += n
	}
	if len(pkts) == 0 {
		t.Fatalf("%s: no packets", name)
	}
	return pkts
}

// splitIP returns the IP header fields Decode needs and the VRRP message.
func splitIP(t *testing.T, p []byte) (Header, []byte) {
	t.Helper()
	switch p[0] >> 4 {
	case 4:
		ihl := int(p[0]&0x0f) * 4
		tot := int(binary.BigEndian.Uint16(p[2:]))
		if p[9] != Protocol {
			t.Fatalf("protocol %d", p[9])
		}
		return Header{Src: netip.AddrFrom4([4]byte(p[12:16])), Dst: netip.AddrFrom4([4]byte(p[16:20])), TTL: int(p[8])}, p[ihl:tot]
	case 6:
		pl := int(binary.BigEndian.Uint16(p[4:]))
		if p[6] != Protocol {
			t.Fatalf("next header %d", p[6])
		}
		return Header{Src: netip.AddrFrom16([16]byte(p[8:24])), Dst: netip.AddrFrom16([16]byte(p[24:40])), TTL: int(p[7])}, p[40 : 40+pl]
	}
	t.Fatalf("not an IP packet")
	return Header{}, nil
}

// TestGoldenKeepalived decodes adverts captured from keepalived 2.2.7
// (testdata/capture.sh) and checks that encoding the same advert gives
// the very same bytes.
func TestGoldenKeepalived(t *testing.T) {
	v4 := func(s ...string) []netip.Addr {
		var out []netip.Addr
		for _, a := range s {
			out = append(out, netip.MustParseAddr(a))
		}
		return out
	}
	cases := []struct {
		file string
		want Advert
	}{
		{"keepalived-v2-ipv4.pcap", Advert{Version: 2, VRID: 51, Priority: 150, Interval: time.Second,
			AuthType: AuthSimple, Auth: Password("secret12"), Addrs: v4("192.0.2.100", "192.0.2.101")}},
		{"keepalived-v3-ipv4.pcap", Advert{Version: 3, VRID: 52, Priority: 200, Interval: 500 * time.Millisecond,
			Addrs: v4("192.0.2.102")}},
		{"keepalived-v3-ipv4-unicast.pcap", Advert{Version: 3, VRID: 53, Priority: 120, Interval: time.Second,
			Addrs: v4("192.0.2.103", "192.0.2.104")}},
		{"keepalived-v3-ipv6.pcap", Advert{Version: 3, VRID: 54, Priority: 100, Interval: time.Second,
			Addrs: v4("2001:db8::100")}},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			for _, p := range capturedAdverts(t, c.file) {
				h, msg := splitIP(t, p)
				got, err := Decode(h, msg)
				if err != nil {
					t.Fatalf("decode: %v", err)
				}
				if !reflect.DeepEqual(*got, c.want) {
					t.Fatalf("decoded %+v, want %+v", got, c.want)
				}
				enc, err := c.want.Marshal(h.Src, h.Dst, ChecksumPseudoHeader)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(enc, msg) {
					t.Fatalf("encoded\n% x\nkeepalived sent\n% x", enc, msg)
				}
			}
		})
	}
}

func TestChecksumForms(t *testing.T) {
	src, dst := netip.MustParseAddr("192.0.2.1"), GroupIPv4
	a := Advert{Version: 3, VRID: 9, Priority: 100, Interval: time.Second, Addrs: []netip.Addr{netip.MustParseAddr("192.0.2.9")}}
	ph, err := a.Marshal(src, dst, ChecksumPseudoHeader)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := a.Marshal(src, dst, ChecksumMessage)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(ph, msg) {
		t.Fatal("both checksum forms gave the same bytes")
	}
	h := Header{Src: src, Dst: dst, TTL: 255}
	for _, b := range [][]byte{ph, msg} {
		if _, err := Decode(h, b); err != nil {
			t.Errorf("form not accepted: %v", err)
		}
	}
	// v2 has only the message form: the pseudo-header form must fail.
	a.Version, a.Interval = 2, time.Second
	v2, _ := a.Marshal(src, dst, ChecksumPseudoHeader)
	v2[6] ^= 0xff
	if _, err := Decode(h, v2); !errors.Is(err, ErrChecksum) {
		t.Errorf("corrupt v2 checksum: %v, want ErrChecksum", err)
	}
}

func TestDecodeErrors(t *testing.T) {
	src := netip.MustParseAddr("192.0.2.1")
	a := Advert{Version: 3, VRID: 9, Priority: 100, Interval: time.Second, Addrs: []netip.Addr{netip.MustParseAddr("192.0.2.9")}}
	good, _ := a.Marshal(src, GroupIPv4, ChecksumPseudoHeader)
	h := Header{Src: src, Dst: GroupIPv4, TTL: 255}
	mod := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	cases := []struct {
		name string
		h    Header
		b    []byte
		want error
	}{
		{"short", h, good[:5], ErrLength},
		{"ttl", Header{Src: src, Dst: GroupIPv4, TTL: 64}, good, ErrTTL},
		{"type", h, mod(func(b []byte) []byte { b[0] = 0x32; return b }), ErrVersion},
		{"version", h, mod(func(b []byte) []byte { b[0] = 0x41; return b }), ErrVersion},
		{"count", h, mod(func(b []byte) []byte { b[3] = 2; return b }), ErrLength},
		{"checksum", h, mod(func(b []byte) []byte { b[11] ^= 1; return b }), ErrChecksum},
		{"trailing", h, append(append([]byte(nil), good...), 0), ErrLength},
	}
	for _, c := range cases {
		if _, err := Decode(c.h, c.b); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
	// A unicast advert may arrive with a TTL below 255 (routed peers).
	uh := Header{Src: src, Dst: netip.MustParseAddr("192.0.2.2"), TTL: 64}
	ub, _ := a.Marshal(uh.Src, uh.Dst, ChecksumPseudoHeader)
	if _, err := Decode(uh, ub); err != nil {
		t.Errorf("unicast with TTL 64: %v", err)
	}
}

func FuzzDecode(f *testing.F) {
	for _, name := range []string{"keepalived-v2-ipv4.pcap", "keepalived-v3-ipv4.pcap", "keepalived-v3-ipv6.pcap"} {
		raw, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		v6 := name == "keepalived-v3-ipv6.pcap"
		n := int(binary.LittleEndian.Uint32(raw[24+8:]))
		ip := raw[24+16+14 : 24+16+n]
		if v6 {
			f.Add(ip[40:], v6)
		} else {
			f.Add(ip[20:], v6)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte, v6 bool) {
		h := Header{Src: netip.MustParseAddr("192.0.2.1"), Dst: GroupIPv4, TTL: 255}
		if v6 {
			h = Header{Src: netip.MustParseAddr("fe80::1"), Dst: GroupIPv6, TTL: 255}
		}
		a, err := Decode(h, b)
		if err != nil {
			return
		}
		// Whatever decodes re-encodes to a message that decodes to the
		// very same advert...
		enc, err := a.Marshal(h.Src, h.Dst, ChecksumPseudoHeader)
		if err != nil {
			t.Fatalf("re-encode %+v: %v", a, err)
		}
		a2, err := Decode(h, enc)
		if err != nil {
			t.Fatalf("decode the re-encoded %+v: %v", a, err)
		}
		if !reflect.DeepEqual(a, a2) {
			t.Fatalf("round trip changed the advert:\n%+v\n%+v", a, a2)
		}
		// ...and to the received bytes, but for the checksum (either form)
		// and VRRPv3's reserved bits, which Decode ignores.
		want := bytes.Clone(b)
		if a.Version == 3 {
			want[4] &= 0x0f
		}
		if !bytes.Equal(enc[:6], want[:6]) || !bytes.Equal(enc[8:], want[8:]) {
			t.Fatalf("re-encoded\n% x\nreceived\n% x", enc, b)
		}
	})
}

// TestNoAddresses: an instance without VIPs (a tracking or notify-only
// member of a sync group) sends and hears adverts listing no address, as
// keepalived's do.
func TestNoAddresses(t *testing.T) {
	src := netip.MustParseAddr("192.0.2.1")
	for _, version := range []int{2, 3} {
		a := Advert{Version: version, VRID: 7, Priority: 100, Interval: time.Second}
		b, err := a.Marshal(src, GroupIPv4, ChecksumPseudoHeader)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Decode(Header{Src: src, Dst: GroupIPv4, TTL: 255}, b)
		if err != nil || len(got.Addrs) != 0 || got.Priority != 100 {
			t.Errorf("v%d: %+v, %v; want priority 100 and no addresses", version, got, err)
		}
	}
}
