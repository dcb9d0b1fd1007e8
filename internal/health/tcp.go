package health

import (
	"context"
	"time"
)

// tcpProber passes when the server answers the TCP handshake; the
// connection is reset before it completes (see newSocket). It runs
// on the connector's loop, which keeps its timeout.
type tcpProber struct {
	spec     probeSpec
	net      netEnv
	passText string
	done     func(Result) // of the check in flight
}

func newTCPProber(spec probeSpec, env netEnv) *tcpProber {
	return &tcpProber{spec: spec, net: env, passText: "TCP connect to " + spec.target.String()}
}

func (p *tcpProber) start(_ context.Context, done func(Result)) {
	c, err := p.net.tcp.get()
	if err != nil {
		done(fail("TCP %s: %v", p.spec.target, err))
		return
	}
	p.done = done
	c.start(p.net, p.spec.check, p.spec.target, p)
}

func (p *tcpProber) request() []byte { return nil }

func (p *tcpProber) received([]byte, bool) bool { return true }

func (p *tcpProber) finish(err error, _ phase, latency time.Duration) {
	r := Result{OK: true, Detail: p.passText, Weight: -1}
	if err != nil {
		r = fail("TCP %s: %s", p.spec.target, errText("connect", err, p.spec.check.Timeout.D()))
	}
	r.Latency = latency
	p.done(r)
}
