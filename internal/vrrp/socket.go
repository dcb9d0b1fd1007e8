package vrrp

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"golang.org/x/net/bpf"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"

	"halb/internal/vrrp/ah"
	"halb/internal/vrrp/packet"
)

// conn is what the runner needs of a VRRP socket: the kernel's (socket),
// or a fake in tests.
type conn interface {
	join(group netip.Addr) error
	send(b []byte, src, dst netip.Addr) error
	read(out chan<- received, done <-chan struct{})
	filter(spec filterSpec) error
	close()
}

// openConn opens a kernel socket.
func openConn(key sockKey) (conn, error) { return openSocket(key.ifname, key.family, key.ah) }

// received is one advert's bytes with what its IP header and ancillary
// data said.
type received struct {
	sock conn
	hdr  packet.Header
	msg  []byte
	// ah is the AH datagram msg came in, not yet verified (nil: plain
	// VRRP).
	ah *ah.Packet
	// drops is how many datagrams the socket had dropped, its receive
	// buffer full, when this one was queued.
	drops uint32
}

// socket is a raw protocol-112 socket bound to one interface and family,
// or (ah) a raw protocol-51 IPv4 socket for VRRPv2 under IPsec AH.
type socket struct {
	ifname string
	ifi    *net.Interface
	family int
	ah     bool
	c      net.PacketConn
	p4     *ipv4.PacketConn
	p6     *ipv6.PacketConn
	joined map[netip.Addr]bool
}

// openSocket opens a raw VRRP socket bound to ifname (SO_BINDTODEVICE),
// sending with TTL/hop limit 255 and receiving the TTL, destination and
// arrival interface of each packet, and the count of packets dropped, in
// a large receive buffer. An AH socket sends and receives whole
// IPv4 datagrams (IP_HDRINCL): the ICV covers the IP header.
func openSocket(ifname string, family int, withAH bool) (*socket, error) {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("open VRRP socket on %s: %w", ifname, err)
	}
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptString(int(fd), unix.SOL_SOCKET, unix.SO_BINDTODEVICE, ifname)
			if serr == nil && withAH {
				serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_HDRINCL, 1)
			}
			if serr == nil {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RXQ_OVFL, 1)
			}
			// Beyond net.core.rmem_max as root; else as much as it allows.
			if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rcvBuf) != nil {
				_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, rcvBuf)
			}
		})
		if err != nil {
			return err
		}
		return serr
	}}
	s := &socket{ifname: ifname, ifi: ifi, family: family, ah: withAH}
	network, laddr := "ip4:112", "0.0.0.0"
	switch {
	case withAH && family != 4:
		return nil, fmt.Errorf("open VRRP socket on %s: AH is IPv4 only", ifname)
	case withAH:
		network = fmt.Sprintf("ip4:%d", ah.Protocol)
	case family == 6:
		network, laddr = "ip6:112", "::"
	}
	s.c, err = lc.ListenPacket(context.Background(), network, laddr)
	if err != nil {
		return nil, fmt.Errorf("open VRRP socket on %s: %w", ifname, err)
	}
	if family == 4 {
		s.p4 = ipv4.NewPacketConn(s.c)
		err = firstErr(
			s.p4.SetControlMessage(ipv4.FlagTTL|ipv4.FlagDst|ipv4.FlagInterface, true),
			s.p4.SetMulticastInterface(ifi),
			s.p4.SetMulticastTTL(255),
			s.p4.SetTTL(255),
			s.p4.SetMulticastLoopback(false),
		)
	} else {
		s.p6 = ipv6.NewPacketConn(s.c)
		err = firstErr(
			s.p6.SetControlMessage(ipv6.FlagHopLimit|ipv6.FlagDst|ipv6.FlagInterface, true),
			s.p6.SetMulticastInterface(ifi),
			s.p6.SetMulticastHopLimit(255),
			s.p6.SetHopLimit(255),
			s.p6.SetMulticastLoopback(false),
		)
	}
	if err != nil {
		s.c.Close()
		return nil, fmt.Errorf("set up VRRP socket on %s: %w", ifname, err)
	}
	return s, nil
}

func firstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

// join subscribes the socket to a VRRP group of its family on its
// interface (only there).
func (s *socket) join(group netip.Addr) error {
	if s.joined[group] {
		return nil
	}
	var err error
	if s.family == 4 {
		err = s.p4.JoinGroup(s.ifi, &net.IPAddr{IP: group.AsSlice()})
	} else {
		err = s.p6.JoinGroup(s.ifi, &net.IPAddr{IP: group.AsSlice()})
	}
	if err != nil {
		return fmt.Errorf("join VRRP group %s on %s: %w", group, s.ifname, err)
	}
	if s.joined == nil {
		s.joined = map[netip.Addr]bool{}
	}
	s.joined[group] = true
	return nil
}

