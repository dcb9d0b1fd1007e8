package config

import (
	"fmt"
	"net/netip"
	"reflect"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// parsePortRange reads "443" or "10000-10100".
func parsePortRange(s string) (PortRange, error) {
	lo, hi, isRange := strings.Cut(s, "-")
	l, err := parsePort(strings.TrimSpace(lo))
	if err != nil {
		return PortRange{}, err
	}
	if !isRange {
		return PortRange{Lo: l, Hi: l}, nil
	}
	h, err := parsePort(strings.TrimSpace(hi))
	if err != nil {
		return PortRange{}, err
	}
	if h < l {
		return PortRange{}, fmt.Errorf("port range %q ends before it starts", s)
	}
	return PortRange{Lo: l, Hi: h}, nil
}

func parsePort(s string) (uint16, error) {
	p, err := strconv.Atoi(s)
	if err != nil || p < 1 || p > 65535 {
		return 0, fmt.Errorf("port %q is not a number from 1 to 65535", s)
	}
	return uint16(p), nil
}

func (p *PortRange) decodeNode(d *decoder, n *yaml.Node, path string) {
	if n.Kind != yaml.ScalarNode || (n.Tag != "!!int" && n.Tag != "!!str") {
		d.errorf(n, "%s: expected a port or a range \"A-B\", got %s", displayPath(path), kindName(n))
		return
	}
	r, err := parsePortRange(n.Value)
	if err != nil {
		d.errorf(n, "%s: %v", displayPath(path), err)
		return
	}
	*p = r
}

// String renders "443" or "10000-10100".
func (p PortRange) String() string {
	if p.Single() {
		return strconv.Itoa(int(p.Lo))
	}
	return fmt.Sprintf("%d-%d", p.Lo, p.Hi)
}

func (m *Mark) decodeNode(d *decoder, n *yaml.Node, path string) {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!int" {
		v, ok := scalarInt(n, 64)
		if !ok || v < 1 || v > 0xFFFFFFFF {
			d.errorf(n, "%s: mark %s is not a number from 1 to 4294967295", displayPath(path), n.Value)
			return
		}
		*m = Mark{Mode: MarkExternal, Value: uint32(v)}
		return
	}
	if n.Kind == yaml.ScalarNode {
		switch MarkMode(n.Value) {
		case MarkShared, MarkPerVIP, MarkNone:
			*m = Mark{Mode: MarkMode(n.Value)}
			return
		}
	}
	d.errorf(n, "%s: expected shared, per-vip, none or a mark number, got %s", displayPath(path), kindName(n))
}

// String renders the mark as written in the configuration.
func (m Mark) String() string {
	if m.Mode == MarkExternal {
		return strconv.FormatUint(uint64(m.Value), 10)
	}
	return string(m.Mode)
}

func (cs *Checks) decodeNode(d *decoder, n *yaml.Node, path string) {
	switch n.Kind {
	case yaml.MappingNode:
		var c Check
		d.decode(n, reflect.ValueOf(&c).Elem(), path+"[0]")
		*cs = Checks{c}
	case yaml.SequenceNode:
		out := make(Checks, len(n.Content))
		for i, item := range n.Content {
			d.decode(item, reflect.ValueOf(&out[i]).Elem(), fmt.Sprintf("%s[%d]", path, i))
		}
		*cs = out
	default:
		if n.Tag != "!!null" {
			d.errorf(n, "%s: expected a check or a list of checks, got %s", displayPath(path), kindName(n))
		}
	}
}

func (s *StatusRange) decodeNode(d *decoder, n *yaml.Node, path string) {
	if n.Kind != yaml.ScalarNode {
		d.errorf(n, "%s: expected a status code or a range \"200-299\", got %s", displayPath(path), kindName(n))
		return
	}
	lo, hi, isRange := strings.Cut(n.Value, "-")
	l, err1 := strconv.Atoi(strings.TrimSpace(lo))
	h := l
	var err2 error
	if isRange {
		h, err2 = strconv.Atoi(strings.TrimSpace(hi))
	}
	if err1 != nil || err2 != nil || l < 100 || h > 599 || h < l {
		d.errorf(n, "%s: %q is not an HTTP status code (100-599) or range of them", displayPath(path), n.Value)
		return
	}
	*s = StatusRange{Lo: l, Hi: h}
}

// Contains reports whether code is within the range.
func (s StatusRange) Contains(code int) bool { return code >= s.Lo && code <= s.Hi }

func (t *TrackedObject) decodeNode(d *decoder, n *yaml.Node, path string) {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!str" {
		*t = TrackedObject{Name: n.Value}
		return
	}
	if n.Kind != yaml.MappingNode {
		d.errorf(n, "%s: expected a name or {name, weight}, got %s", displayPath(path), kindName(n))
		return
	}
	type plain TrackedObject
	var p plain
	d.decodeStruct(n, reflect.ValueOf(&p).Elem(), path)
	*t = TrackedObject(p)
}

// parseHostPort reads "ADDRESS" or "ADDRESS:PORT" ("[V6]:PORT" for IPv6);
// a missing port is 0.
func parseHostPort(s string) (netip.AddrPort, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.AddrPortFrom(a.Unmap(), 0), nil
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%q is not ADDRESS or ADDRESS:PORT", s)
	}
	if ap.Port() == 0 {
		return netip.AddrPort{}, fmt.Errorf("%q: port 0", s)
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
}
