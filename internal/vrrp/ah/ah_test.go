package ah

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"halb/internal/vrrp/packet"
)

// captured reads the IP packets of a pcap file tcpdump wrote on a veth.
func captured(t testing.TB, name string) [][]byte {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) < 24 || binary.LittleEndian.Uint32(raw) != 0xa1b2c3d4 || binary.LittleEndian.Uint32(raw[20:]) != 1 {
		t.Fatalf("%s: not a little-endian Ethernet pcap file", name)
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

var (
	src   = netip.MustParseAddr("192.0.2.1")
	peer  = netip.MustParseAddr("192.0.2.2")
	group = netip.MustParseAddr("224.0.0.18")
)

// TestKeepalivedKnownAnswer opens the adverts keepalived 2.2.7 sent with
// auth_type AH (testdata/capture.sh) and seals the same adverts to the
// very same bytes (but for the header checksum, which the kernel fills
// in).
func TestKeepalivedKnownAnswer(t *testing.T) {
	cases := []struct {
		file    string
		key     string
		unicast bool
		dst     netip.Addr
		advert  packet.Advert
	}{
		{"keepalived-ah-multicast.pcap", "secret12", false, group, packet.Advert{Version: 2, VRID: 61, Priority: 150,
			Interval: time.Second, AuthType: packet.AuthAH,
			Addrs: []netip.Addr{netip.MustParseAddr("192.0.2.100"), netip.MustParseAddr("192.0.2.101")}}},
		{"keepalived-ah-unicast.pcap", "short", true, peer, packet.Advert{Version: 2, VRID: 62, Priority: 120,
			Interval: time.Second, AuthType: packet.AuthAH, Addrs: []netip.Addr{netip.MustParseAddr("192.0.2.102")}}},
	}
	for _, c := range cases {
		for i, d := range captured(t, c.file) {
			p, err := Parse(d)
			if err != nil {
				t.Fatalf("%s #%d: %v", c.file, i, err)
			}
			if err := p.Verify(c.key, c.unicast); err != nil {
				t.Fatalf("%s #%d: %v", c.file, i, err)
			}
			if p.Src != src || p.Dst != c.dst || p.TTL != 255 || p.Seq != uint32(i+1) || p.SPI != 0xc0000201 {
				t.Errorf("%s #%d: %s > %s TTL %d seq %d SPI %#x", c.file, i, p.Src, p.Dst, p.TTL, p.Seq, p.SPI)
			}
			msg, err := c.advert.Marshal(src, c.dst, packet.ChecksumPseudoHeader)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(p.Msg, msg) {
				t.Errorf("%s #%d: advert\n% x, want\n% x", c.file, i, p.Msg, msg)
			}
			got, err := Seal{Src: src, Dst: c.dst, ID: binary.BigEndian.Uint16(d[4:]), Seq: p.Seq, Key: c.key,
				Unicast: c.unicast}.Datagram(msg)
			if err != nil {
				t.Fatal(err)
			}
			want := bytes.Clone(d)
			want[10], want[11] = 0, 0
			if !bytes.Equal(got, want) {
				t.Errorf("%s #%d: sealed\n% x, want\n% x", c.file, i, got, want)
			}
			if err := p.Verify(c.key[:len(c.key)-1]+"x", c.unicast); !errors.Is(err, ErrICV) {
				t.Errorf("%s #%d: another key: %v, want ErrICV", c.file, i, err)
			}
			if err := p.Verify(c.key, !c.unicast); !errors.Is(err, ErrICV) {
				t.Errorf("%s #%d: TTL in the ICV or not: %v, want ErrICV", c.file, i, err)
			}
		}
	}
}

// TestMutableFields: TOS, flags/fragment offset and the checksum may
// change on the way; the TTL may if unicast; anything else breaks the ICV.
func TestMutableFields(t *testing.T) {
	for _, unicast := range []bool{false, true} {
		d, err := Seal{Src: src, Dst: peer, ID: 7, Seq: 9, Key: "k", Unicast: unicast}.Datagram([]byte{0x21, 1, 2, 3})
		if err != nil {
			t.Fatal(err)
		}
		for i := range d {
			m := bytes.Clone(d)
			m[i] ^= 0x01
			p, err := Parse(m)
			if err != nil {
				continue // the form is checked: length, protocol, AH fields
			}
			mutable := i == 1 || i == 6 || i == 7 || i == 10 || i == 11 || i == 8 && unicast
			err = p.Verify("k", unicast)
			if mutable && err != nil || !mutable && !errors.Is(err, ErrICV) {
				t.Errorf("unicast %v: byte %d changed: %v", unicast, i, err)
			}
		}
	}
}

func TestSPI(t *testing.T) {
	d, err := Seal{Src: src, Dst: group, ID: 1, Seq: 1, Key: "k"}.Datagram([]byte{0x21})
	if err != nil {
		t.Fatal(err)
	}
	d[ipLen+7] = 9 // another SPI, with an ICV that covers it
	copy(d[ipLen+12:ipLen+headerLen], icv(d, ipLen, []byte("k"), false))
	p, err := Parse(d)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Verify("k", false); !errors.Is(err, ErrSPI) {
		t.Errorf("Verify: %v, want ErrSPI", err)
	}
}

func TestSealErrors(t *testing.T) {
	for _, s := range []Seal{
		{Src: netip.MustParseAddr("2001:db8::1"), Dst: group, ID: 1, Key: "k"},
		{Src: src, Dst: group, ID: 0, Key: "k"},
		{Src: src, Dst: group, ID: 1, Key: "123456789"},
	} {
		if _, err := s.Datagram([]byte{0x21}); !errors.Is(err, ErrFormat) {
			t.Errorf("%+v: %v, want ErrFormat", s, err)
		}
	}
}

func TestParseErrors(t *testing.T) {
	good, err := Seal{Src: src, Dst: group, ID: 1, Seq: 1, Key: "k"}.Datagram(make([]byte, 20))
	if err != nil {
		t.Fatal(err)
	}
	for name, mod := range map[string]func([]byte) []byte{
		"short":          func(d []byte) []byte { return d[:19] },
		"no AH header":   func(d []byte) []byte { d[2], d[3] = 0, 30; return d[:30] },
		"IPv6":           func(d []byte) []byte { d[0] = 0x65; return d },
		"header length":  func(d []byte) []byte { d[0] = 0x44; return d },
		"protocol 112":   func(d []byte) []byte { d[9] = 112; return d },
		"total length":   func(d []byte) []byte { d[3]++; return d },
		"next header":    func(d []byte) []byte { d[ipLen] = 6; return d },
		"payload length": func(d []byte) []byte { d[ipLen+1] = 5; return d },
	} {
		if _, err := Parse(mod(bytes.Clone(good))); !errors.Is(err, ErrFormat) {
			t.Errorf("%s: %v, want ErrFormat", name, err)
		}
	}
	if _, err := Parse(good); err != nil {
		t.Errorf("good: %v", err)
	}
}

// TestOptions: a header with options is covered as it came.
func TestOptions(t *testing.T) {
	d, err := Seal{Src: src, Dst: group, ID: 1, Seq: 1, Key: "k"}.Datagram([]byte{0x21, 1})
	if err != nil {
		t.Fatal(err)
	}
	o := append(append(bytes.Clone(d[:ipLen]), 1, 1, 1, 0), d[ipLen:]...) // four bytes of options
	o[0] = 0x46
	binary.BigEndian.PutUint16(o[2:], uint16(len(o)))
	copy(o[24+12:24+headerLen], icv(o, 24, []byte("k"), false))
	p, err := Parse(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Verify("k", false); err != nil || !bytes.Equal(p.Msg, []byte{0x21, 1}) {
		t.Errorf("Verify: %v, message % x", err, p.Msg)
	}
	o[22] = 2
	if err := p.Verify("k", false); !errors.Is(err, ErrICV) {
		t.Errorf("changed option: %v, want ErrICV", err)
	}
}

// TestSequence: one counter for both directions, as keepalived's.
func TestSequence(t *testing.T) {
	var s Sequence
	if n := s.Next(); n != 1 {
		t.Fatalf("first sent %d, want 1", n)
	}
	for _, c := range []struct {
		seq  uint32
		want bool
	}{{1, false}, {0, false}, {5, true}, {5, false}, {4, false}, {6, true}} {
		if got := s.Accept(c.seq); got != c.want {
			t.Errorf("Accept(%d) = %v, want %v", c.seq, got, c.want)
		}
	}
	if n := s.Next(); n != 7 {
		t.Errorf("sent after hearing 6: %d, want 7", n)
	}
	s.Skip(20)
	if n := s.Next(); n != 22 {
		t.Errorf("sent after skipping past 20: %d, want 22", n)
	}
	s = Sequence{n: lastSeq - 1}
	if a, b := s.Next(), s.Next(); a != lastSeq || b != lastSeq {
		t.Errorf("at the end: %#x %#x, want %#x twice", a, b, uint32(lastSeq))
	}
	s = Sequence{}
	s.Skip(0xffffffff)
	if n := s.Next(); n != lastSeq {
		t.Errorf("sent after skipping past the end: %#x, want %#x", n, uint32(lastSeq))
	}
}

// FuzzParse: Parse and Verify never panic, and what opens reseals to the
// same datagram (mutable fields aside).
func FuzzParse(f *testing.F) {
	for _, name := range []string{"keepalived-ah-multicast.pcap", "keepalived-ah-unicast.pcap"} {
		f.Add(captured(f, name)[0])
	}
	f.Fuzz(func(t *testing.T, d []byte) {
		p, err := Parse(d)
		if err != nil {
			return
		}
		for _, key := range []string{"secret12", "short"} {
			for _, unicast := range []bool{false, true} {
				if p.Verify(key, unicast) != nil || p.ihl != ipLen || p.TTL != ttl {
					continue
				}
				s := Seal{Src: p.Src, Dst: p.Dst, ID: binary.BigEndian.Uint16(d[4:]), Seq: p.Seq, Key: key, Unicast: unicast}
				got, err := s.Datagram(p.Msg)
				if err != nil {
					if s.ID == 0 {
						continue
					}
					t.Fatalf("reseal: %v", err)
				}
				want := bytes.Clone(d)
				want[1], want[6], want[7], want[10], want[11] = tos, 0, 0, 0, 0
				if !bytes.Equal(got, want) {
					t.Fatalf("resealed\n% x, want\n% x", got, want)
				}
			}
		}
	})
}
