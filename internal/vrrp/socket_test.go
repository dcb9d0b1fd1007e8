package vrrp

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"slices"
	"testing"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"

	"halb/internal/vrrp/ah"
)

// ipv4OOB is the control messages of an IPv4 datagram that arrived on
// interface ifindex for dst with ttl.
func ipv4OOB(t *testing.T, ifindex int, dst netip.Addr, ttl int) []byte {
	t.Helper()
	var info bytes.Buffer
	if err := binary.Write(&info, binary.NativeEndian, unix.Inet4Pktinfo{Ifindex: int32(ifindex), Addr: dst.As4()}); err != nil {
		t.Fatal(err)
	}
	return append(cmsg(t, unix.IPPROTO_IP, unix.IP_TTL, binary.NativeEndian.AppendUint32(nil, uint32(ttl))),
		cmsg(t, unix.IPPROTO_IP, unix.IP_PKTINFO, info.Bytes())...)
}

func TestSocketParse(t *testing.T) {
	s := &socket{family: 4, ifi: &net.Interface{Index: 3}}
	msg := advertBytes(t, 3, 9, filterGroup)
	read := func(d, oob []byte) ipv4.Message {
		return ipv4.Message{Buffers: [][]byte{d}, OOB: oob, N: len(d), NN: len(oob), Addr: &net.IPAddr{IP: filterSrc.AsSlice()}}
	}
	oob := append(ipv4OOB(t, 3, filterGroup, 255), cmsg(t, unix.SOL_SOCKET, unix.SO_RXQ_OVFL, binary.NativeEndian.AppendUint32(nil, 4))...)
	p, ok := s.parse(read(ipv4Datagram(msg, 255, filterGroup, 1), oob))
	if !ok || !bytes.Equal(p.msg, msg) || p.hdr.Src != filterSrc || p.hdr.Dst != filterGroup || p.hdr.TTL != 255 || p.drops != 4 || p.ah != nil {
		t.Fatalf("parsed %+v, %v", p, ok)
	}
	if _, ok := s.parse(read(ipv4Datagram(msg, 255, filterGroup, 0), ipv4OOB(t, 4, filterGroup, 255))); ok {
		t.Error("a datagram from another interface parsed")
	}
	if _, ok := s.parse(read(ipv4Datagram(msg, 255, filterGroup, 0)[:12], ipv4OOB(t, 3, filterGroup, 255))); ok {
		t.Error("a datagram cut short parsed")
	}

	s.ah = true
	v2 := advertBytes(t, 2, 9, filterGroup)
	d, err := ah.Seal{Src: filterSrc, Dst: filterGroup, ID: 1, Seq: 7, Key: "secret"}.Datagram(v2)
	if err != nil {
		t.Fatal(err)
	}
	p, ok = s.parse(read(d, ipv4OOB(t, 3, filterGroup, 255)))
	if !ok || p.ah == nil || p.ah.Seq != 7 || !bytes.Equal(p.msg, v2) || p.hdr.TTL != 255 || p.hdr.Dst != filterGroup {
		t.Fatalf("parsed under AH %+v, %v", p, ok)
	}
	if _, ok := s.parse(read(ipv4Datagram(v2, 255, filterGroup, 0), ipv4OOB(t, 3, filterGroup, 255))); ok {
		t.Error("plain VRRP parsed on an AH socket")
	}
}

// cmsg is one control message as the kernel lays it out.
func cmsg(t *testing.T, level, typ int32, data []byte) []byte {
	t.Helper()
	h := unix.Cmsghdr{Level: level, Type: typ}
	h.SetLen(unix.CmsgLen(len(data)))
	var b bytes.Buffer
	if err := binary.Write(&b, binary.NativeEndian, h); err != nil {
		t.Fatal(err)
	}
	out := make([]byte, unix.CmsgSpace(len(data)))
	copy(out, b.Bytes())
	copy(out[unix.CmsgLen(0):], data)
	return out
}

func TestRXQDrops(t *testing.T) {
	ttl := cmsg(t, unix.IPPROTO_IP, unix.IP_TTL, binary.NativeEndian.AppendUint32(nil, 255))
	drops := cmsg(t, unix.SOL_SOCKET, unix.SO_RXQ_OVFL, binary.NativeEndian.AppendUint32(nil, 7))
	for _, c := range []struct {
		oob  []byte
		want uint32
	}{
		{nil, 0},
		{ttl, 0},
		{append(slices.Clone(ttl), drops...), 7},
	} {
		if got := rxqDrops(c.oob); got != c.want {
			t.Errorf("rxqDrops(%x) = %d, want %d", c.oob, got, c.want)
		}
	}
}
