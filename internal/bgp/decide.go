package bgp

import "net/netip"

// Reason says why a VIP is announced or withdrawn.
type Reason string

// Reasons, in the order Decide checks them: the first that applies wins.
const (
	ReasonStopping      Reason = "stopping"       // the daemon is shutting down
	ReasonDraining      Reason = "draining"       // an operator drained the node
	ReasonNotProgrammed Reason = "not_programmed" // the data plane's last reconcile failed or has not run
	ReasonNoService     Reason = "no_service"     // no service uses the VIP
	ReasonHealthPending Reason = "health_pending" // quorum rests on the initial state: checks have not confirmed it
	ReasonNoQuorum      Reason = "no_quorum"      // no service on the VIP has quorum
	ReasonReady         Reason = "ready"          // announced: the node can serve the VIP
)

// ReasonRemoved: a reload removed the VIP from the announce lists (Node
// reports it; Decide never returns it).
const ReasonRemoved Reason = "removed"

// Readiness is what the node knows about its ability to serve VIPs.
type Readiness struct {
	// Programmed: the data plane's last reconcile succeeded.
	Programmed bool
	Draining   bool
	Stopping   bool
	// Services maps each VIP to the services on it, and whether each has
	// quorum (its healthy servers' weights reach the pool's quorum).
	Services map[netip.Addr][]ServiceQuorum
}

// ServiceQuorum is one service's quorum state.
type ServiceQuorum struct {
	Name   string
	Quorum bool
	// Pending: some server of its pool has no check result yet, so its
	// quorum is the initial state's. Every node must see the same
	// servers up before it announces, or the nodes would send a flow to
	// different backends.
	Pending bool
}

// Decision is whether to announce one VIP, and why.
type Decision struct {
	VIP      netip.Addr
	Announce bool
	Reason   Reason
}

// Decide returns, for each VIP in order, whether the node announces it: only
// while it is neither stopping nor draining, its data plane is programmed,
// and at least one service on the VIP has quorum that its health checks
// have confirmed.
func Decide(vips []netip.Addr, r Readiness) []Decision {
	out := make([]Decision, len(vips))
	for i, vip := range vips {
		reason := decide(vip, r)
		out[i] = Decision{VIP: vip, Announce: reason == ReasonReady, Reason: reason}
	}
	return out
}

func decide(vip netip.Addr, r Readiness) Reason {
	switch {
	case r.Stopping:
		return ReasonStopping
	case r.Draining:
		return ReasonDraining
	case !r.Programmed:
		return ReasonNotProgrammed
	}
	svcs := r.Services[vip]
	if len(svcs) == 0 {
		return ReasonNoService
	}
	pending := false
	for _, s := range svcs {
		if s.Quorum && !s.Pending {
			return ReasonReady
		}
		pending = pending || s.Quorum
	}
	if pending {
		return ReasonHealthPending
	}
	return ReasonNoQuorum
}
