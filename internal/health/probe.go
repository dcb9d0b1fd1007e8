package health

import (
	"context"
	"fmt"
)

// newProber builds the prober of a spec.
func newProber(spec probeSpec, env netEnv) prober {
	switch spec.check.Type {
	case "tcp":
		return newTCPProber(spec, env)
	case "http", "https":
		return newHTTPProber(spec, env)
	case "tls":
		return newTLSProber(spec, env)
	case "smtp":
		return newSMTPProber(spec, env)
	case "dns":
		return newDNSProber(spec, env)
	case "udp":
		return onGoroutine{udpProber{spec: spec, net: env}}
	case "ping":
		return newPingProber(spec, env)
	case "exec":
		return newExecProber(spec, env)
	}
	return brokenProber(fmt.Sprintf("check type %q is not supported", spec.check.Type))
}

// brokenProber fails every check with the reason it could not be built
// (a CA file that does not load, an unknown user…).
type brokenProber string

func (b brokenProber) start(_ context.Context, done func(Result)) { done(fail("%s", string(b))) }
