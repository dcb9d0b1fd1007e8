package keepalived

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"halb/internal/config"
)

// The lines of virtual_routes, virtual_rules, static_routes, static_rules
// and static_ipaddress, mapped onto halb's routes, rules and static
// addresses.

// routeLines maps the lines of a routes block onto *routes at path.
func (m *mapper) routeLines(routes *[]config.Route, path string) handler {
	return func(c *Node) {
		for _, w := range words(c) {
			if r, ok := m.routeLine(w); ok {
				*routes = append(*routes, r)
				m.set(fmt.Sprintf("%s[%d]", path, len(*routes)-1), w.Pos)
			}
		}
	}
}

// ruleLines maps the lines of a rules block onto *rules at path.
func (m *mapper) ruleLines(rules *[]config.Rule, path string) handler {
	return func(c *Node) {
		for _, w := range words(c) {
			if r, ok := m.ruleLine(w); ok {
				*rules = append(*rules, r)
				m.set(fmt.Sprintf("%s[%d]", path, len(*rules)-1), w.Pos)
			}
		}
	}
}

// staticAddresses maps static_ipaddress: lines as virtual_ipaddress's,
// on eth0 when they name no dev (keepalived's default_interface).
func (m *mapper) staticAddresses(c *Node) {
	s := &m.cfg.VRRP.Static
	for _, w := range words(c) {
		o, ok := m.vipLine(w)
		if !ok {
			continue
		}
		if o.Dev == "" {
			o.Dev = "eth0"
		}
		s.Addresses = append(s.Addresses, o)
		p := fmt.Sprintf("vrrp.static.addresses[%d]", len(s.Addresses)-1)
		m.set(p, w.Pos)
		m.set(p+".address", w.Pos)
		m.set(p+".dev", w.Pos)
	}
}

// tokens are a line's words: its keyword, then its arguments.
func tokens(w *Node) []Token {
	return append([]Token{{Val: w.Name, Pos: w.Pos}}, w.Args...)
}

// routeLine reads "[src ADDR] [to] DEST|default [via|gw ADDR] [dev IF]
// [scope S] [table N] [metric N] [protocol P] [TYPE] …". A route without
// a protocol has keepalived's, keepalived (18), as keepalived adds it.
func (m *mapper) routeLine(w *Node) (config.Route, bool) {
	r := config.Route{Protocol: "keepalived"}
	ts := tokens(w)
	ok := true
	def := false
	for i := 0; i < len(ts); i++ {
		t := ts[i]
		value := func() (Token, bool) {
			if i+1 >= len(ts) {
				m.errorf(t.Pos, "route: %s needs a value", t.Val)
				ok = false
				return Token{}, false
			}
			i++
			return ts[i], true
		}
		addr := func() netip.Addr {
			v, has := value()
			if !has {
				return netip.Addr{}
			}
			a, err := netip.ParseAddr(v.Val)
			if err != nil {
				m.errorf(v.Pos, "route: %s %q is not an address", t.Val, v.Val)
				ok = false
			}
			return a.Unmap()
		}
		number := func() int {
			v, has := value()
			if !has {
				return 0
			}
			n, err := strconv.Atoi(v.Val)
			if err != nil || n < 0 {
				m.errorf(v.Pos, "route: %s %q is not a number", t.Val, v.Val)
				ok = false
			}
			return n
		}
		switch t.Val {
		case "src":
			r.Src = addr()
		case "via", "gw":
			r.Via = addr()
		case "or":
			m.warnf(t.Pos, "route: or (a multipath route) is not supported: halb adds the route through the first gateway only")
			value()
		case "dev", "oif":
			v, _ := value()
			r.Dev = v.Val
		case "scope":
			v, _ := value()
			r.Scope = scopeName(v.Val)
		case "table":
			v, has := value()
			if has {
				r.Table, ok = m.table(v)
			}
		case "metric", "preference", "priority":
			r.Metric = number()
		case "blackhole", "unreachable", "prohibit", "unicast":
			r.Type = t.Val
		case "to":
		case "default":
			def = true
		case "proto", "protocol":
			if v, has := value(); has {
				r.Protocol = m.routeProtocol(v)
			}
		case "mtu", "advmss", "realm", "realms", "tos", "dsfield", "initcwnd", "initrwnd", "features",
			"quickack", "rtt", "rttvar", "window", "cwnd", "ssthresh", "hoplimit", "expires", "pref", "encap", "nexthop":
			m.warnf(t.Pos, "route: %s is not supported: halb adds the route with the kernel's defaults", t.Val)
			value()
		case "onlink", "no_track", "lock", "fastopen_no_cookie":
			m.warnf(t.Pos, "route: %s is not supported: halb adds the route with the kernel's defaults", t.Val)
		default:
			p, err := parsePrefix(t.Val)
			if err != nil || r.To.IsValid() || def {
				m.errorf(t.Pos, "route: unknown option %q", t.Val)
				ok = false
				continue
			}
			r.To = p
		}
	}
	if def {
		r.To = netip.MustParsePrefix("0.0.0.0/0")
		if r.Via.Is6() || r.Src.Is6() {
			r.To = netip.MustParsePrefix("::/0")
		}
	}
	if ok && !r.To.IsValid() {
		m.errorf(w.Pos, "route: no destination")
		ok = false
	}
	return r, ok
}

