package keepalived

import (
	"fmt"
	"math"
	"math/bits"
	"net/netip"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"halb/internal/config"
)

// inherited holds the settings a virtual server passes to its real
// servers and a real server to its checkers.
type inherited struct {
	delayLoop      config.Duration
	connectTimeout config.Duration
	retry          int // -1: the checker type's default
	virtualhost    string
	inhibit        bool
	inhibitAt      Pos
	alpha          bool
	forward        string
	tunnel         config.Tunnel
}

// vsEntry is one address, range or mark of a virtual server or group.
type vsEntry struct {
	addrs []netip.Addr
	port  uint16 // 0: all ports
	mark  uint32
	at    Pos
}

// realServer is a real_server of a virtual server with its checks.
type realServer struct {
	at     Pos
	addr   netip.Addr
	port   uint16 // as written, 0 when not
	weight int
	wAt    Pos
	checks []config.Check
	chkAt  []Pos
	// onFailure is the server's own inhibit_on_failure when it differs
	// from the virtual server's ("" otherwise).
	onFailure string
	onFailAt  Pos
	upper     uint32 // uthreshold
	upperAt   Pos
	lower     uint32 // lthreshold
	lowerAt   Pos
}

func (m *mapper) virtualServer(n *Node) {
	entries, base, ok := m.vsHead(n)
	if !ok {
		return
	}
	b := newVSBlock(n)
	m.walk("virtual_server", n.Children, b.handlers(m))
	m.vsDefaults(n, b, entries[0].mark != 0)
	if n.Arg(0) == "group" {
		if entries = m.unclaimed(base, b.svc.Protocol, entries); len(entries) == 0 {
			return
		}
	}
	m.placeVirtualServer(n, b, base, entries)
}

// vsBlock is what a virtual_server block says: its service settings, its
// pool's, what it passes to its real servers, and where each was written.
type vsBlock struct {
	svc         config.Service
	protocolSet bool
	pool        config.Pool
	inh         inherited
	// Paths written at the virtual_server go to every service made of it.
	svcWritten  map[string]Pos
	poolWritten map[string]Pos
	servers     []*Node
}

func newVSBlock(n *Node) *vsBlock {
	return &vsBlock{
		// keepalived 2.2 makes a virtual server without "protocol" UDP.
		svc:         config.Service{Protocol: "udp", Scheduler: "wlc"},
		pool:        config.Pool{Quorum: 1, OnFailure: "remove", InitialState: "up"},
		inh:         inherited{delayLoop: config.Duration(60e9), connectTimeout: config.Duration(5e9), retry: -1, forward: "nat"},
		svcWritten:  map[string]Pos{"": n.Pos, ".forward": n.Pos, ".scheduler": n.Pos, ".protocol": n.Pos},
		poolWritten: map[string]Pos{"": n.Pos, ".on_failure": n.Pos},
	}
}

// handlers are the keywords of a virtual_server block.
func (b *vsBlock) handlers(m *mapper) map[string]handler {
	servers := map[string]handler{
		"real_server": func(c *Node) { b.servers = append(b.servers, c) },
	}
	return mergeHandlers(servers, b.serviceHandlers(m), b.poolHandlers(m), b.inheritedHandlers(m))
}

// maxPersistence is the longest persistence_timeout keepalived takes, in
// seconds (31 days).
const maxPersistence = 2678400

