package config

import (
	"strings"
	"testing"
	"time"
)

// bgpBase adds to base a service on a BGP-announced VIP and a bgp section.
var bgpBase = strings.Replace(base, "pools:\n", `  - name: anycast
    vips: [203.0.113.10]
    ports: [80]
    scheduler: mh
    scheduler_flags: [mh-port]
    pool: www
pools:
`, 1) + `bgp:
  asn: 65010
  router_id: 192.0.2.11
  peers:
    - {address: 192.0.2.1, asn: 65000, hold_time: 3s, bfd: {interval: 100ms, multiplier: 3}}
  announce:
    - {vips: [203.0.113.10], communities: ["65010:100"], med: 10}
`

func TestBGPConfig(t *testing.T) {
	c, diags := Parse("t.yaml", []byte(bgpBase), Options{})
	if c == nil || len(diags) != 0 {
		t.Fatalf("bgp base config: %v", diags)
	}
	b := c.BGP
	if !b.Enabled() || b.ASN != 65010 || b.RouterID.String() != "192.0.2.11" || b.DrainTime.D() != DefaultBGPDrainTime {
		t.Errorf("bgp = %+v", b)
	}
	p := b.Peers[0]
	if p.Address.String() != "192.0.2.1" || p.ASN != 65000 || p.HoldTime.D() != 3*time.Second ||
		p.BFD == nil || p.BFD.Interval.D() != 100*time.Millisecond || p.BFD.Multiplier != 3 {
		t.Errorf("peer = %+v (bfd %+v)", p, p.BFD)
	}
	a := b.Announce[0]
	if len(a.Communities) != 1 || a.Communities[0] != 65010<<16|100 || a.Communities[0].String() != "65010:100" || a.MED != 10 {
		t.Errorf("announce = %+v", a)
	}
	if got := c.BGPVIPs(); len(got) != 1 || got[0].String() != "203.0.113.10" {
		t.Errorf("BGPVIPs = %v", got)
	}
}

func TestBGPDefaults(t *testing.T) {
	src := strings.Replace(bgpBase, "hold_time: 3s, bfd: {interval: 100ms, multiplier: 3}", "bfd: {}", 1)
	src = strings.Replace(src, "  router_id: 192.0.2.11\n", "", 1)
	c, diags := Parse("t.yaml", []byte(src), Options{})
	if c == nil {
		t.Fatalf("config: %v", diags)
	}
	p := c.BGP.Peers[0]
	if p.HoldTime.D() != DefaultBGPHoldTime || p.BFD.Interval.D() != DefaultBFDInterval || p.BFD.Multiplier != DefaultBFDMultiplier {
		t.Errorf("defaults: hold %s, bfd %+v", p.HoldTime, p.BFD)
	}
	if c.BGP.RouterID.IsValid() {
		t.Errorf("router_id set without being written")
	}
	if c, _ := Parse("t.yaml", []byte(base), Options{}); c.BGP.Enabled() {
		t.Errorf("bgp enabled without a bgp section")
	}
}

