// Package engine owns halb's running state: it folds VRRP and health events
// into one view, derives the data plane's desired state from it with the
// pure function Desired, and applies that through a dataplane.Dataplane.
package engine

import (
	"net/netip"
	"slices"

	"halb/internal/config"
	"halb/internal/dataplane"
	"halb/internal/vrrp/fsm"
)

// ServerRef names one real server of one pool.
type ServerRef struct {
	Pool string
	Addr netip.Addr
	Port uint16
}

// ServerHealth is what the health checks say of one server.
type ServerHealth struct {
	Up bool
	// Weight is the effective weight while up (slow start, or a weight an
	// exec check printed); a negative value means the configured weight.
	Weight int
	Reason string
}

// Inputs are everything the desired state depends on.
type Inputs struct {
	Config *config.Config
	// VRRP maps instance names to their state; missing means INIT.
	VRRP map[string]string
	// Health maps servers to their health; a missing server is in the
	// pool's initial state.
	Health map[ServerRef]ServerHealth
	// QuorumUp is each pool's quorum state after the previous evaluation
	// (missing: up), for hysteresis.
	QuorumUp map[string]bool
}

// PoolStatus is the evaluated state of one pool.
type PoolStatus struct {
	QuorumUp      bool
	HealthyWeight int
	SorryActive   bool
	// Servers are the states of the pool's servers, in its order.
	Servers []ServerStatus
}

// ServerStatus is the evaluated state of one pool server.
type ServerStatus struct {
	Healthy bool
	// EffectiveWeight is the weight given to the kernel (0 when inhibited).
	EffectiveWeight int
	Reason          string
}

// Evaluation is the result of Desired: the data plane state and the pool
// and server states it was derived from.
type Evaluation struct {
	State dataplane.State
	Pools map[string]PoolStatus
	// at lists, per configuration service, the indexes of its virtual
	// services in State.Services.
	at map[string][]int
	// spare is the memory of the state before State, which the next
	// Update reuses.
	spare []dataplane.VirtualService
}

// Desired computes the data plane's desired state. It is pure: the same
// inputs always give the same output.
func Desired(in Inputs) Evaluation {
	cfg := in.Config
	ev := Evaluation{Pools: make(map[string]PoolStatus, len(cfg.Pools)), at: make(map[string][]int, len(cfg.Services))}
	for name, pool := range cfg.Pools {
		ev.Pools[name] = evalPool(in, pool)
	}
	for _, s := range cfg.Services {
		ev.State.Services = append(ev.State.Services, virtualServices(s, cfg.Pools[s.Pool], ev)...)
	}
	for _, m := range cfg.MarkPlan() {
		if m.External {
			continue
		}
		for _, vip := range m.VIPs {
			for _, r := range m.Ports {
				ev.State.MarkRules = append(ev.State.MarkRules, dataplane.MarkRule{
					Mark: m.Mark, Protocol: m.Protocol, VIP: vip, PortLo: r.Lo, PortHi: r.Hi, Service: m.Service})
			}
		}
	}
	ev.State.Sync = syncDaemons(cfg, in.VRRP)
	ev.State.Sort()
	for i, vs := range ev.State.Services {
		ev.at[vs.Service] = append(ev.at[vs.Service], i)
	}
	return ev
}

// Update brings ev, computed by Desired, up to date for inputs that
// differ from its own (with the same configuration) only in VRRP states
// and in the health of servers of the pools named in changed: it
// evaluates those pools and the services that use them again. Pools are
// updated in place; State is replaced, never changed: the state before
// stays valid until the next Update, which reuses its memory (so a data
// plane may keep the last state it was given). Afterwards ev equals
// Desired(in). It returns the indexes in State.Services of the services
// evaluated again: the others are as they were.
func (ev *Evaluation) Update(in Inputs, changed []string) []int {
	cfg := in.Config
	ev.State.Sync = syncDaemons(cfg, in.VRRP)
	dirty := map[string]bool{}
	for _, name := range changed {
		if pool, ok := cfg.Pools[name]; ok {
			ev.Pools[name] = evalPool(in, pool)
			dirty[name] = true
		}
	}
	if len(dirty) == 0 {
		return []int{}
	}
	ev.spare = append(ev.spare[:0], ev.State.Services...)
	ev.State.Services, ev.spare = ev.spare, ev.State.Services
	redone := []int{}
	for _, s := range cfg.Services {
		if !dirty[s.Pool] {
			continue
		}
		for _, i := range ev.at[s.Name] {
			vs := &ev.State.Services[i]
			vs.Reals = reals(vs.Key, s, cfg.Pools[s.Pool], *ev)
			dataplane.SortReals(vs.Reals)
			redone = append(redone, i)
		}
	}
	return redone
}

func evalPool(in Inputs, pool config.Pool) PoolStatus {
	sum := 0
	servers := make([]ServerStatus, len(pool.Servers))
	for i, srv := range pool.Servers {
		ref := ServerRef{Pool: pool.Name, Addr: srv.Address, Port: srv.Port}
		st := ServerStatus{Healthy: pool.InitialState != "down", Reason: "initial state " + pool.InitialState}
		weight := srv.Weight
		if len(pool.ServerChecks(srv)) == 0 {
			st = ServerStatus{Healthy: true, Reason: "no health check"}
		} else if h, ok := in.Health[ref]; ok {
			st.Healthy, st.Reason = h.Up, h.Reason
			if h.Up && h.Weight >= 0 {
				weight = h.Weight
			}
		}
		if st.Healthy {
			st.EffectiveWeight = weight
			sum += weight
		}
		servers[i] = st
	}
	prev, ok := in.QuorumUp[pool.Name]
	if !ok {
		prev = true
	}
	up := quorumState(prev, sum, pool.Quorum, pool.Hysteresis)
	_, hasSorry := pool.Sorry()
	return PoolStatus{QuorumUp: up, HealthyWeight: sum, SorryActive: !up && hasSorry, Servers: servers}
}

