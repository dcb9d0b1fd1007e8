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
