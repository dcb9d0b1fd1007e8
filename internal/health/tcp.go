package health

import "context"

// tcpProber passes when a TCP connection is accepted.
type tcpProber struct {
	spec probeSpec
	net  netEnv
}

func (p tcpProber) probe(ctx context.Context) Result {
	conn, err := p.net.dial(ctx, p.spec.check, "tcp", p.spec.target.String())
	if err != nil {
		return fail("TCP %s: %s", p.spec.target, errText("connect", err, p.spec.check.Timeout.D()))
	}
	conn.Close()
	return pass("TCP connect to %s", p.spec.target)
}
