package api

import (
	"context"
	"net/netip"

	"halb/internal/engine"
	"halb/internal/event"
)

// EngineStatus serves the status of the engine whose snapshots status
// reads.
func EngineStatus(status func(context.Context) (engine.Status, error)) StatusFunc {
	return func(ctx context.Context) (Status, error) {
		st, err := status(ctx)
		if err != nil {
			return Status{}, err
		}
		return FromEngine(st), nil
	}
}

// FromEngine renders an engine snapshot as the status document. Lists are
// never null in it.
func FromEngine(s engine.Status) Status {
	st := Status{SchemaVersion: event.SchemaVersion, Node: s.Node, Version: s.Version, Dataplane: s.Dataplane, Config: s.Config,
		Started: s.Started, Reloaded: s.Reloaded, Events: append([]event.Record{}, s.Events...),
		VRRP:     make([]Instance, 0, len(s.VRRP)),
		Services: make([]Service, 0, len(s.Services)),
		Pools:    make([]Pool, 0, len(s.Pools)),
		LastReconcile: Reconcile{At: s.LastReconcile.At, Changes: s.LastReconcile.Changes,
			Error: s.LastReconcile.Error},
		LastReload: Reload{At: s.Reloaded, Applied: true, Errors: []string{}},
	}
	for _, in := range s.VRRP {
		ai := Instance{Name: in.Name, Interface: in.Interface, VRID: in.VRID, State: in.State,
			Priority: in.Priority, EffectivePriority: in.EffectivePriority, Master: addr(in.Master),
			Since: in.Since, Reason: in.Reason, VIPs: make([]string, 0, len(in.VIPs))}
		for _, v := range in.VIPs {
			ai.VIPs = append(ai.VIPs, v.String())
		}
		st.VRRP = append(st.VRRP, ai)
	}
	for _, svc := range s.Services {
		as := Service{Name: svc.Name, Protocol: svc.Protocol, VIP: addr(svc.VIP), Family: svc.Family,
			Port: svc.Port, PortEnd: svc.PortEnd, Mark: svc.Mark, Scheduler: svc.Scheduler, Forward: svc.Forward,
			Pool: svc.Pool, Servers: make([]Server, 0, len(svc.Servers))}
		for _, srv := range svc.Servers {
			as.Servers = append(as.Servers, Server{Address: srv.Address.String(), Port: srv.Port, Weight: srv.Weight,
				EffectiveWeight: srv.EffectiveWeight, Healthy: srv.Healthy, Reason: srv.Reason,
				LastChange: srv.LastChange, LatencyMS: float64(srv.Latency.Microseconds()) / 1000,
				OnFailure: srv.OnFailure, MaxConnections: srv.MaxConnections, MinConnections: srv.MinConnections, Checks: srv.Checks})
		}
		st.Services = append(st.Services, as)
	}
	for _, p := range s.Pools {
		st.Pools = append(st.Pools, Pool{Name: p.Name, Quorum: p.Quorum, HealthyWeight: p.HealthyWeight,
			QuorumUp: p.QuorumUp, SorryActive: p.SorryActive})
	}
	return st
}

// addr is a's text, "" for the zero address.
func addr(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}
