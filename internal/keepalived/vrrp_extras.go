package keepalived

import (
	"fmt"
	"net/netip"
	"reflect"
	"strings"

	"go.yaml.in/yaml/v3"

	"halb/internal/config"
)

// The keepalived keywords of VRRP that halb maps onto its own VIP
// options and announcement settings, and those it accepts with a
// warning that says what it does instead.

// Warnings for the keywords halb accepts without doing what keepalived
// does.
const (
	vmacNames = "halb names a virtual MAC interface vrrp.VRID (vrrp6.VRID for IPv6) unless use_vmac names it, and gives it the virtual router MAC 00:00:5e:00:01:VRID (00:00:5e:00:02:VRID)"
)

// useVMAC maps "use_vmac [NAME]" of instance in at path p.
func (m *mapper) useVMAC(in *config.Instance, p string) handler {
	return func(n *Node) {
		in.VMAC = true
		m.set(p+".vmac", n.Pos)
		if len(n.Args) > 0 {
			in.VMACName = n.Arg(0)
			m.set(p+".vmac_name", n.ArgPos(0))
		}
	}
}

// mcastGroup maps vrrp_mcast_group4/6 onto *group at path.
func (m *mapper) mcastGroup(group *netip.Addr, path string) handler {
	return func(n *Node) {
		if a, ok := m.addrArg(n, 0); ok {
			*group = a
			m.set(path, n.ArgPos(0))
		}
	}
}

// lowerPrioGARP maps garp_lower_prio_delay (field lower_priority_delay)
// and garp_lower_prio_repeat (lower_priority_count) to g, reporting
// whether the value was read.
func (m *mapper) lowerPrioGARP(n *Node, field string, g *config.GARP) bool {
	if field == "lower_priority_delay" {
		d, ok := m.timerArg(n, 0)
		g.LowerPriorityDelay = d
		return ok
	}
	v, ok := m.intArg(n, 0, 0, 1<<16)
	g.LowerPriorityCount = v
	return ok
}

// globalLowerPrioGARP is the handler of vrrp_garp_lower_prio_delay and
// _repeat in global_defs: defaults of every instance.
func (m *mapper) globalLowerPrioGARP(field string) handler {
	return func(n *Node) {
		if m.lowerPrioGARP(n, field, &m.globalGARP) {
			m.garp[field] = n.Pos
		}
	}
}

// instanceLowerPrioGARP is the handler of garp_lower_prio_delay and
// _repeat in a vrrp_instance.
func (m *mapper) instanceLowerPrioGARP(in *config.Instance, p, field string) handler {
	return func(n *Node) {
		if m.lowerPrioGARP(n, field, &in.GARP) {
			m.set(p+".garp."+field, n.ArgPos(0))
		}
	}
}

// vips maps the lines of virtual_ipaddress (excluded false) or
// virtual_ipaddress_excluded (true) of instance in at path p.
func (m *mapper) vips(in *config.Instance, p string, excluded bool) handler {
	return func(c *Node) {
		for _, v := range words(c) {
			o, ok := m.vipLine(v)
			if !ok {
				continue
			}
			o.Excluded = excluded
			if o.Dev == in.Interface {
				o.Dev = ""
			}
			in.VIPs = append(in.VIPs, o.Address)
			vp := fmt.Sprintf("%s.vips[%d]", p, len(in.VIPs)-1)
			m.set(vp, v.Pos)
			if o != (config.VIPOption{Address: o.Address}) {
				in.VIPOptions = append(in.VIPOptions, o)
				m.set(vp+".address", v.Pos)
			}
		}
	}
}

