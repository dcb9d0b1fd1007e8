package engine

import (
	"fmt"
	"net/netip"
	"sort"
	"time"

	"halb/internal/config"
	"halb/internal/event"
	"halb/internal/vrrp/fsm"
)

// Status is a snapshot of the running state.
type Status struct {
	Node, Version, Dataplane string
	Config                   string // the configuration file
	Started, Reloaded        time.Time
	VRRP                     []InstanceState
	Services                 []ServiceState
	Pools                    []PoolState
	// LastReconcile is the last attempt to bring the data plane to the
	// desired state.
	LastReconcile Reconcile
	// Events are the most recent events, oldest first.
	Events []event.Record
}

// InstanceState is one VRRP instance as this node sees it.
type InstanceState struct {
	Name, Interface             string
	VRID                        int
	State                       string
	Priority, EffectivePriority int
	Master                      netip.Addr // zero: not known
	Since                       time.Time
	Reason                      string
	VIPs                        []netip.Prefix
}

// ServiceState is one (service, VIP, port item) of the configuration.
type ServiceState struct {
	Name, Protocol     string
	VIP                netip.Addr // zero: a mark service without VIPs
	Family             int
	Port, PortEnd      uint16 // PortEnd: 0 unless a port range
	Mark               uint32
	Scheduler, Forward string
	Pool               string
	Servers            []ServerState
}

// ServerState is a real server of a service, with its health.
type ServerState struct {
	Address netip.Addr
	Port    uint16
	Weight  int
	ServerStatus
	LastChange time.Time     // zero: the health never changed
	Latency    time.Duration // of the last check
	// OnFailure is what becomes of the server when it fails (inhibit or
	// remove), its own or the pool's.
	OnFailure string
	// MaxConnections and MinConnections are its connection thresholds
	// (0: none).
	MaxConnections, MinConnections uint32
	// Checks names the checks the server runs ("http:8080") when it has
	// its own, not the pool's.
	Checks []string
}

// PoolState is the quorum state of one pool.
type PoolState struct {
	Name                  string
	Quorum, HealthyWeight int
	QuorumUp, SorryActive bool
}

// Reconcile is the outcome of a data plane update.
type Reconcile struct {
	At      time.Time
	Changes int
	Error   string
}

// status renders the running state as the status document.
func (e *Engine) status() Status {
	cfg := e.cfg
	st := Status{
		Node: cfg.Node, Version: e.version, Dataplane: e.dpName, Config: cfg.File,
		Started: e.started, Reloaded: e.reloaded, LastReconcile: e.last, Events: e.recent(20),
	}
	for _, in := range cfg.VRRP.Instances {
		ai := InstanceState{Name: in.Name, Interface: in.Interface, VRID: in.VRID, State: fsm.Init.String(),
			Priority: in.Priority, EffectivePriority: in.Priority, Since: e.started, VIPs: in.VIPs}
		if ev, ok := e.vrrp[in.Name]; ok {
			ai.State, ai.EffectivePriority, ai.Since, ai.Reason, ai.Master = ev.New, ev.EffectivePriority, ev.At, ev.Reason, ev.Master
		}
		st.VRRP = append(st.VRRP, ai)
	}
	for _, s := range cfg.Services {
		st.Services = append(st.Services, e.serviceStatus(s)...)
	}
	names := make([]string, 0, len(cfg.Pools))
	for name := range cfg.Pools {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		ps := e.eval.Pools[name]
		st.Pools = append(st.Pools, PoolState{Name: name, Quorum: cfg.Pools[name].Quorum,
			HealthyWeight: ps.HealthyWeight, QuorumUp: ps.QuorumUp, SorryActive: ps.SorryActive})
	}
	return st
}

// serviceStatus gives one entry per (VIP, port item) of a service.
func (e *Engine) serviceStatus(s config.Service) []ServiceState {
	pool := e.cfg.Pools[s.Pool]
	var out []ServiceState
	if len(s.VIPs) == 0 { // an external mark: rules outside halb pick its packets
		for _, fam := range poolFamilies(pool) {
			as := ServiceState{Name: s.Name, Protocol: s.Protocol, Family: fam, Mark: s.Mark.Value,
				Scheduler: s.Scheduler, Forward: s.Forward, Pool: s.Pool}
			for i, srv := range pool.Servers {
				if family(srv.Address) == fam {
					as.Servers = append(as.Servers, e.serverStatus(pool.Name, i, srv))
				}
			}
			out = append(out, as)
		}
		return out
	}
	for _, vip := range s.VIPs {
		mark := uint32(0)
		switch s.Mark.Mode {
		case config.MarkShared:
			mark = config.DeriveMark(s.Name, netip.Addr{})
		case config.MarkPerVIP:
			mark = config.DeriveMark(s.Name, vip)
		case config.MarkExternal:
			mark = s.Mark.Value
		}
		for _, p := range s.Ports {
			as := ServiceState{Name: s.Name, Protocol: s.Protocol, VIP: vip, Family: family(vip), Port: p.Lo, Mark: mark,
				Scheduler: s.Scheduler, Forward: s.Forward, Pool: s.Pool}
			if !p.Single() {
				as.PortEnd = p.Hi
			}
			for i, srv := range pool.Servers {
				if srv.Address.Is4() != vip.Is4() {
					continue
				}
				as.Servers = append(as.Servers, e.serverStatus(pool.Name, i, srv))
			}
			out = append(out, as)
		}
	}
	return out
}

// serverStatus reports the i-th server of a pool.
func (e *Engine) serverStatus(pool string, i int, srv config.Server) ServerState {
	p := e.cfg.Pools[pool]
	ref := ServerRef{Pool: pool, Addr: srv.Address, Port: srv.Port}
	var ss ServerStatus
	if servers := e.eval.Pools[pool].Servers; i < len(servers) {
		ss = servers[i]
	}
	out := ServerState{Address: srv.Address, Port: srv.Port, Weight: srv.Weight, ServerStatus: ss,
		OnFailure: p.ServerOnFailure(srv), MaxConnections: srv.MaxConnections, MinConnections: srv.MinConnections}
	for _, ch := range srv.Checks {
		name := ch.Type
		if ch.Port != 0 {
			name = fmt.Sprintf("%s:%d", ch.Type, ch.Port)
		}
		out.Checks = append(out.Checks, name)
	}
	if h, ok := e.health[ref]; ok {
		out.LastChange, out.Latency = h.At, h.Latency
	}
	return out
}
