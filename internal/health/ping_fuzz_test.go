package health

import (
	"testing"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// quotedEcho is the packet an ICMP error quotes: an IP header (20 bytes
// for IPv4 with its length in the first byte, 40 for IPv6) and the start
// of our echo request.
func quotedEcho(t testing.TB, v6 bool, id, seq int) []byte {
	t.Helper()
	var typ icmp.Type = ipv4.ICMPTypeEcho
	hdr := append([]byte{0x45}, make([]byte, 19)...)
	if v6 {
		typ, hdr = ipv6.ICMPTypeEchoRequest, append([]byte{0x60}, make([]byte, 39)...)
	}
	b, err := (&icmp.Message{Type: typ, Body: &icmp.Echo{ID: id, Seq: seq, Data: []byte("halb health check")}}).Marshal(nil)
	if err != nil {
		t.Fatal(err)
	}
	return append(hdr, b[:8]...) // errors quote 8 bytes of the datagram
}

// FuzzEchoed: our echo request, quoted in an ICMP error, is recognised
// by its id and sequence (and another's is not); any quote is read
// without a panic.
func FuzzEchoed(f *testing.F) {
	f.Add(quotedEcho(f, false, 7, 1), false, 7, 1)
	f.Add(quotedEcho(f, true, 7, 1), true, 7, 1)
	f.Add([]byte{0x4f}, false, 0, 0)
	f.Fuzz(func(t *testing.T, raw []byte, v6 bool, id, seq int) {
		proto := 1
		if v6 {
			proto = 58
		}
		_ = echoed(raw, proto, id, seq)
		id, seq = id&0xffff, seq&0xffff
		q := quotedEcho(t, v6, id, seq)
		if !echoed(q, proto, id, seq) {
			t.Errorf("our echo %d/%d not recognised in %x", id, seq, q)
		}
		if echoed(q, proto, id^1, seq) || echoed(q, proto, id, seq^1) {
			t.Errorf("echo %d/%d taken for another's", id, seq)
		}
	})
}