// quorumState applies keepalived's quorum rule with hysteresis: quorum is
// lost below quorum-hysteresis and regained at quorum+hysteresis.
func quorumState(prev bool, sum, quorum, hysteresis int) bool {
	if prev {
		return sum >= quorum-hysteresis
	}
	return sum >= quorum+hysteresis
}

// virtualServices expands one configuration service into kernel virtual
// services: one per mark and family, or one per VIP and port.
func virtualServices(s config.Service, pool config.Pool, ev Evaluation) []dataplane.VirtualService {
	base := dataplane.VirtualService{
		Service:    s.Name,
		Scheduler:  s.Scheduler,
		Flags:      slices.Clone(s.SchedulerFlags),
		MaglevSize: s.MaglevSize,
	}
	if s.Persistence.Timeout > 0 {
		base.Persistence = s.Persistence.Timeout.D()
		base.Netmask = s.Persistence.Netmask
	}
	var keys []dataplane.ServiceKey
	switch s.Mark.Mode {
	case config.MarkShared, config.MarkExternal:
		mark := s.Mark.Value
		if s.Mark.Mode == config.MarkShared {
			mark = config.DeriveMark(s.Name, netip.Addr{})
		}
		fams := families(s.VIPs)
		if len(fams) == 0 {
			fams = poolFamilies(pool)
		}
		for _, fam := range fams {
			keys = append(keys, dataplane.ServiceKey{Family: fam, Mark: mark})
		}
	case config.MarkPerVIP:
		for _, vip := range s.VIPs {
			keys = append(keys, dataplane.ServiceKey{Family: family(vip), Mark: config.DeriveMark(s.Name, vip)})
		}
	default:
		for _, vip := range s.VIPs {
			for _, p := range s.Ports {
				keys = append(keys, dataplane.ServiceKey{Family: family(vip), Protocol: s.Protocol, Addr: vip, Port: p.Lo})
			}
		}
	}
	out := make([]dataplane.VirtualService, 0, len(keys))
	for _, k := range keys {
		vs := base
		vs.Key = k
		vs.Flags = slices.Clone(base.Flags)
		vs.Reals = reals(k, s, pool, ev)
		out = append(out, vs)
	}
	return out
}

// reals lists the real servers of one virtual service, with weights from
// health, on_failure and quorum.
func reals(k dataplane.ServiceKey, s config.Service, pool config.Pool, ev Evaluation) []dataplane.Real {
	ps := ev.Pools[pool.Name]
	port := func(p uint16) uint16 {
		if p != 0 {
			return p
		}
		return k.Port // the service port, or 0 for mark services
	}
	tunnel := tunnelOf(s)
	if sorry, ok := pool.Sorry(); ok && ps.SorryActive && family(sorry.Addr()) == k.Family {
		return []dataplane.Real{{Addr: sorry.Addr(), Port: port(sorry.Port()), Weight: 1, Forward: s.Forward, Tunnel: tunnel}}
	}
	out := []dataplane.Real{}
	for i, srv := range pool.Servers {
		if family(srv.Address) != k.Family {
			continue
		}
		var st ServerStatus
		if i < len(ps.Servers) {
			st = ps.Servers[i]
		}
		if !st.Healthy && pool.ServerOnFailure(srv) == "remove" {
			continue
		}
		out = append(out, dataplane.Real{Addr: srv.Address, Port: port(srv.Port), Weight: st.EffectiveWeight, Forward: s.Forward, Tunnel: tunnel,
			MaxConns: srv.MaxConnections, MinConns: srv.MinConnections})
	}
	return out
}

// tunnelOf is the encapsulation of a forward: tun service with its
// defaults spelled out (ipip, no checksum); zero for other services.
func tunnelOf(s config.Service) dataplane.Tunnel {
	if s.Forward != "tun" {
		return dataplane.Tunnel{}
	}
	t, _ := dataplane.ParseTunnel(s.Tunnel.Type, s.Tunnel.Port, s.Tunnel.Checksum) // validated with the configuration
	return t
}

func family(a netip.Addr) int {
	if a.Is4() {
		return 4
	}
	return 6
}

func families(vips []netip.Addr) []int {
	var out []int
	for _, v := range vips {
		if f := family(v); !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	slices.Sort(out)
	return out
}

// poolFamilies gives an external-mark service without VIPs its address
// family as keepalived does: that of the pool's servers, IPv4 when it has
// none.
func poolFamilies(pool config.Pool) []int {
	addrs := make([]netip.Addr, 0, len(pool.Servers))
	for _, s := range pool.Servers {
		addrs = append(addrs, s.Address)
	}
	if fams := families(addrs); len(fams) > 0 {
		return fams
	}
	return []int{4}
}

// syncDaemons derives the IPVS sync daemons from the followed instance.
func syncDaemons(cfg *config.Config, states map[string]string) *dataplane.SyncDaemons {
	s := cfg.IPVSSync
	if s == nil {
		return nil
	}
	st := states[s.Instance]
	d := &dataplane.SyncDaemons{Interface: s.Interface, SyncID: s.SyncID, McastGroup: s.McastGroup,
		McastPort: s.McastPort, McastTTL: s.McastTTL, MaxLen: s.MaxLen}
	switch {
	case s.Mode == "both":
		d.Master, d.Backup = true, true
	case st == fsm.Master.String():
		d.Master = true
	case st == fsm.Backup.String():
		d.Backup = true
	default:
		return nil
	}
	return d
}
