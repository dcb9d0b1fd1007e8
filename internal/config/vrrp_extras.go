package config

import (
	"fmt"
	"net/netip"
	"reflect"
	"strconv"

	"go.yaml.in/yaml/v3"
)

// VIPOption is what a vips entry written as a mapping says besides its
// address, as the options of keepalived's virtual_ipaddress do:
//
//	vips: [192.0.2.9/24, {address: 192.0.2.10/24, dev: eth1, scope: link, label: eth1:vip}]
type VIPOption struct {
	Address netip.Prefix `yaml:"address"`
	// Dev is the interface the address goes on (default: the instance's).
	Dev string `yaml:"dev"`
	// Scope is the address scope: global (the default), site, link, host
	// or nowhere.
	Scope     string     `yaml:"scope"`
	Label     string     `yaml:"label"`
	Broadcast netip.Addr `yaml:"broadcast"`
	// Excluded addresses move with the instance but are not listed in
	// its adverts (keepalived's virtual_ipaddress_excluded).
	Excluded bool `yaml:"excluded"`
}

// VIPOption returns the options of VIP a, if it has any.
func (in Instance) VIPOption(a netip.Addr) (VIPOption, bool) {
	for _, o := range in.VIPOptions {
		if o.Address.Addr() == a {
			return o, true
		}
	}
	return VIPOption{}, false
}

// VIPDev is the interface VIP v goes on.
func (in Instance) VIPDev(v netip.Prefix) string {
	if o, ok := in.VIPOption(v.Addr()); ok && o.Dev != "" {
		return o.Dev
	}
	return in.Interface
}

// AdvertisedVIPs are the VIPs listed in the instance's adverts: all but
// the excluded ones.
func (in Instance) AdvertisedVIPs() []netip.Addr {
	out := make([]netip.Addr, 0, len(in.VIPs))
	for _, v := range in.VIPs {
		if o, ok := in.VIPOption(v.Addr()); !ok || !o.Excluded {
			out = append(out, v.Addr())
		}
	}
	return out
}

// decodeNode decodes an instance whose vips entries may be mappings
// (VIPOption) besides addresses: the options go to VIPOptions and the
// address to VIPs.
func (in *Instance) decodeNode(d *decoder, n *yaml.Node, path string) {
	if n.Kind == yaml.MappingNode {
		n = in.takeVIPOptions(d, n, path)
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return
	}
	d.decodeStruct(n, reflect.ValueOf(in).Elem(), path)
}

// takeVIPOptions decodes the vips entries of mapping n that are mappings
// into in.VIPOptions, and returns n with each of them replaced by its
// address.
func (in *Instance) takeVIPOptions(d *decoder, n *yaml.Node, path string) *yaml.Node {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value != "vips" || n.Content[i+1].Kind != yaml.SequenceNode {
			continue
		}
		seq := *n.Content[i+1]
		seq.Content = nil
		for _, item := range n.Content[i+1].Content {
			p := fmt.Sprintf("%s.vips[%d]", path, len(seq.Content))
			if item.Kind != yaml.MappingNode {
				seq.Content = append(seq.Content, item)
				continue
			}
			var o VIPOption
			d.decode(item, reflect.ValueOf(&o).Elem(), p)
			addr := valueOf(item, "address")
			if addr == nil {
				d.errorf(item, "%s: needs an address", displayPath(p))
				continue
			}
			in.VIPOptions = append(in.VIPOptions, o)
			seq.Content = append(seq.Content, addr)
		}
		out := *n
		out.Content = append([]*yaml.Node(nil), n.Content...)
		out.Content[i+1] = &seq
		return &out
	}
	return n
}

