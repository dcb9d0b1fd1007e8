package config

import (
	"strings"
	"testing"
)

// base is a valid configuration the cases below break one way each.
const base = `node: lb-a
vrrp:
  instances:
    - name: web-a
      interface: eth0
      vrid: 9
      priority: 150
      vips: [192.0.2.9/24]
services:
  - name: http
    vips: [192.0.2.9]
    ports: [80]
    pool: www
pools:
  www:
    check: {type: http, port: 80}
    servers:
      - {address: 198.51.100.11}
`

func TestBaseIsValid(t *testing.T) {
	c, diags := Parse("base.yaml", []byte(base), Options{})
	if c == nil || len(diags) != 0 {
		t.Fatalf("base config: %v", diags)
	}
}

func TestValidationErrorsAreLocated(t *testing.T) {
	tests := []struct {
		name string
		old  string // replaced in base
		new  string
		want string // expected diagnostic, FILE:LINE:COL: message prefix
	}{
		{"unknown key", "      vrid: 9\n", "      vrid: 9\n      colour: blue\n", `t.yaml:7:7: vrrp.instances[0]: unknown key "colour"`},
		{"net_namespace with a slash", "node: lb-a\n", "node: lb-a\nnet_namespace: ../ns\n", `t.yaml:2:16: net_namespace: "../ns" is not a namespace name`},
		{"wrong type", "priority: 150", "priority: high", `t.yaml:7:17: vrrp.instances[0].priority: expected an integer, got "high"`},
		{"vrid range", "vrid: 9", "vrid: 256", "t.yaml:6:13: vrrp.instances[0].vrid: 256 is not from 1 to 255"},
		{"priority range", "priority: 150", "priority: 0", "t.yaml:7:17: vrrp.instances[0].priority: 0 is not from 1 to 255"},
		{"port range", "ports: [80]", "ports: [70000]", `t.yaml:12:13: services[0].ports[0]: port "70000" is not a number from 1 to 65535`},
		{"duplicate service", "    pool: www\npools:", "    pool: www\n  - name: http\n    vips: [192.0.2.9]\n    ports: [81]\n    pool: www\npools:",
			`t.yaml:14:11: services[1]: service name "http" already used by services[0]`},
		{"vip in two instances", "      vips: [192.0.2.9/24]\n", "      vips: [192.0.2.9/24]\n    - {name: b, interface: eth0, vrid: 10, priority: 100, vips: [192.0.2.9/24]}\n",
			`t.yaml:9:66: warning: vrrp.instances[1].vips[0]: VIP 192.0.2.9 is also carried by instance "web-a"`},
		{"uncarried vip", "    vips: [192.0.2.9]", "    vips: [192.0.2.9, 192.0.2.99]",
			"t.yaml:11:23: warning: services[0].vips[1]: no VRRP instance carries VIP 192.0.2.99"},
		{"missing pool", "    pool: www\npools", "    pool: web\npools", `t.yaml:13:11: services[0].pool: no pool named "web"`},
		{"scheduler", "    pool: www\npools", "    scheduler: fastest\n    pool: www\npools", `t.yaml:13:16: services[0].scheduler: "fastest" is not one of`},
		{"scheduler flag", "    pool: www\npools", "    scheduler: wlc\n    scheduler_flags: [mh-port]\n    pool: www\npools",
			`t.yaml:14:23: services[0].scheduler_flags[0]: "mh-port" is not a flag of scheduler wlc`},
		{"server port needs nat", "{address: 198.51.100.11}", "{address: 198.51.100.11, port: 8080}",
			"t.yaml:18:40: pools.www.servers[0].port: server port 8080 differs from the ports of service \"http\", which only forward nat can do"},
		{"bad duration", "{type: http, port: 80}", "{type: http, port: 80, interval: 2}", "t.yaml:16:45: pools.www.check[0].interval: duration 2 needs a unit"},
		{"bad duration text", "{type: http, port: 80}", "{type: http, port: 80, interval: soon}", `t.yaml:16:45: pools.www.check[0].interval: bad duration "soon"`},
		{"bad address", "{address: 198.51.100.11}", "{address: 198.51.100.300}", `t.yaml:18:19: pools.www.servers[0].address: bad IP address "198.51.100.300"`},
		{"family mix", "vips: [192.0.2.9/24]", "vips: [192.0.2.9/24, 2001:db8::9/64]", "t.yaml:8:28: vrrp.instances[0].vips[1]: 2001:db8::9/64 mixes IPv4 and IPv6"},
		{"range needs mark", "ports: [80]", `ports: [80, "8000-8100"]`, "t.yaml:12:17: services[0].ports[1]: the range 8000-8100 needs a mark"},
		{"overlapping ports", "    pool: www\npools:", "    pool: www\n  - name: alt\n    vips: [192.0.2.9]\n    ports: [\"79-81\"]\n    mark: shared\n    pool: www\npools:",
			`t.yaml:16:13: services[1].ports[0]: 192.0.2.9/tcp port 79-81 overlaps port 80 of service "http"`},
		{"v2 timing", "      priority: 150\n", "      priority: 150\n      version: 2\n      advert_interval: 1500ms\n",
			"t.yaml:9:24: vrrp.instances[0].advert_interval: 1.5s must be whole seconds"},
		{"sync group member", "      vips: [192.0.2.9/24]\n", "      vips: [192.0.2.9/24]\n  sync_groups:\n    - {name: g, instances: [web-a, nope]}\n",
			`t.yaml:10:36: vrrp.sync_groups[0].instances[1]: no VRRP instance named "nope"`},
		{"auth type", "      priority: 150\n", "      priority: 150\n      version: 2\n      auth_password: k\n      auth_type: esp\n",
			`t.yaml:10:18: vrrp.instances[0].auth_type: "esp" is not pass or ah`},
		{"ah without key", "      priority: 150\n", "      priority: 150\n      version: 2\n      auth_type: ah\n",
			"t.yaml:9:18: vrrp.instances[0].auth_type: ah needs auth_password, its key"},
		{"ah in version 3", "      priority: 150\n", "      priority: 150\n      auth_password: k\n      auth_type: ah\n",
			"t.yaml:9:18: vrrp.instances[0].auth_type: ah exists only in VRRP version 2 over IPv4"},
		{"ah key length", "      priority: 150\n", "      priority: 150\n      version: 2\n      auth_password: 123456789\n      auth_type: ah\n",
			"t.yaml:9:22: vrrp.instances[0].auth_password: at most 8 characters"},
		{"duplicate key", "      vrid: 9\n", "      vrid: 9\n      vrid: 10\n", `t.yaml:7:7: vrrp.instances[0]: key "vrid" given twice`},
		{"check port ambiguous", "    ports: [80]\n    pool: www", "    ports: [80, 443]\n    mark: shared\n    pool: www",
			"t.yaml:17:12: pools.www.check[0]: service \"http\" covers several ports"},
		{"yaml syntax", "    pool: www\n", "    pool: [www\n", "t.yaml:13:1: YAML syntax:"},
		{"tun on nftables", "    pool: www\npools", "    forward: tun\n    pool: www\npools", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := strings.Replace(base, tt.old, tt.new, 1)
			if src == base {
				t.Fatalf("case does not change the base config")
			}
			if strings.Contains(tt.name, "check port") {
				src = strings.Replace(src, "check: {type: http, port: 80}", "check: {type: http}", 1)
			}
			if tt.name == "tun on nftables" {
				src = "dataplane: nftables\n" + src
				tt.want = `t.yaml:14:14: services[0].forward: the nftables data plane forwards with nat or dr; tun needs dataplane ipvs`
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

func TestAllProblemsReportedAtOnce(t *testing.T) {
	src := `node: x
vrrp:
  instances:
    - {name: a, interface: eth0, vrid: 0, priority: 300, vips: [192.0.2.1/24], colour: red}
services:
  - {name: s, vips: [192.0.2.1], ports: [80], pool: none, scheduler: best, forward: dsr}
`
	_, diags := Parse("t.yaml", []byte(src), Options{})
	if n := len(diags.Errors()); n != 6 {
		t.Fatalf("want 6 errors (unknown key, vrid, priority, pool, scheduler, forward), got %d:\n%s", n, diags)
	}
}

func TestDefaults(t *testing.T) {
	c, diags := Parse("t.yaml", []byte(strings.Replace(base, "node: lb-a\n", "", 1)), Options{Hostname: "host1"})
	if c == nil {
		t.Fatal(diags)
	}
	in := c.VRRP.Instances[0]
	s := c.Services[0]
	p := c.Pools["www"]
	checks := []struct {
		what      string
		got, want any
	}{
		{"node", c.Node, "host1"},
		{"dataplane", c.Dataplane, "auto"},
		{"socket", c.API.Socket, DefaultSocket},
		{"version", in.Version, 3},
		{"advert", in.AdvertInterval.String(), "1s"},
		{"preempt", in.Preempt, true},
		{"garp count", in.GARP.Count, 5},
		{"protocol", s.Protocol, "tcp"},
		{"scheduler", s.Scheduler, "wlc"},
		{"forward", s.Forward, "dr"},
		{"mark", s.Mark.Mode, MarkNone},
		{"netmask", s.Persistence.Netmask, 32},
		{"on_failure", p.OnFailure, "inhibit"},
		{"quorum", p.Quorum, 1},
		{"weight", p.Servers[0].Weight, 1},
		{"rise", p.Checks[0].Rise, 2},
		{"fall", p.Checks[0].Fall, 3},
		{"path", p.Checks[0].Path, "/"},
		{"pool name", p.Name, "www"},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s: got %v, want %v", ch.what, ch.got, ch.want)
		}
	}
}

func TestPreemptFalseIsKept(t *testing.T) {
	c, diags := Parse("t.yaml", []byte(strings.Replace(base, "priority: 150", "priority: 150\n      preempt: false", 1)), Options{})
	if c == nil {
		t.Fatal(diags)
	}
	if c.VRRP.Instances[0].Preempt {
		t.Fatal("preempt: false was overridden by the default")
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(base))
	f.Add([]byte("services: [{ports: [\"1-\"]}]"))
	f.Add([]byte("pools: {a: {check: [{type: dns}]}}"))
	f.Add([]byte("vrrp: {instances: [{vips: [\"::1/200\"]}]}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, diags := Parse("f.yaml", data, Options{Hostname: "h"})
		if c == nil && !diags.HasErrors() {
			t.Fatal("nil config without an error")
		}
		for _, d := range diags {
			if d.Pos.Line < 1 || d.Pos.Col < 1 {
				t.Fatalf("diagnostic without a position: %v", d)
			}
		}
	})
}

func TestNetNamespaceIsRead(t *testing.T) {
	c, diags := Parse("t.yaml", []byte("net_namespace: lb-ns\n"+base), Options{})
	if c == nil || diags.HasErrors() {
		t.Fatalf("net_namespace: %v", diags)
	}
	if c.NetNamespace != "lb-ns" {
		t.Errorf("NetNamespace = %q, want lb-ns", c.NetNamespace)
	}
}

// TestMarkMask: nftables.mark_mask defaults to the bits of derived marks,
// and a derived mark with bits outside the mask is refused where the
// service's mark is given.
func TestMarkMask(t *testing.T) {
	c, diags := Parse("t.yaml", []byte(base), Options{})
	if c == nil || c.NFTables.MarkMask != 0x1fffffff {
		t.Fatalf("default mark_mask: %#x (%v), want 0x1fffffff", c.NFTables.MarkMask, diags)
	}
	shared := strings.Replace(base, "    pool: www\n", "    mark: shared\n    pool: www\n", 1)
	for _, tt := range []struct{ mask, want string }{
		{"0x1fffffff", ""},
		{"0xffffffff", ""},
		{"0x0000ffff", `t.yaml:14:11: services[0].mark: mark 0x1`},
		{"0", `t.yaml:1:23: nftables.mark_mask: 0 leaves halb no bit`},
	} {
		src := "nftables: {mark_mask: " + tt.mask + "}\n" + shared
		c, diags := Parse("t.yaml", []byte(src), Options{})
		if tt.want == "" {
			if c == nil || len(diags) != 0 {
				t.Errorf("mark_mask %s: %v", tt.mask, diags)
			}
			continue
		}
		if !strings.HasPrefix(diags.String(), tt.want) {
			t.Errorf("mark_mask %s: want a diagnostic starting %q, got:\n%s", tt.mask, tt.want, diags)
		}
	}
}

func TestAHIsValid(t *testing.T) {
	src := strings.Replace(base, "      priority: 150\n", "      priority: 150\n      version: 2\n      auth_password: secret12\n      auth_type: ah\n", 1)
	c, diags := Parse("ah.yaml", []byte(src), Options{})
	if c == nil || len(diags) != 0 {
		t.Fatalf("AH instance: %v", diags)
	}
	if in := c.VRRP.Instances[0]; in.AuthType != "ah" || in.AuthPassword != "secret12" {
		t.Errorf("decoded auth_type %q, auth_password %q", in.AuthType, in.AuthPassword)
	}
}
