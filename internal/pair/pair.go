// Package pair checks two nodes' configurations as a pair, for what
// neither file shows alone and what splits a pair's brain: the same VRRP
// routers (VRID, VIPs, version) with a clear master, and the same
// services, pools and marks, so that the node taking over forwards as the
// other did and builds the same Maglev tables.
package pair

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"halb/internal/config"
)

// Check returns the problems of a and b as a pair. Each is located in
// the file that has the value (b's when both do) and names the other
// file's value.
func Check(a, b *config.Config) config.Diagnostics {
	c := &checker{a: a, b: b}
	if a.Node == b.Node {
		c.errorf(b, "node", "node: both files are node %q; each node needs its own name", a.Node)
	}
	c.instances()
	c.services()
	c.pools()
	return c.diags
}

type checker struct {
	a, b  *config.Config
	diags config.Diagnostics
}

func (c *checker) add(cfg *config.Config, sev config.Severity, path, format string, args ...any) {
	c.diags = append(c.diags, config.Diagnostic{File: cfg.File, Pos: position(cfg, path), Severity: sev,
		Message: fmt.Sprintf(format, args...)})
}

func (c *checker) errorf(cfg *config.Config, path, format string, args ...any) {
	c.add(cfg, config.Error, path, format, args...)
}

// position locates path in cfg, or the nearest enclosing value it can.
func position(cfg *config.Config, path string) config.Pos {
	for path != "" {
		if p, ok := cfg.PositionOf(path); ok {
			return p
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			break
		}
		path = path[:i]
	}
	return config.Pos{Line: 1, Col: 1}
}

// differ reports a value that differs: at path in b, naming a's value.
func (c *checker) differ(path, what string, bv, av any) {
	c.errorf(c.b, path, "%s: %s here but %s in %s", path, what+" "+text(bv), text(av), c.a.File)
}

func text(v any) string {
	s := fmt.Sprint(v)
	if s == "" || s == "[]" {
		return "none"
	}
	return s
}

// matched pairs up the items of a and b with the same name; it reports
// an item of one file that the other lacks.
func matched[T any](c *checker, what, list string, as, bs []T, name func(T) string, f func(ai, bi int)) {
	for i, x := range as {
		j := slices.IndexFunc(bs, func(y T) bool { return name(y) == name(x) })
		if j < 0 {
			c.errorf(c.a, fmt.Sprintf("%s[%d]", list, i), "%s[%d]: %s %q is not in %s", list, i, what, name(x), c.b.File)
			continue
		}
		f(i, j)
	}
	for j, y := range bs {
		if !slices.ContainsFunc(as, func(x T) bool { return name(x) == name(y) }) {
			c.errorf(c.b, fmt.Sprintf("%s[%d]", list, j), "%s[%d]: %s %q is not in %s", list, j, what, name(y), c.a.File)
		}
	}
}

func (c *checker) instances() {
	matched(c, "VRRP instance", "vrrp.instances", c.a.VRRP.Instances, c.b.VRRP.Instances,
		func(in config.Instance) string { return in.Name }, func(i, j int) {
			a, b := c.a.VRRP.Instances[i], c.b.VRRP.Instances[j]
			p := fmt.Sprintf("vrrp.instances[%d]", j)
			if a.VRID != b.VRID {
				c.differ(p+".vrid", "VRID", b.VRID, a.VRID)
			}
			if !sameSet(a.VIPs, b.VIPs, netip.Prefix.String) {
				c.differ(p+".vips", "VIPs", b.VIPs, a.VIPs)
			}
			if a.Version != b.Version {
				c.differ(p+".version", "VRRP version", b.Version, a.Version)
			}
			if authOf(a) != authOf(b) {
				c.differ(p+".auth_type", "authentication", authOf(b), authOf(a))
			} else if a.AuthPassword != b.AuthPassword {
				c.errorf(c.b, p+".auth_password", "%s.auth_password: not the one in %s: each node would drop the other's adverts", p, c.a.File)
			}
			if a.AdvertInterval != b.AdvertInterval {
				c.add(c.b, config.Warning, p+".advert_interval", "%s.advert_interval: %s here but %s in %s",
					p, b.AdvertInterval.D(), a.AdvertInterval.D(), c.a.File)
			}
			if a.Priority == b.Priority && a.Preempt == b.Preempt {
				c.errorf(c.b, p+".priority", "%s.priority: %d on both nodes, and %s: which node is master would depend on their addresses; "+
					"give them different priorities, or let exactly one preempt", p, b.Priority, preempts(a.Preempt))
			}
		})
}