// valueOf is the value of key in mapping n, nil if absent.
func valueOf(n *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

// vrrpExtraDefaults fills in the defaults of instance in (at path p)
// that follow other settings.
func (c *Config) vrrpExtraDefaults(p string, in *Instance) {
	if !c.has(p + ".garp.lower_priority_count") {
		in.GARP.LowerPriorityCount = in.GARP.Count
	}
	if !c.has(p + ".garp.lower_priority_delay") {
		in.GARP.LowerPriorityDelay = in.GARP.SecondBurst
	}
	if in.VMAC && in.VMACName == "" {
		in.VMACName = fmt.Sprintf("vrrp.%d", in.VRID)
		if in.Family() == 6 {
			in.VMACName = fmt.Sprintf("vrrp6.%d", in.VRID)
		}
	}
}

// Route is a route halb adds: an instance's while it is master, a
// static one while halb runs.
type Route struct {
	To  netip.Prefix `yaml:"to"`
	Via netip.Addr   `yaml:"via"`
	Dev string       `yaml:"dev"`
	Src netip.Addr   `yaml:"src"`
	// Table 0 is the main table.
	Table  int `yaml:"table"`
	Metric int `yaml:"metric"`
	// Scope is global (the default), site, link, host or nowhere.
	Scope string `yaml:"scope"`
	// Type is unicast (the default), blackhole, unreachable or prohibit.
	Type string `yaml:"type"`
	// Protocol is the route's protocol: a name iproute2's rt_protos
	// knows (static, bird, keepalived, …) or a number 1-255; empty is
	// boot, the kernel's default.
	Protocol string `yaml:"protocol"`
}

// routeProtocols are the route protocols iproute2's rt_protos names.
var routeProtocols = map[string]uint8{"unspec": 0, "redirect": 1, "kernel": 2, "boot": 3, "static": 4,
	"gated": 8, "ra": 9, "mrt": 10, "zebra": 11, "bird": 12, "dnrouted": 13, "xorp": 14, "ntk": 15,
	"dhcp": 16, "keepalived": 18, "babel": 42, "openr": 99, "bgp": 186, "isis": 187, "ospf": 188,
	"rip": 189, "eigrp": 192}

// RouteProtocol is the number of a route protocol written as a name of
// iproute2's rt_protos or as a number 0-255.
func RouteProtocol(s string) (uint8, bool) {
	if n, ok := routeProtocols[s]; ok {
		return n, true
	}
	n, err := strconv.ParseUint(s, 10, 8)
	return uint8(n), err == nil
}

// ProtocolNumber is the number of the route's protocol; 0 when none is
// set (the kernel's default, boot).
func (r Route) ProtocolNumber() uint8 {
	n, _ := RouteProtocol(r.Protocol)
	return n
}

// Rule is a policy routing rule halb adds, as Route.
type Rule struct {
	From     netip.Prefix `yaml:"from"`
	To       netip.Prefix `yaml:"to"`
	Table    int          `yaml:"table"`
	Priority int          `yaml:"priority"`
	FWMark   uint32       `yaml:"fwmark"`
	IIF      string       `yaml:"iif"`
	OIF      string       `yaml:"oif"`
	// Family is 6 for an IPv6 rule without from and to (default 4).
	Family int `yaml:"family"`
}

// Static holds what halb adds at start and removes when it stops.
type Static struct {
	// Addresses are mappings as vips entries, with a dev.
	Addresses []VIPOption `yaml:"addresses"`
	Routes    []Route     `yaml:"routes"`
	Rules     []Rule      `yaml:"rules"`
}

// The VRRP multicast groups of RFC 5798.
var (
	vrrpGroup4 = netip.MustParseAddr("224.0.0.18")
	vrrpGroup6 = netip.MustParseAddr("ff02::12")
)

// Group is the multicast group of adverts of address family fam (4 or 6).
func (v VRRP) Group(fam int) netip.Addr {
	if fam == 6 {
		if v.MulticastGroup6.IsValid() {
			return v.MulticastGroup6
		}
		return vrrpGroup6
	}
	if v.MulticastGroup4.IsValid() {
		return v.MulticastGroup4
	}
	return vrrpGroup4
}

// Process is a process an instance tracks (keepalived's
// vrrp_track_process): up while between Quorum and QuorumMax processes
// (0: no maximum) match, found by scanning /proc every Interval.
type Process struct {
	Name string `yaml:"name"`
	// Command is the process name as ps shows it (or the path of the
	// program, with FullCommand); Args, when set, must begin its
	// arguments.
	Command     string   `yaml:"command"`
	Args        string   `yaml:"args"`
	FullCommand bool     `yaml:"full_command"`
	Quorum      int      `yaml:"quorum"`
	QuorumMax   int      `yaml:"quorum_max"`
	Weight      int      `yaml:"weight"`
	Interval    Duration `yaml:"interval"`
}

// processDefaults fills in the defaults of vrrp.processes.
func (c *Config) processDefaults() {
	for i := range c.VRRP.Processes {
		p := &c.VRRP.Processes[i]
		if p.Quorum == 0 && !c.has(fmt.Sprintf("vrrp.processes[%d].quorum", i)) {
			p.Quorum = 1
		}
		if p.Interval == 0 {
			p.Interval = Duration(1e9)
		}
	}
}