// vipLine reads one line of virtual_ipaddress:
// ADDR[/LEN] [dev IF] [brd ADDR] [scope S] [label L] [...].
func (m *mapper) vipLine(v *Node) (config.VIPOption, bool) {
	var o config.VIPOption
	s := v.Name
	if !strings.Contains(s, "/") {
		s += "/-"
	}
	addr, bits, _ := strings.Cut(s, "/")
	a, err := netip.ParseAddr(addr)
	if err != nil {
		m.warnf(v.Pos, "virtual_ipaddress: %q is not an address: keepalived skips it, and so does halb%s", v.Name, m.undefinedHint(v.Name))
		return o, false
	}
	a = a.Unmap()
	pfx := netip.PrefixFrom(a, a.BitLen())
	if bits != "-" {
		if pfx, err = netip.ParsePrefix(a.String() + "/" + bits); err != nil {
			m.errorf(v.Pos, "virtual_ipaddress: %q is not ADDRESS or ADDRESS/LENGTH", v.Name)
			return o, false
		}
	}
	o.Address = pfx
	for i := 0; i < len(v.Args); i++ {
		opt := v.Arg(i)
		value := func() (string, bool) {
			if i+1 >= len(v.Args) {
				m.errorf(v.ArgPos(i), "virtual_ipaddress: %s needs a value", opt)
				return "", false
			}
			i++
			return v.Arg(i), true
		}
		switch opt {
		case "dev":
			o.Dev, _ = value()
		case "scope":
			sc, _ := value()
			o.Scope = scopeName(sc)
		case "label":
			o.Label, _ = value()
		case "brd":
			b, ok := value()
			if !ok {
				continue
			}
			if b == "+" || b == "-" {
				m.warnf(v.ArgPos(i), "virtual_ipaddress: brd %s is not supported: halb lets the kernel derive the broadcast address from the prefix", b)
				continue
			}
			if o.Broadcast, err = netip.ParseAddr(b); err != nil {
				m.errorf(v.ArgPos(i), "virtual_ipaddress: brd %q is not an address", b)
			}
		case "broadcast":
			m.warnf(v.ArgPos(i), "virtual_ipaddress: broadcast is not supported: halb lets the kernel derive the broadcast address from the prefix")
		case "peer", "metric", "preferred_lft":
			m.warnf(v.ArgPos(i), "virtual_ipaddress: %s is not supported: halb adds the address with the kernel's defaults", opt)
			i++
		case "no_track", "home", "-nodad", "nodad", "noprefixroute", "autojoin":
			m.warnf(v.ArgPos(i), "virtual_ipaddress: %s is not supported: halb adds the address with the kernel's defaults", opt)
		default:
			m.errorf(v.ArgPos(i), "virtual_ipaddress: unknown option %q", opt)
		}
	}
	return o, true
}

// instanceValue renders an instance, writing the VIPs that have options
// as mappings.
func (r *renderer) instanceValue(v reflect.Value, in config.Instance, path string) *yaml.Node {
	n := r.structValue(v, path)
	if n == nil || len(in.VIPOptions) == 0 {
		return n
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value != "vips" {
			continue
		}
		seq := n.Content[i+1]
		for j, vip := range in.VIPs {
			o, ok := in.VIPOption(vip.Addr())
			if !ok || j >= len(seq.Content) {
				continue
			}
			item := r.structValue(reflect.ValueOf(o), fmt.Sprintf("%s.vips[%d]", path, j))
			item.HeadComment = seq.Content[j].HeadComment
			seq.Content[j] = flow(item)
		}
		seq.Style = 0
	}
	return n
}

// trackWeight is the handler of a tracker's weight, which sets w at path.
// keepalived's reverse is refused: halb adds a positive weight while up
// holds and subtracts a negative one while down does.
func (m *mapper) trackWeight(path string, w *int, up, down string) handler {
	return func(n *Node) {
		*w, _ = m.intArg(n, 0, -253, 253)
		m.set(path, n.ArgPos(0))
		if n.Arg(1) == "reverse" {
			m.errorf(n.ArgPos(1), "weight reverse is not supported: halb adds a positive weight while %s and subtracts a negative one while %s", up, down)
		}
	}
}

// flag is the handler of a keyword that sets a boolean at path.
func (m *mapper) flag(path string, b *bool) handler {
	return func(n *Node) {
		*b = true
		m.set(path, n.Pos)
	}
}
