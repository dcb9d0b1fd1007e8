package config

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

const vipOptionsYAML = `node: n
vrrp:
  instances:
    - name: vi
      interface: eth0
      vrid: 10
      priority: 100
      vips:
        - 192.0.2.9/24
        - {address: 192.0.2.10/24, dev: eth1, scope: link, label: eth1:vip, broadcast: 192.0.2.255}
        - {address: 192.0.2.11, excluded: true}
    - {name: quiet, interface: eth0, vrid: 11, priority: 100}
`

// TestVIPOptions: vips entries may be mappings with keepalived's
// options; plain addresses still work; an instance may have no VIPs.
func TestVIPOptions(t *testing.T) {
	c, diags := Parse("t.yaml", []byte(vipOptionsYAML), Options{})
	if c == nil || len(diags) > 0 {
		t.Fatalf("diagnostics: %s", diags)
	}
	in := c.VRRP.Instances[0]
	want := []netip.Prefix{netip.MustParsePrefix("192.0.2.9/24"), netip.MustParsePrefix("192.0.2.10/24"), netip.MustParsePrefix("192.0.2.11/32")}
	if !slices.Equal(in.VIPs, want) {
		t.Errorf("VIPs %v, want %v", in.VIPs, want)
	}
	o, ok := in.VIPOption(netip.MustParseAddr("192.0.2.10"))
	if !ok || o.Dev != "eth1" || o.Scope != "link" || o.Label != "eth1:vip" || o.Broadcast != netip.MustParseAddr("192.0.2.255") {
		t.Errorf("options of 192.0.2.10: %+v", o)
	}
	if in.VIPDev(want[0]) != "eth0" || in.VIPDev(want[1]) != "eth1" {
		t.Errorf("devices %s %s, want eth0 eth1", in.VIPDev(want[0]), in.VIPDev(want[1]))
	}
	if got := in.AdvertisedVIPs(); len(got) != 2 || got[1] != want[1].Addr() {
		t.Errorf("advertised %v, want the first two", got)
	}
	if len(c.VRRP.Instances[1].VIPs) != 0 {
		t.Errorf("quiet has VIPs %v", c.VRRP.Instances[1].VIPs)
	}
	if g := in.GARP; g.LowerPriorityCount != 5 || g.LowerPriorityDelay.D().Seconds() != 5 {
		t.Errorf("garp %+v, want the lower-priority burst to default to count and second_burst", g)
	}
}

func TestVIPOptionErrors(t *testing.T) {
	for _, tc := range []struct{ vip, want string }{
		{"{dev: eth1}", "t.yaml:9:11: vrrp.instances[0].vips[0]: needs an address"},
		{"{address: 192.0.2.9/24, scope: galaxy}", `t.yaml:9:42: vrrp.instances[0].vips[0].scope: "galaxy" is not global`},
		{"{address: 192.0.2.9/24, label: eth0:very-long-label}", `t.yaml:9:42: vrrp.instances[0].vips[0].label: "eth0:very-long-label" is longer than 15 characters`},
		{"{address: 2001:db8::9/64, broadcast: 192.0.2.255}", "t.yaml:9:48: vrrp.instances[0].vips[0].broadcast: a broadcast address is IPv4"},
		{"{address: 192.0.2.9/24, colour: red}", `t.yaml:9:35: vrrp.instances[0].vips[0]: unknown key "colour"`},
	} {
		src := "node: n\nvrrp:\n  instances:\n    - name: vi\n      interface: eth0\n      vrid: 10\n      priority: 100\n      vips:\n        - " + tc.vip + "\n"
		_, diags := Parse("t.yaml", []byte(src), Options{})
		if !strings.Contains(diags.String(), tc.want) {
			t.Errorf("%s: want %q, got:\n%s", tc.vip, tc.want, diags)
		}
	}
}