// send writes one advert from src to dst out of the socket's interface;
// on an AH socket b is the whole datagram.
func (s *socket) send(b []byte, src, dst netip.Addr) error {
	var err error
	switch {
	case s.ah:
		_, err = s.c.WriteTo(b, &net.IPAddr{IP: dst.AsSlice()})
	case s.family == 4:
		_, err = s.p4.WriteTo(b, &ipv4.ControlMessage{IfIndex: s.ifi.Index, Src: src.AsSlice()}, &net.IPAddr{IP: dst.AsSlice()})
	default:
		_, err = s.p6.WriteTo(b, &ipv6.ControlMessage{IfIndex: s.ifi.Index, Src: src.AsSlice(), HopLimit: 255},
			&net.IPAddr{IP: dst.AsSlice(), Zone: s.ifname})
	}
	if err != nil {
		return fmt.Errorf("send advert on %s to %s: %w", s.ifname, dst, err)
	}
	return nil
}

// readBatch is how many datagrams one read may return (recvmmsg).
const readBatch = 32

// rcvBuf is the socket's receive buffer: room for a burst of junk that
// would otherwise crowd out the peers' adverts.
const rcvBuf = 4 << 20

// read delivers the adverts that arrive on the socket's own interface,
// read in batches, until the socket is closed.
func (s *socket) read(out chan<- received, done <-chan struct{}) {
	ms := make([]ipv4.Message, readBatch) // = ipv6.Message
	oobLen := unix.CmsgSpace(4)           // SO_RXQ_OVFL
	if s.family == 4 {
		oobLen += len(ipv4.NewControlMessage(ipv4.FlagTTL | ipv4.FlagDst | ipv4.FlagInterface))
	} else {
		oobLen += len(ipv6.NewControlMessage(ipv6.FlagHopLimit | ipv6.FlagDst | ipv6.FlagInterface))
	}
	for i := range ms {
		ms[i].Buffers = [][]byte{make([]byte, 1500)}
		ms[i].OOB = make([]byte, oobLen)
	}
	for {
		var n int
		var err error
		if s.family == 4 {
			n, err = s.p4.ReadBatch(ms, 0)
		} else {
			n, err = s.p6.ReadBatch(ms, 0)
		}
		if err != nil {
			return // closed
		}
		for _, m := range ms[:n] {
			p, ok := s.parse(m)
			if !ok {
				continue
			}
			select {
			case out <- p:
			case <-done:
				return
			}
		}
	}
}

// parse makes a received advert of a datagram read, false if it did not
// arrive on the socket's interface or is no advert. An IPv4 datagram
// comes with its IP header; an IPv6 one without.
func (s *socket) parse(m ipv4.Message) (received, bool) {
	b, oob := m.Buffers[0][:m.N], m.OOB[:m.NN]
	p := received{sock: s, drops: rxqDrops(oob)}
	var ifindex int
	if s.family == 4 {
		var cm ipv4.ControlMessage
		if cm.Parse(oob) != nil {
			return p, false
		}
		ifindex, p.hdr.TTL = cm.IfIndex, cm.TTL
		p.hdr.Dst, _ = netip.AddrFromSlice(cm.Dst.To4())
	} else {
		var cm ipv6.ControlMessage
		if cm.Parse(oob) != nil {
			return p, false
		}
		ifindex, p.hdr.TTL = cm.IfIndex, cm.HopLimit
		p.hdr.Dst, _ = netip.AddrFromSlice(cm.Dst)
	}
	p.hdr.Src = addrOf(m.Addr)
	if ifindex != s.ifi.Index || !p.hdr.Src.IsValid() {
		return p, false
	}
	switch {
	case s.ah:
		a, err := ah.Parse(bytes.Clone(b))
		if err != nil {
			return p, false // not a VRRP advert under AH
		}
		p.hdr, p.msg, p.ah = packet.Header{Src: a.Src, Dst: a.Dst, TTL: a.TTL}, a.Msg, a
	case s.family == 4:
		if len(b) < 20 || len(b) < int(b[0]&0x0f)*4 {
			return p, false
		}
		p.msg = bytes.Clone(b[int(b[0]&0x0f)*4:])
	default:
		p.msg = bytes.Clone(b)
	}
	return p, true
}

// rxqDrops is the socket's count of datagrams the kernel dropped (its
// receive buffer full) that SO_RXQ_OVFL adds to a datagram's control
// messages, 0 if there is none.
func rxqDrops(oob []byte) uint32 {
	cms, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return 0
	}
	for _, cm := range cms {
		if cm.Header.Level == unix.SOL_SOCKET && cm.Header.Type == unix.SO_RXQ_OVFL && len(cm.Data) >= 4 {
			return binary.NativeEndian.Uint32(cm.Data)
		}
	}
	return 0
}

// filter attaches a kernel filter that lets through only adverts spec
// can use.
func (s *socket) filter(spec filterSpec) error {
	prog, err := filterProgram(s.family, s.ah, spec)
	if err == nil {
		var raw []bpf.RawInstruction
		if raw, err = bpf.Assemble(prog); err == nil {
			if s.family == 4 {
				err = s.p4.SetBPF(raw)
			} else {
				err = s.p6.SetBPF(raw)
			}
		}
	}
	if err != nil {
		return fmt.Errorf("filter the VRRP socket on %s: %w", s.ifname, err)
	}
	return nil
}

func addrOf(a net.Addr) netip.Addr {
	ip, ok := a.(*net.IPAddr)
	if !ok {
		return netip.Addr{}
	}
	ad, _ := netip.AddrFromSlice(ip.IP)
	return ad.Unmap()
}

// close closes the socket on the way out; what failed was reported by the
// reads and writes before it.
func (s *socket) close() { _ = s.c.Close() }