// serviceHandlers read what goes to the services: scheduler, forwarding,
// protocol, persistence.
func (b *vsBlock) serviceHandlers(m *mapper) map[string]handler {
	svc, svcWritten, inh := &b.svc, b.svcWritten, &b.inh
	flag := func(c *Node) {
		svc.SchedulerFlags = append(svc.SchedulerFlags, c.Name)
		svcWritten[".scheduler_flags"] = c.Pos
	}
	sched := func(c *Node) {
		if !m.needArgs(c, 1) {
			return
		}
		svc.Scheduler = strings.ToLower(c.Arg(0))
		if !slices.Contains(config.Schedulers, svc.Scheduler) {
			// keepalived ignores it and sets its default.
			m.warnf(c.ArgPos(0), "%s: %q is not one of %s: keepalived ignores it and uses wlc, and so does halb", c.Name, c.Arg(0), strings.Join(config.Schedulers, ", "))
			svc.Scheduler = "wlc"
		}
		svcWritten[".scheduler"] = c.ArgPos(0)
	}
	method := func(c *Node) {
		if f, t, ok := m.forwardArg(c); ok {
			inh.forward, inh.tunnel = f, t
			svcWritten[".forward"] = c.ArgPos(0)
			if t.Type != "" {
				svcWritten[".tunnel"] = c.ArgPos(1)
			}
		}
	}
	return map[string]handler{
		"lb_algo":    sched,
		"lvs_sched":  sched,
		"lb_kind":    method,
		"lvs_method": method,
		"protocol": func(c *Node) {
			if !m.needArgs(c, 1) {
				return
			}
			switch p := strings.ToLower(c.Arg(0)); p {
			case "tcp", "udp", "sctp":
				svc.Protocol, b.protocolSet = p, true
				svcWritten[".protocol"] = c.ArgPos(0)
			default:
				m.errorf(c.ArgPos(0), "protocol: %q is not TCP, UDP or SCTP", c.Arg(0))
			}
		},
		"persistence_timeout": func(c *Node) {
			timeout := int64(360) // keepalived's default
			if len(c.Args) > 0 {
				v, err := strconv.ParseInt(c.Arg(0), 10, 64)
				if err != nil || v < 1 || v > maxPersistence {
					m.warnf(c.ArgPos(0), "persistence_timeout: %q is not a number from 1 to %d: keepalived ignores it and keeps no persistence, and so does halb%s", c.Arg(0), maxPersistence, m.undefinedHint(c.Arg(0)))
					return
				}
				timeout = v
			}
			svc.Persistence.Timeout = config.Duration(timeout * 1e9)
			svcWritten[".persistence.timeout"] = c.ArgPos(0)
		},
		"persistence_granularity": func(c *Node) {
			if bits, ok := m.granularity(c); ok {
				svc.Persistence.Netmask = bits
				svcWritten[".persistence.netmask"] = c.ArgPos(0)
			}
		},
		"persistence_engine": m.reject("halb has no IPVS persistence engines (sip); clients would be balanced differently"),
		"ip_family":          m.ignore("halb takes a fwmark service's address family from its real servers"),
		"ops":                m.reject("halb has no one-packet scheduling; UDP datagrams of a flow would go to one server"),
		"sh-port":            flag,
		"sh-fallback":        flag,
		"mh-port":            flag,
		"mh-fallback":        flag,
		"flag-1":             flag,
		"flag-2":             flag,
		"flag-3":             flag,
		"smtp_alert":         m.ignore("with notify.smtp set, halb mails every health change"),
		"snmp_name":          m.ignore("halb has no SNMP"),
		"nat_mask":           m.ignore("keepalived itself ignores it"),
		"lvs_flags":          m.reject("use the scheduler flag keywords (sh-port, sh-fallback, mh-port, mh-fallback)"),
	}
}

// poolHandlers read what goes to the pool: quorum and sorry server.
func (b *vsBlock) poolHandlers(m *mapper) map[string]handler {
	pool, poolWritten := &b.pool, b.poolWritten
	quorumScript := m.ignore("halb does not run quorum scripts; its notifications (notify.exec, webhooks, smtp) report quorum changes")
	return map[string]handler{
		"quorum": func(c *Node) {
			pool.Quorum, _ = m.intArg(c, 0, 0, 1<<31-1)
			poolWritten[".quorum"] = c.ArgPos(0)
		},
		"hysteresis": func(c *Node) {
			pool.Hysteresis, _ = m.intArg(c, 0, 0, 1<<31-1)
			poolWritten[".hysteresis"] = c.ArgPos(0)
		},
		"quorum_up":   quorumScript,
		"quorum_down": quorumScript,
		"sorry_server": func(c *Node) {
			a, ok := m.addrArg(c, 0)
			if !ok {
				return
			}
			pool.SorryServer = a.String()
			if len(c.Args) > 1 {
				if port, ok := m.portArg(c, 1); ok && port != 0 {
					pool.SorryServer = netip.AddrPortFrom(a, port).String()
				}
			}
			poolWritten[".sorry_server"] = c.ArgPos(0)
		},
		"sorry_server_inhibit":    m.ignore("halb's sorry server takes the traffic while quorum is lost, with weight 1"),
		"sorry_server_lvs_method": m.ignore("halb forwards to the sorry server with the service's forwarding method"),
	}
}

