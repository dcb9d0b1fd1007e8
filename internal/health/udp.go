package health

import (
	"bytes"
	"context"
	"errors"
	"syscall"
)

// udpProber sends the payload and wants a reply containing expect_reply,
// or (no_icmp_unreachable) no ICMP port unreachable within the timeout,
// or else any reply. A server rate-limits its ICMP errors (Linux: one a
// second per peer by default), so no_icmp_unreachable can pass for a dead
// port when several checks hit one host within a second.
type udpProber struct {
	spec probeSpec
	net  netEnv
}

func (p udpProber) probe(ctx context.Context) Result {
	ch, target := p.spec.check, p.spec.target
	timeout := ch.Timeout.D()
	conn, err := p.net.dial(ctx, ch, "udp", target.String())
	if err != nil {
		return fail("UDP %s: %s", target, errText("socket", err, timeout))
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(ch.Payload)); err != nil {
		return p.readErr(err)
	}
	buf := make([]byte, 2048)
	n, err := conn.Read(buf)
	if err != nil {
		return p.readErr(err)
	}
	reply := buf[:n]
	if ch.ExpectReply != "" && !bytes.Contains(reply, []byte(ch.ExpectReply)) {
		return fail("UDP %s: reply %q does not contain %q", target, truncate(string(reply), 64), ch.ExpectReply)
	}
	return pass("UDP %s: reply of %d bytes", target, n)
}

func (p udpProber) readErr(err error) Result {
	ch, target := p.spec.check, p.spec.target
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return fail("UDP %s: ICMP port unreachable", target)
	case ch.NoICMPUnreach && isTimeout(err):
		return pass("UDP %s: no ICMP unreachable within %s", target, ch.Timeout.D())
	case isTimeout(err):
		return fail("UDP %s: no reply within %s", target, ch.Timeout.D())
	}
	return fail("UDP %s: %s", target, errText("exchange", err, ch.Timeout.D()))
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
