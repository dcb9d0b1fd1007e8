package vrrp

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"syscall"

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
// arrival interface of each packet. An AH socket sends and receives whole
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

// read delivers the adverts that arrive on the socket's own interface
// until the socket is closed.
func (s *socket) read(out chan<- received, done <-chan struct{}) {
	if s.ah {
		s.readAH(out, done)
		return
	}
	buf := make([]byte, 1500)
	for {
		var (
			n       int
			ifindex int
			h       packet.Header
			err     error
		)
		if s.family == 4 {
			var cm *ipv4.ControlMessage
			var src net.Addr
			n, cm, src, err = s.p4.ReadFrom(buf)
			if err == nil && cm != nil {
				ifindex, h.TTL = cm.IfIndex, cm.TTL
				h.Dst, _ = netip.AddrFromSlice(cm.Dst.To4())
				h.Src = addrOf(src)
			}
		} else {
			var cm *ipv6.ControlMessage
			var src net.Addr
			n, cm, src, err = s.p6.ReadFrom(buf)
			if err == nil && cm != nil {
				ifindex, h.TTL = cm.IfIndex, cm.HopLimit
				h.Dst, _ = netip.AddrFromSlice(cm.Dst)
				h.Src = addrOf(src)
			}
		}
		if err != nil {
			return // closed
		}
		if ifindex != s.ifi.Index || !h.Src.IsValid() {
			continue
		}
		msg := make([]byte, n)
		copy(msg, buf[:n])
		select {
		case out <- received{sock: s, hdr: h, msg: msg}:
		case <-done:
			return
		}
	}
}

// readAH delivers the VRRP adverts under AH, whole datagrams parsed (not
// verified: that needs the instance's key), that arrive on the socket's
// own interface until the socket is closed.
func (s *socket) readAH(out chan<- received, done <-chan struct{}) {
	ic, ok := s.c.(*net.IPConn)
	if !ok {
		return
	}
	buf := make([]byte, 1500)
	oob := ipv4.NewControlMessage(ipv4.FlagTTL | ipv4.FlagDst | ipv4.FlagInterface)
	for {
		// ReadMsgIP, unlike ReadFrom, leaves the IP header in.
		n, oobn, _, _, err := ic.ReadMsgIP(buf, oob)
		if err != nil {
			return // closed
		}
		var cm ipv4.ControlMessage
		if cm.Parse(oob[:oobn]) != nil || cm.IfIndex != s.ifi.Index {
			continue
		}
		p, err := ah.Parse(bytes.Clone(buf[:n]))
		if err != nil {
			continue // not a VRRP advert under AH
		}
		select {
		case out <- received{sock: s, hdr: packet.Header{Src: p.Src, Dst: p.Dst, TTL: p.TTL}, msg: p.Msg, ah: p}:
		case <-done:
			return
		}
	}
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