// inheritedHandlers read what the real servers and their checkers inherit.
func (b *vsBlock) inheritedHandlers(m *mapper) map[string]handler {
	inh := &b.inh
	return map[string]handler{
		"inhibit_on_failure": func(c *Node) {
			inh.inhibit, inh.inhibitAt = m.boolArg(c, 0), c.Pos
		},
		"alpha": func(c *Node) {
			inh.alpha = m.boolArg(c, 0)
		},
		"omega":       m.ignore("halb leaves its services installed when it stops and runs no scripts then"),
		"ha_suspend":  m.ignore("halb installs services on every node whatever its VRRP state, so a backup is ready at once"),
		"virtualhost": func(c *Node) { inh.virtualhost = c.Arg(0) },
		"delay_loop": func(c *Node) {
			inh.delayLoop, _ = m.timerArg(c, 0)
		},
		"connect_timeout": func(c *Node) {
			inh.connectTimeout, _ = m.timerArg(c, 0)
		},
		"retry":              func(c *Node) { inh.retry, _ = m.intArg(c, 0, 0, 1<<20) },
		"nb_get_retry":       func(c *Node) { inh.retry, _ = m.intArg(c, 0, 0, 1<<20) },
		"delay_before_retry": m.ignore(retryInstead),
		"warmup":             m.ignore("halb spreads the first checks of a pool over its interval"),
	}
}

// vsDefaults settles what the block left to keepalived's defaults and
// what it passes on to its services and pool.
func (m *mapper) vsDefaults(n *Node, b *vsBlock, isMark bool) {
	switch {
	case !b.protocolSet && isMark:
		b.svc.Protocol = "tcp" // a fwmark service has no protocol in IPVS
	case !b.protocolSet:
		m.warnf(n.Pos, "virtual_server without protocol: keepalived 2.2 makes it UDP, and so does halb; write protocol TCP if TCP is meant")
	}
	b.svc.Forward, b.svc.Tunnel = b.inh.forward, b.inh.tunnel
	b.svc.SchedulerFlags = m.schedulerFlags(b.svc.Scheduler, b.svc.SchedulerFlags, b.svcWritten[".scheduler_flags"])
	if b.inh.inhibit {
		b.pool.OnFailure = "inhibit"
		b.poolWritten[".on_failure"] = b.inh.inhibitAt
	}
	if b.inh.alpha {
		b.pool.InitialState = "down"
		b.poolWritten[".initial_state"] = n.Pos
	}
}

// placeVirtualServer names the virtual server's services and pool, and
// adds them to the configuration with where they were written.
func (m *mapper) placeVirtualServer(n *Node, b *vsBlock, base string, entries []vsEntry) {
	svc, pool := b.svc, b.pool
	name := base
	if m.names[name] {
		// Another virtual server on the same address or group: the
		// protocol tells them apart.
		name = base + "-" + svc.Protocol
	}
	name = m.uniqueName(name)
	pool.Name = name
	svc.Pool = name
	services := m.servicesFrom(name, svc, entries)
	ownPort := uint16(0) // the one port of the pool's services, if one
	if len(services) == 1 && len(services[0].Ports) == 1 && services[0].Ports[0].Single() {
		ownPort = services[0].Ports[0].Lo
	}
	m.poolFrom(n, &pool, m.realServers(b.servers, b.inh), svc.Forward, ownPort, b.poolWritten)
	for _, s := range services {
		idx := len(m.cfg.Services)
		p := fmt.Sprintf("services[%d]", idx)
		for k, at := range b.svcWritten {
			m.set(p+k, at)
		}
		m.set(p+".name", n.Pos)
		m.set(p+".pool", n.Pos)
		m.origin(p, n)
		if s.Mark.Mode == config.MarkExternal || s.Mark.Mode == config.MarkShared {
			m.set(p+".mark", s.at)
		}
		for j := range s.VIPs {
			m.set(fmt.Sprintf("%s.vips[%d]", p, j), s.at)
		}
		for j := range s.Ports {
			m.set(fmt.Sprintf("%s.ports[%d]", p, j), s.at)
		}
		m.cfg.Services = append(m.cfg.Services, s.Service)
	}
}

const retryInstead = "halb checks again at the next interval and marks a server down after retry+1 failures in a row"