func TestBGPValidation(t *testing.T) {
	peer := "    - {address: 192.0.2.1, asn: 65000, hold_time: 3s, bfd: {interval: 100ms, multiplier: 3}}\n"
	tests := []struct {
		name, old, new string
		want           string
	}{
		{"reserved asn", "asn: 65010", "asn: 23456", "t.yaml:26:8: bgp.asn: 23456 is a reserved AS number"},
		{"asn too large", "asn: 65010", "asn: 4294967296", "t.yaml:26:8: bgp.asn: expected an integer from 0 to 4294967295"},
		{"no asn", "  asn: 65010\n", "", "t.yaml:26:3: bgp: asn is required"},
		{"router id v6", "router_id: 192.0.2.11", "router_id: 2001:db8::1", "t.yaml:27:14: bgp.router_id: 2001:db8::1 is not an IPv4 address"},
		{"router id garbage", "router_id: 192.0.2.11", "router_id: lb-a", `t.yaml:27:14: bgp.router_id: bad IP address "lb-a"`},
		{"duplicate peer", peer, peer + "    - {address: 192.0.2.1, asn: 65001}\n", "t.yaml:30:17: bgp.peers[1].address: peer 192.0.2.1 is already bgp.peers[0]"},
		{"peer asn missing", "asn: 65000, ", "", "t.yaml:29:7: bgp.peers[0]: asn is required"},
		{"peer asn reserved", "asn: 65000", "asn: 0", "t.yaml:29:33: bgp.peers[0].asn: 0 is a reserved AS number"},
		{"hold time short", "hold_time: 3s", "hold_time: 2s", "t.yaml:29:51: bgp.peers[0].hold_time: 2s is not whole seconds of at least 3s"},
		{"hold time zero", "hold_time: 3s", "hold_time: 0s", "t.yaml:29:51: bgp.peers[0].hold_time: 0s is not whole seconds"},
		{"hold time fraction", "hold_time: 3s", "hold_time: 3500ms", "t.yaml:29:51: bgp.peers[0].hold_time: 3.5s is not whole seconds"},
		{"relative password file", "hold_time: 3s", "hold_time: 3s, password_file: bgp.pw", `t.yaml:29:70: bgp.peers[0].password_file: "bgp.pw" must be an absolute path`},
		{"bfd interval", "interval: 100ms", "interval: 1ms", "t.yaml:29:71: bgp.peers[0].bfd.interval: 1ms is not whole milliseconds of at least 10ms"},
		{"bfd multiplier", "multiplier: 3", "multiplier: 0", "t.yaml:29:90: bgp.peers[0].bfd.multiplier: 0 is not from 1 to 255"},
		{"bfd multihop", "hold_time: 3s", "hold_time: 3s, multihop: true", "t.yaml:29:76: bgp.peers[0].bfd: BFD runs single-hop only"},
		{"no peers", peer, "", "t.yaml:26:3: bgp: no peers"},
		{"community syntax", `"65010:100"`, `"65010"`, `t.yaml:31:44: bgp.announce[0].communities[0]: community "65010" is not A:B`},
		{"community 16 bits", `"65010:100"`, `"65010:70000"`, `t.yaml:31:44: bgp.announce[0].communities[0]: community "65010:70000" is not A:B with A and B from 0 to 65535`},
		{"vip not an address", "vips: [203.0.113.10], comm", "vips: [203.0.113.10/32], comm", `t.yaml:31:15: bgp.announce[0].vips[0]: bad IP address "203.0.113.10/32"`},
		{"vip announced twice", "vips: [203.0.113.10], comm", "vips: [203.0.113.10, 203.0.113.10], comm", "t.yaml:31:29: bgp.announce[0].vips[1]: VIP 203.0.113.10 is already announced by bgp.announce[0].vips[0]"},
		{"vip also vrrp", "vips: [203.0.113.10], comm", "vips: [192.0.2.9], comm",
			`t.yaml:31:15: bgp.announce[0].vips[0]: VIP 192.0.2.9 is carried by VRRP instance "web-a"; a VIP is either VRRP-owned or BGP-announced, not both`},
		{"vip without service", "vips: [203.0.113.10], comm", "vips: [203.0.113.10, 203.0.113.11], comm",
			"t.yaml:31:29: warning: bgp.announce[0].vips[1]: no service uses VIP 203.0.113.11"},
		{"vip family without peer", "vips: [203.0.113.10], comm", "vips: [203.0.113.10, 2001:db8::10], comm",
			"t.yaml:31:29: bgp.announce[0].vips[1]: no peer of VIP 2001:db8::10's address family"},
		{"drain time", "  announce:\n", "  drain_time: 1h\n  announce:\n", "t.yaml:30:15: bgp.drain_time: 1h0m0s keeps a stopping node for too long"},
		{"unknown key", "  router_id: 192.0.2.11\n", "  router_id: 192.0.2.11\n  colour: blue\n", `t.yaml:28:3: bgp: unknown key "colour"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := strings.Replace(bgpBase, tt.old, tt.new, 1)
			if src == bgpBase {
				t.Fatalf("replacement %q not found", tt.old)
			}
			_, diags := Parse("t.yaml", []byte(src), Options{})
			for _, d := range diags {
				if strings.HasPrefix(d.String(), tt.want) {
					return
				}
			}
			t.Errorf("want a diagnostic starting %q, got:\n%s", tt.want, diags)
		})
	}
}

// A service VIP announced over BGP is carried, so the "no VRRP instance
// carries" warning is not given for it.
func TestBGPVIPIsCarried(t *testing.T) {
	_, diags := Parse("t.yaml", []byte(bgpBase), Options{})
	for _, d := range diags {
		if strings.Contains(d.Message, "203.0.113.10") {
			t.Errorf("unexpected diagnostic: %s", d)
		}
	}
}

func TestBGPSchedulerWarning(t *testing.T) {
	sched := "    scheduler: mh\n    scheduler_flags: [mh-port]\n"
	tests := []struct {
		name, dataplane, scheduler string
		want                       string // the only diagnostic; "" for none
	}{
		{"default wlc", "", "", "t.yaml:14:5: warning: services[1].scheduler: wlc on BGP-announced VIP 203.0.113.10: with dataplane ipvs"},
		{"rr", "", "    scheduler: rr\n", "t.yaml:17:16: warning: services[1].scheduler: rr on BGP-announced VIP 203.0.113.10"},
		{"dataplane ipvs", "ipvs", "    scheduler: rr\n", "t.yaml:18:16: warning: services[1].scheduler: rr on BGP-announced VIP 203.0.113.10"},
		{"dataplane nftables", "nftables", "", ""},
		{"sh", "", "    scheduler: sh\n", ""},
		{"mh without mh-port", "", "    scheduler: mh\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := strings.Replace(bgpBase, sched, tt.scheduler, 1)
			if tt.dataplane != "" {
				src = "dataplane: " + tt.dataplane + "\n" + src
			}
			_, diags := Parse("t.yaml", []byte(src), Options{})
			if tt.want == "" {
				if len(diags) != 0 {
					t.Fatalf("diagnostics %v, want none", diags)
				}
				return
			}
			if len(diags) != 1 || !strings.HasPrefix(diags[0].String(), tt.want) {
				t.Fatalf("diagnostics %v, want one starting %q", diags, tt.want)
			}
			if !strings.Contains(diags[0].String(), "mh with scheduler_flags [mh-port]") {
				t.Errorf("%s: the warning names no remedy", diags[0])
			}
		})
	}
}
