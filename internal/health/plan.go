package health

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"halb/internal/config"
)

// probeKey identifies one probe: a target and a check spec. Every pool
// server with the same key shares the probe.
type probeKey string

// probeSpec is what one probe checks.
type probeSpec struct {
	key    probeKey
	check  config.Check
	target netip.AddrPort // where to connect (port 0 for ping)
	// server is the real server's address, which exec checks are told.
	server netip.Addr
	// name is the check as events and status name it (describe).
	name string
}

// memberKey names one server of one pool, as the engine does.
type memberKey struct {
	Pool string
	Addr netip.Addr
	Port uint16
}

// memberSpec is one pool server and the probes that decide its health
// (all must pass).
type memberSpec struct {
	key memberKey
	// server is the server as events name it: address, or address:port
	// when the pool names a port.
	server    string
	addr      string // key.Addr in text, for Status
	weight    int
	initialUp bool
	slowStart time.Duration
	probes    []probeKey
}

// plan derives the probes and pool members of a configuration. It is pure.
func plan(cfg *config.Config) (map[probeKey]probeSpec, []memberSpec) {
	probes := map[probeKey]probeSpec{}
	var members []memberSpec
	pools := make([]string, 0, len(cfg.Pools))
	for name := range cfg.Pools {
		pools = append(pools, name)
	}
	sort.Strings(pools)
	for _, name := range pools {
		pool := cfg.Pools[name]
		servicePorts := poolPorts(cfg, name)
		for _, srv := range pool.Servers {
			checks := pool.ServerChecks(srv)
			if len(checks) == 0 {
				continue
			}
			m := memberSpec{
				key:       memberKey{Pool: name, Addr: srv.Address, Port: srv.Port},
				server:    serverName(srv.Address, srv.Port),
				addr:      srv.Address.String(),
				weight:    srv.Weight,
				initialUp: pool.InitialState != "down",
				slowStart: pool.SlowStart.D(),
			}
			for _, ch := range checks {
				for _, port := range checkPorts(ch, srv, servicePorts) {
					spec := newSpec(ch, srv.Address, port)
					probes[spec.key] = spec
					if !slices.Contains(m.probes, spec.key) {
						m.probes = append(m.probes, spec.key)
					}
				}
			}
			members = append(members, m)
		}
	}
	return probes, members
}

// poolPorts lists the single ports of the services that use a pool.
func poolPorts(cfg *config.Config, pool string) []uint16 {
	var out []uint16
	for _, s := range cfg.Services {
		if s.Pool != pool {
			continue
		}
		for _, r := range s.Ports {
			if r.Single() && !slices.Contains(out, r.Lo) {
				out = append(out, r.Lo)
			}
		}
	}
	slices.Sort(out)
	return out
}

// checkPorts returns the ports a check probes on a server: the check's
// port, else the server's, else each port of the services using the pool.
func checkPorts(ch config.Check, srv config.Server, servicePorts []uint16) []uint16 {
	switch {
	case ch.Type == "ping":
		return []uint16{0}
	case ch.Port != 0:
		return []uint16{ch.Port}
	case srv.Port != 0:
		return []uint16{srv.Port}
	case len(servicePorts) > 0:
		return servicePorts
	}
	return []uint16{0}
}

func newSpec(ch config.Check, server netip.Addr, port uint16) probeSpec {
	addr := server
	if a, err := netip.ParseAddr(ch.Address); err == nil {
		addr = a
	}
	if ch.Type == "exec" {
		// An exec check runs once per server, whatever it connects to.
		addr = server
	}
	canon, _ := json.Marshal(ch) // a Check always marshals
	key := probeKey(server.String() + "|" + addr.String() + "|" + strconv.Itoa(int(port)) + "|" + string(canon))
	spec := probeSpec{key: key, check: ch, target: netip.AddrPortFrom(addr, port), server: server}
	spec.name = spec.describe()
	return spec
}

// serverName names a pool server as events do.
func serverName(a netip.Addr, port uint16) string {
	if port == 0 {
		return a.String()
	}
	return netip.AddrPortFrom(a, port).String()
}

// describe names a check for events and status: "http 198.51.100.12:80 /healthz".
func (s probeSpec) describe() string {
	var b strings.Builder
	b.WriteString(s.check.Type)
	b.WriteString(" ")
	switch s.check.Type {
	case "ping":
		b.WriteString(s.target.Addr().String())
	case "exec":
		b.WriteString(strings.Join(s.check.Command, " "))
	default:
		b.WriteString(s.target.String())
	}
	switch s.check.Type {
	case "http", "https":
		b.WriteString(" " + s.check.Path)
	case "dns":
		fmt.Fprintf(&b, " %s %s", s.check.QueryType, s.check.Query)
	}
	return b.String()
}