// authOf names an instance's authentication: none, pass or ah.
func authOf(in config.Instance) string {
	switch {
	case in.AuthPassword == "":
		return "none"
	case in.AuthType == "ah":
		return "ah"
	}
	return "pass"
}

func preempts(p bool) string {
	if p {
		return "both preempt"
	}
	return "neither preempts"
}

func (c *checker) services() {
	matched(c, "service", "services", c.a.Services, c.b.Services,
		func(s config.Service) string { return s.Name }, func(i, j int) {
			a, b := c.a.Services[i], c.b.Services[j]
			p := fmt.Sprintf("services[%d]", j)
			for _, f := range []struct {
				key, what string
				a, b      any
			}{
				{"protocol", "protocol", a.Protocol, b.Protocol},
				{"ports", "ports", ports(a.Ports), ports(b.Ports)},
				{"mark", "mark", mark(a.Mark), mark(b.Mark)},
				{"scheduler", "scheduler", a.Scheduler, b.Scheduler},
				{"forward", "forward", a.Forward, b.Forward},
				{"persistence", "persistence", a.Persistence, b.Persistence},
				{"pool", "pool", a.Pool, b.Pool},
				{"maglev_size", "Maglev table size", a.MaglevSize, b.MaglevSize},
				{"tunnel", "tunnel", a.Tunnel, b.Tunnel},
			} {
				if f.a != f.b {
					c.differ(p+"."+f.key, f.what, f.b, f.a)
				}
			}
			if !sameSet(a.VIPs, b.VIPs, netip.Addr.String) {
				c.differ(p+".vips", "VIPs", b.VIPs, a.VIPs)
			}
		})
}

func ports(ps []config.PortRange) string {
	var out []string
	for _, p := range ps {
		if p.Single() {
			out = append(out, fmt.Sprint(p.Lo))
		} else {
			out = append(out, fmt.Sprintf("%d-%d", p.Lo, p.Hi))
		}
	}
	return strings.Join(out, ",")
}

func mark(m config.Mark) string {
	if m.Mode == config.MarkExternal {
		return fmt.Sprintf("%#x", m.Value)
	}
	return string(m.Mode)
}

func (c *checker) pools() {
	names := func(cfg *config.Config) []string {
		var out []string
		for n := range cfg.Pools {
			out = append(out, n)
		}
		slices.Sort(out)
		return out
	}
	an, bn := names(c.a), names(c.b)
	for _, n := range an {
		if _, ok := c.b.Pools[n]; !ok {
			c.errorf(c.a, "pools."+n, "pools.%s: pool %q is not in %s", n, n, c.b.File)
		}
	}
	for _, n := range bn {
		a, ok := c.a.Pools[n]
		if !ok {
			c.errorf(c.b, "pools."+n, "pools.%s: pool %q is not in %s", n, n, c.a.File)
			continue
		}
		b := c.b.Pools[n]
		p := "pools." + n
		server := func(s config.Server) string {
			return fmt.Sprintf("%s weight %d", netip.AddrPortFrom(s.Address, s.Port), s.Weight)
		}
		if !sameSet(a.Servers, b.Servers, server) {
			c.errorf(c.b, p+".servers", "%s.servers: %s here but %s in %s", p, servers(b.Servers, server), servers(a.Servers, server), c.a.File)
		}
		if a.Quorum != b.Quorum {
			c.differ(p+".quorum", "quorum", b.Quorum, a.Quorum)
		}
		if a.SorryServer != b.SorryServer {
			c.differ(p+".sorry_server", "sorry server", b.SorryServer, a.SorryServer)
		}
	}
}

func servers(ss []config.Server, name func(config.Server) string) string {
	var out []string
	for _, s := range ss {
		out = append(out, name(s))
	}
	slices.Sort(out)
	return "[" + strings.Join(out, ", ") + "]"
}

// sameSet tells whether a and b hold the same items, by name, in any
// order.
func sameSet[T any](a, b []T, name func(T) string) bool {
	set := func(xs []T) []string {
		out := make([]string, 0, len(xs))
		for _, x := range xs {
			out = append(out, name(x))
		}
		slices.Sort(out)
		return slices.Compact(out)
	}
	return slices.Equal(set(a), set(b))
}