// TestVRRPExtrasErrors: routes, rules, static addresses, processes,
// multicast groups, the virtual MAC name and the namespace are checked,
// with located errors.
func TestVRRPExtrasErrors(t *testing.T) {
	src := `node: n
net_namespace: a/b
vrrp:
  multicast_group4: 192.0.2.1
  multicast_group6: ff02::12
  static:
    addresses: [{address: 192.0.2.9/24}]
    routes: [{via: 192.0.2.1}, {to: 198.51.100.0/24, via: 2001:db8::1, type: nat}, {to: 203.0.113.0/24, protocol: quagga}, {to: 203.0.113.0/25, protocol: 256}, {to: 203.0.113.0/26, protocol: unspec}]
    rules: [{from: 192.0.2.0/24, to: 2001:db8::/32}]
  processes:
    - {name: web, quorum: 3, quorum_max: 2}
  instances:
    - name: vi
      interface: eth0
      vrid: 10
      priority: 100
      vips: [192.0.2.100/24]
      vmac: true
      vmac_name: a-name-that-is-too-long
      track_processes: [db]
      garp: {lower_priority_count: -1}
`
	_, diags := Parse("t.yaml", []byte(src), Options{})
	got := diags.String()
	for _, want := range []string{
		`t.yaml:2:16: net_namespace: "a/b" is not a namespace name`,
		"t.yaml:4:21: vrrp.multicast_group4: 192.0.2.1 is not an IPv4 multicast address",
		"t.yaml:7:17: vrrp.static.addresses[0]: a static address needs an address and a dev",
		"t.yaml:8:14: vrrp.static.routes[0]: a route needs to",
		"t.yaml:8:59: vrrp.static.routes[1].via: 2001:db8::1 is not of the destination's address family",
		`t.yaml:8:78: vrrp.static.routes[1].type: "nat" is not unicast, blackhole, unreachable or prohibit`,
		`t.yaml:8:115: vrrp.static.routes[2].protocol: "quagga" is not a route protocol`,
		`t.yaml:8:155: vrrp.static.routes[3].protocol: "256" is not a route protocol`,
		`t.yaml:8:192: vrrp.static.routes[4].protocol: "unspec" is protocol 0 (unspec), which halb cannot add a route with`,
		"t.yaml:9:13: vrrp.static.rules[0].table: a rule needs a table",
		"t.yaml:9:38: vrrp.static.rules[0].to: 2001:db8::/32 is not of from's address family",
		"t.yaml:11:7: vrrp.processes[0].command: needs the process name or path",
		"t.yaml:11:7: vrrp.processes[0]: quorum 3 and quorum_max 2",
		`t.yaml:19:18: vrrp.instances[0].vmac_name: "a-name-that-is-too-long" is not a name for a new interface`,
		`t.yaml:20:25: vrrp.instances[0].track_processes[0]: no process named "db"`,
		"t.yaml:21:36: vrrp.instances[0].garp.lower_priority_count: must not be negative",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("no %q in:\n%s", want, got)
		}
	}
	if strings.Contains(got, "multicast_group6") {
		t.Errorf("the RFC's IPv6 group refused:\n%s", got)
	}
}

// TestRouteProtocol: a route's protocol is an rt_protos name or a
// number, read from YAML either way; none set is 0 (the kernel's boot).
func TestRouteProtocol(t *testing.T) {
	src := `node: n
vrrp:
  static:
    routes:
      - {to: 198.51.100.0/24, type: blackhole, protocol: bird}
      - {to: 198.51.100.0/25, type: blackhole, protocol: 250}
      - {to: 198.51.100.0/26, type: blackhole, protocol: keepalived}
      - {to: 198.51.100.0/27, type: blackhole}
`
	c, diags := Parse("t.yaml", []byte(src), Options{})
	if c == nil || len(diags) > 0 {
		t.Fatalf("diagnostics: %s", diags)
	}
	var got []uint8
	for _, r := range c.VRRP.Static.Routes {
		got = append(got, r.ProtocolNumber())
	}
	if want := []uint8{12, 250, 18, 0}; !slices.Equal(got, want) {
		t.Errorf("protocols %v, want %v", got, want)
	}
}
