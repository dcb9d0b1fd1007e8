package health

import (
	"context"
	"time"
)

// tcpProber passes when a TCP connection is accepted. It runs on the
// connector's loop, without a goroutine of its own.
type tcpProber struct {
	spec probeSpec
	net  netEnv
}

func (p tcpProber) start(ctx context.Context, done func(Result)) {
	c, err := p.net.tcp.get()
	if err != nil {
		done(fail("TCP %s: %v", p.spec.target, err))
		return
	}
	begin := time.Now()
	c.start(ctx, p.net, p.spec.check, p.spec.target, func(err error) {
		if err != nil {
			done(fail("TCP %s: %s", p.spec.target, errText("connect", err, p.spec.check.Timeout.D())))
			return
		}
		r := pass("TCP connect to %s", p.spec.target)
		r.Latency = time.Since(begin)
		done(r)
	})
}