// ruleLine reads "[from ADDR|all] [to ADDR|all] [fwmark N] [iif IF]
// [oif IF] [priority N] table N …".
func (m *mapper) ruleLine(w *Node) (config.Rule, bool) {
	var r config.Rule
	ts := tokens(w)
	ok := true
	for i := 0; i < len(ts); i++ {
		t := ts[i]
		value := func() (Token, bool) {
			if i+1 >= len(ts) {
				m.errorf(t.Pos, "rule: %s needs a value", t.Val)
				ok = false
				return Token{}, false
			}
			i++
			return ts[i], true
		}
		prefix := func() netip.Prefix {
			v, has := value()
			if !has || v.Val == "all" {
				return netip.Prefix{}
			}
			p, err := parsePrefix(v.Val)
			if err != nil {
				m.errorf(v.Pos, "rule: %s %q is not an address", t.Val, v.Val)
				ok = false
			}
			return p
		}
		switch t.Val {
		case "from":
			r.From = prefix()
		case "to":
			r.To = prefix()
		case "table", "lookup":
			v, has := value()
			if has {
				r.Table, ok = m.table(v)
			}
		case "priority", "preference", "pref", "order":
			v, has := value()
			if n, err := strconv.Atoi(v.Val); has && (err != nil || n < 0) {
				m.errorf(v.Pos, "rule: %s %q is not a number", t.Val, v.Val)
				ok = false
			} else {
				r.Priority = n
			}
		case "fwmark":
			v, has := value()
			if !has {
				continue
			}
			mark, mask, masked := strings.Cut(v.Val, "/")
			n, err := strconv.ParseUint(mark, 0, 32)
			if err != nil {
				m.errorf(v.Pos, "rule: fwmark %q is not a number", v.Val)
				ok = false
			}
			if masked {
				m.warnf(v.Pos, "rule: fwmark mask %s is not supported: halb matches the whole mark", mask)
			}
			r.FWMark = uint32(n)
		case "iif":
			v, _ := value()
			r.IIF = v.Val
		case "oif":
			v, _ := value()
			r.OIF = v.Val
		case "no_track":
			m.warnf(t.Pos, "rule: no_track is not supported: halb adds the rule while the instance is master")
		default:
			m.errorf(t.Pos, "rule: %s is not supported: halb matches from, to, fwmark, iif and oif, and looks up a table", t.Val)
			ok = false
		}
	}
	if r.From.Addr().Is6() || r.To.Addr().Is6() {
		r.Family = 6
	}
	return r, ok
}

// table reads a routing table: a number, or main, local or default.
func (m *mapper) table(v Token) (int, bool) {
	switch v.Val {
	case "main":
		return 254, true
	case "local":
		return 255, true
	case "default":
		return 253, true
	}
	n, err := strconv.ParseUint(v.Val, 10, 32)
	if err != nil {
		m.errorf(v.Pos, "table %q is not a number, main, local or default", v.Val)
		return 0, false
	}
	return int(n), true
}

// routeProtocol reads a route's protocol as keepalived does: a number
// (decimal, 0x hexadecimal or 0 octal) up to 255, or a name of
// rt_protos ("none" is keepalived's name of 0). Protocol 0 is left out,
// with a warning: halb adds such a route with protocol boot.
func (m *mapper) routeProtocol(v Token) string {
	name := v.Val
	if n, err := strconv.ParseUint(v.Val, 0, 8); err == nil {
		name = strconv.FormatUint(n, 10)
	} else if v.Val == "none" {
		name = "0"
	}
	n, ok := config.RouteProtocol(name)
	switch {
	case !ok:
		m.errorf(v.Pos, "route: protocol %q is not a number up to 255 or a name of rt_protos (keepalived skips the route)", v.Val)
		return ""
	case n == 0:
		m.warnf(v.Pos, "route: protocol %s (unspec) cannot be set by halb: it adds the route with protocol boot, the kernel's default", v.Val)
		return ""
	}
	return name
}

// scopeName is ip's scope name of a number or name.
func scopeName(s string) string {
	switch s {
	case "0", "universe":
		return "global"
	case "200":
		return "site"
	case "253":
		return "link"
	case "254":
		return "host"
	case "255":
		return "nowhere"
	}
	return s
}

// parsePrefix reads ADDRESS or ADDRESS/LENGTH.
func parsePrefix(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return p, err
	}
	return netip.PrefixFrom(p.Addr().Unmap(), p.Bits()).Masked(), nil
}
