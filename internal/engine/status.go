package engine

import (
	"fmt"
	"net/netip"
	"sort"

	"halb/internal/api"
	"halb/internal/config"
)

// status renders the running state as the status document.
func (e *Engine) status() api.Status {
	cfg := e.cfg
	st := api.Status{
		Node: cfg.Node, Version: e.version, Dataplane: e.dpName, Config: cfg.File,
		Started: e.started, Reloaded: e.reloaded, LastReconcile: e.last,
		VRRP: []api.Instance{}, Services: []api.Service{}, Pools: []api.Pool{}, Events: e.recent(20),
	}
	for _, in := range cfg.VRRP.Instances {
		ai := api.Instance{Name: in.Name, Interface: in.Interface, VRID: in.VRID, State: StateInit,
			Priority: in.Priority, EffectivePriority: in.Priority, Since: e.started, VIPs: []string{}}
		for _, v := range in.VIPs {
			ai.VIPs = append(ai.VIPs, v.String())
		}
		if ev, ok := e.vrrp[in.Name]; ok {
			ai.State, ai.EffectivePriority, ai.Since, ai.Reason = ev.New, ev.EffectivePriority, ev.At, ev.Reason
			if ev.Master.IsValid() {
				ai.Master = ev.Master.String()
			}
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
		st.Pools = append(st.Pools, api.Pool{Name: name, Quorum: cfg.Pools[name].Quorum,
			HealthyWeight: ps.HealthyWeight, QuorumUp: ps.QuorumUp, SorryActive: ps.SorryActive})
	}
	return st
}

// serviceStatus gives one entry per (VIP, port item) of a service.
func (e *Engine) serviceStatus(s config.Service) []api.Service {
	pool := e.cfg.Pools[s.Pool]
	var out []api.Service
	if len(s.VIPs) == 0 { // an external mark: rules outside halb pick its packets
		for _, fam := range poolFamilies(pool) {
			as := api.Service{Name: s.Name, Protocol: s.Protocol, Family: fam, Mark: s.Mark.Value,
				Scheduler: s.Scheduler, Forward: s.Forward, Pool: s.Pool, Servers: []api.Server{}}
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
			as := api.Service{Name: s.Name, Protocol: s.Protocol, VIP: vip.String(), Family: family(vip), Port: p.Lo, Mark: mark,
				Scheduler: s.Scheduler, Forward: s.Forward, Pool: s.Pool, Servers: []api.Server{}}
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
func (e *Engine) serverStatus(pool string, i int, srv config.Server) api.Server {
	p := e.cfg.Pools[pool]
	ref := ServerRef{Pool: pool, Addr: srv.Address, Port: srv.Port}
	var ss ServerStatus
	if servers := e.eval.Pools[pool].Servers; i < len(servers) {
		ss = servers[i]
	}
	out := api.Server{Address: srv.Address.String(), Port: srv.Port, Weight: srv.Weight,
		EffectiveWeight: ss.EffectiveWeight, Healthy: ss.Healthy, Reason: ss.Reason,
		OnFailure: p.ServerOnFailure(srv), MaxConnections: srv.MaxConnections, MinConnections: srv.MinConnections}
	for _, ch := range srv.Checks {
		name := ch.Type
		if ch.Port != 0 {
			name = fmt.Sprintf("%s:%d", ch.Type, ch.Port)
		}
		out.Checks = append(out.Checks, name)
	}
	if h, ok := e.health[ref]; ok {
		out.LastChange = h.At
		out.LatencyMS = float64(h.Latency.Microseconds()) / 1000
	}
	return out
}