// vsHead reads "virtual_server ADDR PORT", "virtual_server fwmark N" or
// "virtual_server group NAME" into entries and a base name.
func (m *mapper) vsHead(n *Node) ([]vsEntry, string, bool) {
	switch n.Arg(0) {
	case "fwmark":
		mark, ok := m.intArg(n, 1, 1, 1<<32-1)
		if !ok {
			return nil, "", false
		}
		return []vsEntry{{mark: uint32(mark), at: n.ArgPos(1)}}, "fwmark-" + n.Arg(1), true
	case "group":
		if !m.needArgs(n, 2) {
			return nil, "", false
		}
		g, ok := m.groups[n.Arg(1)]
		if !ok {
			m.errorf(n.ArgPos(1), "virtual_server group: no virtual_server_group named %q", n.Arg(1))
			return nil, "", false
		}
		var entries []vsEntry
		for _, e := range g.Children {
			if ent, ok := m.groupEntry(e); ok {
				entries = append(entries, ent)
			}
		}
		if len(entries) == 0 {
			m.errorf(g.Pos, "virtual_server_group %s has no addresses or marks", n.Arg(1))
			return nil, "", false
		}
		return entries, n.Arg(1), true
	}
	if !m.needArgs(n, 1) {
		return nil, "", false
	}
	a, err := netip.ParseAddr(n.Arg(0))
	if err != nil {
		m.warnf(n.ArgPos(0), "virtual_server: %q is not an address: keepalived skips the virtual server, and so does halb%s", n.Arg(0), m.undefinedHint(n.Arg(0)))
		return nil, "", false
	}
	a = a.Unmap()
	name := strings.ReplaceAll(a.String(), ":", ".")
	if len(n.Args) < 2 {
		// All ports, as IPVS's port 0 service.
		return []vsEntry{{addrs: []netip.Addr{a}, at: n.ArgPos(0)}}, name + "-all", true
	}
	port, ok := m.portArg(n, 1)
	if !ok {
		return nil, "", false
	}
	if port == 0 {
		name += "-all"
	} else {
		name += fmt.Sprintf("-%d", port)
	}
	return []vsEntry{{addrs: []netip.Addr{a}, port: port, at: n.ArgPos(0)}}, name, true
}

// groupEntry reads one line of a virtual_server_group: "ADDR PORT",
// "RANGE PORT" (a.b.c.d-e, a.b.c.d-e.f.g.h, a.b.c.d/nn) or "fwmark N".
func (m *mapper) groupEntry(e *Node) (vsEntry, bool) {
	if e.Name == "fwmark" {
		mark, ok := m.intArg(e, 0, 1, 1<<32-1)
		if len(e.Args) > 1 {
			m.warnf(e.ArgPos(1), "virtual_server_group: the address family of a mark comes from the real servers in halb")
		}
		return vsEntry{mark: uint32(mark), at: e.Pos}, ok
	}
	addrs, err := expandRange(e.Name)
	if err != nil {
		m.errorf(e.Pos, "virtual_server_group: %v", err)
		return vsEntry{}, false
	}
	if len(e.Args) == 0 {
		return vsEntry{addrs: addrs, at: e.Pos}, true // all ports
	}
	port, ok := m.portArg(e, 0)
	return vsEntry{addrs: addrs, port: port, at: e.Pos}, ok
}

// maxRange bounds the addresses one group line may name.
const maxRange = 1024

func expandRange(s string) ([]netip.Addr, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("%q is not an address range", s)
		}
		if p.Addr().BitLen()-p.Bits() > 10 {
			return nil, fmt.Errorf("%s names more than %d addresses", s, maxRange)
		}
		var out []netip.Addr
		for a := p.Masked().Addr(); p.Contains(a); a = a.Next() {
			out = append(out, a)
		}
		return out, nil
	}
	lo, hi, isRange := strings.Cut(s, "-")
	first, err := netip.ParseAddr(lo)
	if err != nil {
		return nil, fmt.Errorf("%q is not an address or range", s)
	}
	first = first.Unmap()
	if !isRange {
		return []netip.Addr{first}, nil
	}
	last, err := netip.ParseAddr(hi)
	if err != nil {
		// a.b.c.d-e: the last part of the address changes.
		v, perr := strconv.ParseUint(hi, 16, 16)
		if first.Is4() {
			v, perr = strconv.ParseUint(hi, 10, 8)
		}
		if perr != nil {
			return nil, fmt.Errorf("%q is not an address range", s)
		}
		b := first.AsSlice()
		if first.Is4() {
			b[3] = byte(v)
		} else {
			b[14], b[15] = byte(v>>8), byte(v)
		}
		last, _ = netip.AddrFromSlice(b)
	}
	last = last.Unmap()
	if last.Less(first) || last.Is4() != first.Is4() {
		return nil, fmt.Errorf("%q ends before it starts", s)
	}
	var out []netip.Addr
	for a := first; a.Compare(last) <= 0; a = a.Next() {
		if len(out) == maxRange {
			return nil, fmt.Errorf("%s names more than %d addresses", s, maxRange)
		}
		out = append(out, a)
	}
	return out, nil
}

