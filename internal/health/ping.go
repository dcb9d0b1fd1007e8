package health

import (
	"context"
	"math/rand/v2"
	"net"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// pingProber sends one ICMP echo request on a raw socket (halb runs with
// CAP_NET_RAW) and waits for the matching reply.
type pingProber struct {
	spec probeSpec
	net  netEnv
	id   int
	seq  *int
}

func newPingProber(spec probeSpec, env netEnv) prober {
	return onGoroutine{pingProber{spec: spec, net: env, id: int(rand.Uint32() & 0xffff), seq: new(int)}}
}

func (p pingProber) probe(ctx context.Context) Result {
	ch := p.spec.check
	dst := p.spec.target.Addr()
	timeout := ch.Timeout.D()
	network, proto := "ip4:icmp", 1
	var echo, reply icmp.Type = ipv4.ICMPTypeEcho, ipv4.ICMPTypeEchoReply
	if dst.Is6() && !dst.Is4In6() {
		network, proto = "ip6:ipv6-icmp", 58
		echo, reply = ipv6.ICMPTypeEchoRequest, ipv6.ICMPTypeEchoReply
	}
	lc := net.ListenConfig{}
	d := dialer(ch, "ip")
	lc.Control = d.Control
	src := ""
	if d.LocalAddr != nil {
		src = d.LocalAddr.(*net.TCPAddr).IP.String()
	}
	var conn net.PacketConn
	err := p.net.hook(func() error {
		var err error
		conn, err = lc.ListenPacket(ctx, network, src)
		return err
	})
	if err != nil {
		return fail("ping %s: %s", dst, errText("socket", err, timeout))
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		if err := conn.SetDeadline(dl); err != nil {
			return fail("ping %s: setting deadline: %v", dst, err)
		}
	}
	*p.seq = (*p.seq + 1) & 0xffff
	seq := *p.seq
	msg := icmp.Message{Type: echo, Body: &icmp.Echo{ID: p.id, Seq: seq, Data: []byte("halb health check")}}
	wire, err := msg.Marshal(nil)
	if err != nil {
		return fail("ping %s: %v", dst, err)
	}
	start := p.net.clock.Now()
	if _, err := conn.WriteTo(wire, &net.IPAddr{IP: dst.AsSlice(), Zone: dst.Zone()}); err != nil {
		return fail("ping %s: %s", dst, errText("send", err, timeout))
	}
	buf := make([]byte, 1500)
	for {
		n, from, err := conn.ReadFrom(buf)
		if err != nil {
			if isTimeout(err) {
				return fail("ping %s: no echo reply within %s", dst, timeout)
			}
			return fail("ping %s: %s", dst, errText("receive", err, timeout))
		}
		m, err := icmp.ParseMessage(proto, buf[:n])
		if err != nil {
			continue
		}
		fromIP, _ := from.(*net.IPAddr)
		switch body := m.Body.(type) {
		case *icmp.Echo:
			if m.Type == reply && body.ID == p.id && body.Seq == seq && fromIP != nil && fromIP.IP.Equal(dst.AsSlice()) {
				r := pass("ping %s: echo reply", dst)
				r.Latency = p.net.clock.Now().Sub(start)
				return r
			}
		case *icmp.DstUnreach:
			if echoed(body.Data, proto, p.id, seq) {
				return fail("ping %s: destination unreachable (from %s)", dst, from)
			}
		}
	}
}

// echoed reports whether the packet quoted in an ICMP error is our
// echo request.
func echoed(quoted []byte, proto, id, seq int) bool {
	hdr := 40
	if proto == 1 {
		if len(quoted) < 1 {
			return false
		}
		hdr = int(quoted[0]&0x0f) * 4
	}
	if len(quoted) < hdr+8 {
		return false
	}
	m, err := icmp.ParseMessage(proto, quoted[hdr:])
	if err != nil {
		return false
	}
	e, ok := m.Body.(*icmp.Echo)
	return ok && e.ID == id && e.Seq == seq
}
