package health

import "context"

// tcpProber passes when a TCP connection is accepted.
type tcpProber struct {
	spec probeSpec
	net  netEnv
}

func (p tcpProber) probe(ctx context.Context) Result {
	c, err := p.net.tcp.get()
	if err != nil {
		return fail("TCP %s: %v", p.spec.target, err)
	}
	if err := c.connect(ctx, p.net, p.spec.check, p.spec.target); err != nil {
		return fail("TCP %s: %s", p.spec.target, errText("connect", err, p.spec.check.Timeout.D()))
	}
	return pass("TCP connect to %s", p.spec.target)
}