// placedService is a service made of a virtual server, with where its
// VIPs and ports (or its mark) were written.
type placedService struct {
	config.Service
	at Pos
}

// servicesFrom makes halb services of a virtual server's entries: each
// mark is a service; addresses are grouped by port into services of the
// same VIPs. An entry without a port (IPVS's port 0 service) covers every
// port: the range 1-65535 on a shared mark.
func (m *mapper) servicesFrom(name string, base config.Service, entries []vsEntry) []placedService {
	var marks []placedService
	portVIPs := map[uint16][]netip.Addr{}
	portAt := map[uint16]Pos{}
	var ports []uint16
	for _, e := range entries {
		if e.mark != 0 {
			s := base
			s.Mark = config.Mark{Mode: config.MarkExternal, Value: e.mark}
			marks = append(marks, placedService{s, e.at})
			continue
		}
		if _, seen := portVIPs[e.port]; !seen {
			ports = append(ports, e.port)
			portAt[e.port] = e.at
		}
		for _, a := range e.addrs {
			if !slices.Contains(portVIPs[e.port], a) {
				portVIPs[e.port] = append(portVIPs[e.port], a)
			}
		}
	}
	var all []placedService
	byVIPs := map[string]int{} // VIP list → index in all
	for _, port := range ports {
		vips := portVIPs[port]
		k := fmt.Sprint(vips)
		i, ok := byVIPs[k]
		if !ok {
			s := base
			s.VIPs = vips
			s.Mark = config.Mark{Mode: config.MarkNone}
			if port == 0 {
				s.Mark = config.Mark{Mode: config.MarkShared}
			}
			i = len(all)
			byVIPs[k] = i
			all = append(all, placedService{s, portAt[port]})
		}
		r := config.PortRange{Lo: port, Hi: port}
		if port == 0 {
			r = config.PortRange{Lo: 1, Hi: 65535}
			all[i].Mark = config.Mark{Mode: config.MarkShared}
		}
		all[i].Ports = append(all[i].Ports, r)
	}
	all = append(all, marks...)
	for i := range all {
		all[i].Name = name
		if len(all) > 1 {
			all[i].Name = m.uniqueName(fmt.Sprintf("%s-%d", name, i+1))
		}
	}
	return all
}

// forwardArg reads "NAT", "DR" or "TUN [type ipip|gue port N [nocsum|csum|remcsum]|gre [nocsum|csum]]".
func (m *mapper) forwardArg(c *Node) (string, config.Tunnel, bool) {
	if !m.needArgs(c, 1) {
		return "", config.Tunnel{}, false
	}
	switch strings.ToUpper(c.Arg(0)) {
	case "NAT":
		return "nat", config.Tunnel{}, m.noMoreArgs(c, 1)
	case "DR":
		return "dr", config.Tunnel{}, m.noMoreArgs(c, 1)
	case "TUN":
		t, ok := m.tunnelArgs(c)
		return "tun", t, ok
	}
	// keepalived ignores it: the forwarding method stays unset.
	m.warnf(c.ArgPos(0), "%s: %q is not NAT, DR or TUN: keepalived ignores it, and so does halb", c.Name, c.Arg(0))
	return "", config.Tunnel{}, false
}

// tunnelArgs reads the tunnel that follows TUN.
func (m *mapper) tunnelArgs(c *Node) (config.Tunnel, bool) {
	var t config.Tunnel
	if len(c.Args) == 1 {
		return t, true
	}
	if c.Arg(1) != "type" || len(c.Args) < 3 {
		m.errorf(c.ArgPos(1), "%s TUN: expected \"type ipip|gue|gre\", got %q", c.Name, strings.Join(argVals(c.Args[1:]), " "))
		return t, false
	}
	t.Type = c.Arg(2)
	next := 3
	switch t.Type {
	case "ipip":
		return config.Tunnel{}, m.noMoreArgs(c, next) // the default
	case "gue":
		if c.Arg(next) != "port" {
			m.errorf(c.ArgPos(2), "%s TUN type gue: the tunnel needs \"port N\"", c.Name)
			return t, false
		}
		p, ok := m.intArg(c, next+1, 1, 65535)
		if !ok {
			return t, false
		}
		t.Port, next = uint16(p), next+2
	case "gre":
	default:
		m.errorf(c.ArgPos(2), "%s TUN: tunnel type %q is not ipip, gue or gre", c.Name, t.Type)
		return t, false
	}
	if next < len(c.Args) {
		switch c.Arg(next) {
		case "nocsum":
			t.Checksum = "none"
		case "csum":
			t.Checksum = "csum"
		case "remcsum":
			t.Checksum = "remcsum"
		default:
			m.errorf(c.ArgPos(next), "%s TUN type %s: %q is not nocsum, csum or remcsum", c.Name, t.Type, c.Arg(next))
			return t, false
		}
		next++
	}
	return t, m.noMoreArgs(c, next)
}

// noMoreArgs reports arguments after the i-th as an error.
func (m *mapper) noMoreArgs(c *Node, i int) bool {
	if len(c.Args) > i {
		m.errorf(c.ArgPos(i), "%s: unexpected %q", c.Name, strings.Join(argVals(c.Args[i:]), " "))
		return false
	}
	return true
}

func argVals(ts []Token) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = t.Val
	}
	return out
}

// granularity reads a netmask (255.255.255.0) or a prefix length.
func (m *mapper) granularity(c *Node) (int, bool) {
	if !m.needArgs(c, 1) {
		return 0, false
	}
	if v, err := strconv.Atoi(c.Arg(0)); err == nil && v >= 0 && v <= 128 {
		return v, true
	}
	a, err := netip.ParseAddr(c.Arg(0))
	if err == nil && a.Is4() {
		b := a.As4()
		v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
		ones := bits.LeadingZeros32(^v)
		if v<<ones == 0 {
			return ones, true
		}
	}
	m.errorf(c.ArgPos(0), "persistence_granularity: %q is not a netmask or prefix length", c.Arg(0))
	return 0, false
}

// schedulerFlags turns keepalived's flag keywords into halb's flag names.
func (m *mapper) schedulerFlags(sched string, flags []string, at Pos) []string {
	var out []string
	generic := map[string]map[string]string{
		"sh": {"flag-1": "sh-fallback", "flag-2": "sh-port"},
		"mh": {"flag-1": "mh-fallback", "flag-2": "mh-port"},
	}
	for _, f := range flags {
		if strings.HasPrefix(f, "flag-") {
			g, ok := generic[sched][f]
			if !ok {
				m.errorf(at, "%s is not supported with scheduler %s: halb knows the flags of sh and mh only", f, sched)
				continue
			}
			f = g
		}
		if !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	return out
}

// realServers reads the real_server blocks of a virtual server.
func (m *mapper) realServers(nodes []*Node, vs inherited) []realServer {
	var out []realServer
	for _, n := range nodes {
		rs := realServer{at: n.Pos, weight: 1}
		a, ok := m.addrArg(n, 0)
		if !ok {
			continue
		}
		rs.addr = a
		if len(n.Args) > 1 {
			rs.port, _ = m.portArg(n, 1)
		}
		inh := vs
		type chk struct {
			n    *Node
			kind string
		}
		var checkers []chk
		checker := func(kind string) handler {
			return func(c *Node) { checkers = append(checkers, chk{c, kind}) }
		}
		notifyScript := m.ignore("halb runs no per-server scripts; its notifications (notify.exec, webhooks, smtp) report health changes")
		m.walk("real_server", n.Children, map[string]handler{
			"weight": func(c *Node) {
				rs.weight, _ = m.intArg(c, 0, 0, 65535)
				rs.wAt = c.ArgPos(0)
			},
			"lvs_method": func(c *Node) {
				if f, t, ok := m.forwardArg(c); ok && (f != vs.forward || t != vs.tunnel) {
					m.errorf(c.ArgPos(0), "lvs_method %s differs from the virtual server's (%s): halb forwards every server of a service alike",
						strings.Join(argVals(c.Args), " "), strings.ToUpper(vs.forward))
				}
			},
			"inhibit_on_failure": func(c *Node) {
				if v := m.boolArg(c, 0); v != vs.inhibit {
					rs.onFailure, rs.onFailAt = onFailure(v), c.Pos
				}
			},
			"alpha": func(c *Node) {
				if v := m.boolArg(c, 0); v != vs.alpha {
					m.warnf(c.Pos, "alpha differs from the virtual server's: halb starts every server of a pool alike (as the virtual server says)")
				}
			},
			"notify_up":   notifyScript,
			"notify_down": notifyScript,
			"uthreshold": func(c *Node) {
				v, _ := m.intArg(c, 0, 0, math.MaxUint32)
				rs.upper, rs.upperAt = uint32(v), c.ArgPos(0)
			},
			"lthreshold": func(c *Node) {
				v, _ := m.intArg(c, 0, 0, math.MaxUint32)
				rs.lower, rs.lowerAt = uint32(v), c.ArgPos(0)
			},
			"smtp_alert":         m.ignore("with notify.smtp set, halb mails every health change"),
			"snmp_name":          m.ignore("halb has no SNMP"),
			"virtualhost":        func(c *Node) { inh.virtualhost = c.Arg(0) },
			"delay_loop":         func(c *Node) { inh.delayLoop, _ = m.timerArg(c, 0) },
			"connect_timeout":    func(c *Node) { inh.connectTimeout, _ = m.timerArg(c, 0) },
			"retry":              func(c *Node) { inh.retry, _ = m.intArg(c, 0, 0, 1<<20) },
			"nb_get_retry":       func(c *Node) { inh.retry, _ = m.intArg(c, 0, 0, 1<<20) },
			"delay_before_retry": m.ignore(retryInstead),
			"warmup":             m.ignore("halb spreads the first checks of a pool over its interval"),
			"TCP_CHECK":          checker("tcp"),
			"HTTP_GET":           checker("http"),
			"SSL_GET":            checker("https"),
			"SMTP_CHECK":         checker("smtp"),
			"DNS_CHECK":          checker("dns"),
			"UDP_CHECK":          checker("udp"),
			"PING_CHECK":         checker("ping"),
			"ICMP_CHECK":         checker("ping"),
			"MISC_CHECK":         checker("exec"),
			"FILE_CHECK":         m.reject("halb has no file checker; the server's state would no longer follow the file"),
			"BFD_CHECK":          m.reject("halb has no BFD; the server's state would no longer follow the BFD session"),
		})
		for _, c := range checkers {
			for _, ch := range m.check(c.n, c.kind, inh, rs) {
				rs.checks = append(rs.checks, ch)
				rs.chkAt = append(rs.chkAt, c.n.Pos)
			}
		}
		out = append(out, rs)
	}
	return out
}

// poolFrom fills a pool with the real servers and their checks: the first
// server's checks are the pool's, and a server whose checks differ gets its
// own list.
func (m *mapper) poolFrom(vs *Node, pool *config.Pool, rss []realServer, forward string, ownPort uint16, written map[string]Pos) {
	name := pool.Name
	p := "pools." + name
	for k, at := range written {
		m.set(p+k, at)
	}
	m.origin(p, vs)
	for i, rs := range rss {
		srv := config.Server{Address: rs.addr, Weight: rs.weight}
		switch {
		case forward == "nat" && rs.port != ownPort:
			srv.Port = rs.port
		case forward != "nat" && rs.port != 0 && rs.port != ownPort:
			m.warnf(rs.at, "real_server port %d: with %s forwarding the packet keeps its destination port; halb leaves the server's port unset", rs.port, strings.ToUpper(forward))
		}
		sp := fmt.Sprintf("%s.servers[%d]", p, i)
		m.set(sp, rs.at)
		m.set(sp+".address", rs.at)
		if srv.Port != 0 {
			m.set(sp+".port", rs.at)
		}
		if rs.wAt.File != "" {
			m.set(sp+".weight", rs.wAt)
		}
		m.serverOptions(&srv, rs, sp)
		pool.Servers = append(pool.Servers, srv)
	}
	m.poolChecks(p, pool, rss, ownPort)
	m.cfg.Pools[name] = *pool
}

// poolChecks gives the pool the first server's checks and each server
// whose checks differ its own list. A check connects to each server's own
// port (port left out) when every server's check does, else to the one
// port it names.
func (m *mapper) poolChecks(p string, pool *config.Pool, rss []realServer, ownPort uint16) {
	own := func(i int) uint16 {
		if pool.Servers[i].Port != 0 {
			return pool.Servers[i].Port
		}
		return ownPort
	}
	// effective is the port a server's check connects to.
	effective := func(i int, ch config.Check) uint16 {
		if ch.Port != 0 {
			return ch.Port
		}
		return own(i)
	}
	if len(rss) > 0 {
		checks := config.Checks(slices.Clone(rss[0].checks))
		allOwn := make([]bool, len(checks))
		for j := range checks {
			allOwn[j] = true
			for i, rs := range rss {
				if j < len(rs.checks) && effective(i, rs.checks[j]) != own(i) {
					allOwn[j] = false
				}
			}
			checks[j].Port = effective(0, checks[j])
			if allOwn[j] {
				checks[j].Port = 0
			}
		}
		for i, rs := range rss {
			mine := config.Checks(slices.Clone(rs.checks))
			for j := range mine {
				if effective(i, mine[j]) == 0 && mine[j].Type != "exec" && mine[j].Type != "ping" {
					// A fwmark or multi-port service: nothing says which port.
					m.errorf(rs.chkAt[j], "the %s check of real_server %s has no port to check: add connect_port (or a port to the real_server)", mine[j].Type, rs.addr)
				}
				mine[j].Port = effective(i, mine[j])
				if j < len(allOwn) && allOwn[j] {
					mine[j].Port = 0
				}
			}
			if i > 0 && !reflect.DeepEqual(mine, checks) {
				// keepalived checks each real_server with its own
				// checkers: a server whose checks differ has its own list.
				if mine == nil {
					mine = config.Checks{}
				}
				pool.Servers[i].Checks = mine
				sp := fmt.Sprintf("%s.servers[%d]", p, i)
				m.set(sp+".check", rs.at)
				for j := range mine {
					cp := fmt.Sprintf("%s.check[%d]", sp, j)
					m.set(cp, rs.chkAt[j])
					m.setCheck(cp, mine[j], rs.chkAt[j])
				}
			}
		}
		pool.Checks = checks
		for j := range checks {
			cp := fmt.Sprintf("%s.check[%d]", p, j)
			m.set(cp, rss[0].chkAt[j])
			m.setCheck(cp, checks[j], rss[0].chkAt[j])
		}
	}
}

// setCheck records the written fields of a check.
func (m *mapper) setCheck(p string, ch config.Check, at Pos) {
	// Every field of a converted check is set from keepalived's own
	// defaults, so all of them count as written.
	for _, f := range []string{"type", "interval", "timeout", "rise", "fall"} {
		m.set(p+"."+f, at)
	}
	if ch.Port != 0 {
		m.set(p+".port", at)
	}
}

// onFailure is halb's on_failure for keepalived's inhibit_on_failure.
func onFailure(inhibit bool) string {
	if inhibit {
		return "inhibit"
	}
	return "remove"
}

// serverOptions carries a real_server's own inhibit_on_failure and
// connection thresholds over to its halb server.
func (m *mapper) serverOptions(srv *config.Server, rs realServer, sp string) {
	if rs.onFailure != "" {
		srv.OnFailure = rs.onFailure
		m.set(sp+".on_failure", rs.onFailAt)
	}
	if rs.upper != 0 {
		srv.MaxConnections = rs.upper
		m.set(sp+".max_connections", rs.upperAt)
	}
	if rs.lower != 0 {
		if rs.upper == 0 {
			m.warnf(rs.lowerAt, "lthreshold without uthreshold: IPVS ignores a lower threshold alone, and halb leaves it out")
			return
		}
		srv.MinConnections = rs.lower
		m.set(sp+".min_connections", rs.lowerAt)
	}
}

// groupKey is an address, port and protocol of a virtual_server_group.
type groupKey struct {
	addr     netip.Addr
	port     uint16
	protocol string
}

// unclaimed leaves out of a group's entries the addresses an earlier group
// has on the same port and protocol. IPVS has one service for them, which
// the earlier group's virtual server makes; halb sends them to that
// group's servers, with a warning (keepalived adds the later group's
// servers to the same service).
func (m *mapper) unclaimed(group, protocol string, entries []vsEntry) []vsEntry {
	var out []vsEntry
	for _, e := range entries {
		if e.mark != 0 {
			out = append(out, e)
			continue
		}
		var keep []netip.Addr
		for _, a := range e.addrs {
			k := groupKey{a, e.port, protocol}
			if other, ok := m.claimed[k]; ok && other != group {
				m.warnf(e.at, "virtual_server_group %s: %s port %d/%s is also in virtual_server_group %s, whose service takes it: halb sends it to that group's servers only, where keepalived adds this group's servers to them",
					group, a, e.port, protocol, other)
				continue
			}
			m.claimed[k] = group
			keep = append(keep, a)
		}
		if len(keep) > 0 {
			e.addrs = keep
			out = append(out, e)
		}
	}
	return out
}
