package keepalived

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"halb/internal/config"
)

func loadString(t *testing.T, conf string) (*config.Config, config.Diagnostics, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "keepalived.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, diags := Load(path, Options{ConfigID: "x"}, config.Options{Hostname: "h"})
	return cfg, diags, path
}

// TestKeepalivedDefaultsAreKept: where keepalived's defaults differ from
// halb's, the converted configuration says keepalived's.
func TestKeepalivedDefaultsAreKept(t *testing.T) {
	cfg, diags, _ := loadString(t, `
vrrp_instance A {
    interface eth0
    virtual_router_id 1
    virtual_ipaddress {
        192.0.2.1
    }
}
virtual_server 192.0.2.1 53 {
    persistence_timeout
    persistence_granularity 255.255.255.0
    real_server 198.51.100.1 5353 {
        DNS_CHECK {
            name example.org
        }
        MISC_CHECK {
            misc_path "/usr/bin/check 'an arg'"
            user nobody
        }
    }
}
`)
	if cfg == nil {
		t.Fatalf("does not load:\n%s", diags)
	}
	in := cfg.VRRP.Instances[0]
	svc := cfg.Services[0]
	pool := cfg.Pools[svc.Pool]
	checks := []struct {
		what      string
		got, want any
	}{
		{"VRRP version", in.Version, 2},
		{"priority", in.Priority, 100},
		{"VIP without length", in.VIPs[0].String(), "192.0.2.1/32"},
		{"protocol without protocol", svc.Protocol, "udp"},
		{"forwarding", svc.Forward, "nat"},
		{"scheduler", svc.Scheduler, "wlc"},
		{"persistence_timeout alone", svc.Persistence.Timeout.D(), 360 * time.Second},
		{"granularity", svc.Persistence.Netmask, 24},
		{"on failure", pool.OnFailure, "remove"},
		{"server port", pool.Servers[0].Port, uint16(5353)},
		{"dns check port", pool.Checks[0].Port, uint16(0)},
		{"dns query type", pool.Checks[0].QueryType, "SOA"},
		{"dns fall (retry 3)", pool.Checks[0].Fall, 4},
		{"dns interval (delay_loop 60)", pool.Checks[0].Interval.D(), time.Minute},
		{"dns timeout (connect_timeout 5)", pool.Checks[0].Timeout.D(), 5 * time.Second},
		{"check rise", pool.Checks[0].Rise, 1},
		{"misc fall (retry 0)", pool.Checks[1].Fall, 1},
		{"misc timeout (delay_loop)", pool.Checks[1].Timeout.D(), time.Minute},
		{"misc command", strings.Join(pool.Checks[1].Command, "|"), "/usr/bin/check|an arg"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: %v, want %v", c.what, c.got, c.want)
		}
	}
	if !strings.Contains(diags.String(), "without protocol: keepalived 2.2 makes it UDP") {
		t.Errorf("the UDP default is not pointed out:\n%s", diags)
	}
}

// TestDiagnosticsPointIntoParameters: a problem in a multi-line parameter
// is reported at the definition's line; in a single-line one at the
// reference.
func TestDiagnosticsPointIntoParameters(t *testing.T) {
	_, diags, path := loadString(t, `$CHECK= \
    TCP_CHECK { \
        connect_port 80 \
        bind_port 999 \
    }
$W=-1
virtual_server fwmark 3 {
    protocol TCP
    real_server 198.51.100.1 {
        weight $W
        $CHECK
    }
}
`)
	for _, want := range []string{
		path + ":4:9: warning: bind_port is not supported",
		path + ":10:16: weight: \"-1\" is not a number from 0 to 65535",
	} {
		if !strings.Contains(diags.String(), want) {
			t.Errorf("diagnostics lack %q:\n%s", want, diags)
		}
	}
}

// TestUnexpectedBlockIsNamed: a block after a keyword that takes none is
// reported, not silently dropped.
func TestUnexpectedBlockIsNamed(t *testing.T) {
	_, diags, path := loadString(t, "global_defs {\n  router_id lb {\n    x\n  }\n}\n")
	if want := path + ":2:3: warning: router_id takes no block"; !strings.Contains(diags.String(), want) {
		t.Errorf("diagnostics lack %q:\n%s", want, diags)
	}
}

// TestChecksPerRealServer: real_servers with their own checkers keep them
// (keepalived checks each with its own), in a per-server check list.
func TestChecksPerRealServer(t *testing.T) {
	cfg, diags, _ := loadString(t, `
virtual_server 192.0.2.1 80 {
    protocol TCP
    real_server 198.51.100.1 80 {
        HTTP_GET {
            url {
                path /a
                status_code 200
            }
        }
    }
    real_server 198.51.100.2 80 {
        HTTP_GET {
            url {
                path /b
                status_code 200
            }
            connect_port 8080
        }
    }
    real_server 198.51.100.3 80 {
    }
}
`)
	if cfg == nil {
		t.Fatalf("does not load:\n%s", diags)
	}
	pool := cfg.Pools[cfg.Services[0].Pool]
	if c := pool.ServerChecks(pool.Servers[0]); len(c) != 1 || c[0].Path != "/a" || pool.Servers[0].Checks != nil {
		t.Errorf("first server: %+v, want the pool's check on /a", c)
	}
	if c := pool.ServerChecks(pool.Servers[1]); len(c) != 1 || c[0].Path != "/b" || c[0].Port != 8080 {
		t.Errorf("second server: %+v, want its own check on /b, port 8080", c)
	}
	if c := pool.ServerChecks(pool.Servers[2]); c == nil || len(c) != 0 {
		t.Errorf("server without checkers: %#v, want no checks", c)
	}
}

// TestKeepalivedQuirksAccepted: what keepalived loads without complaint
// converts: booleans written 1 or 0, and mail settings without an
// smtp_server (keepalived sends nothing; halb sets no mail, with a warning).
func TestKeepalivedQuirksAccepted(t *testing.T) {
	cfg, diags, _ := loadString(t, `
global_defs {
    notification_email {
        ops@example.org
    }
    notification_email_from lb@example.org
}
virtual_server 192.0.2.1 80 {
    protocol TCP
    alpha 1
    real_server 198.51.100.1 80 {
        inhibit_on_failure 0
        TCP_CHECK {
        }
    }
}
`)
	if cfg == nil {
		t.Fatalf("does not load:\n%s", diags)
	}
	if cfg.Notify.SMTP != nil {
		t.Errorf("notify.smtp: %+v, want none without smtp_server", cfg.Notify.SMTP)
	}
	if !strings.Contains(diags.String(), "without smtp_server") {
		t.Errorf("no warning about the mail settings without smtp_server:\n%s", diags)
	}
	pool := cfg.Pools[cfg.Services[0].Pool]
	if pool.InitialState != "down" || pool.OnFailure != "remove" {
		t.Errorf("alpha 1, inhibit_on_failure 0: initial state %s, on failure %s; want down, remove", pool.InitialState, pool.OnFailure)
	}
}

// TestRealServerOptions: inhibit_on_failure on one real_server only, and
// uthreshold/lthreshold, become that server's own options.
func TestRealServerOptions(t *testing.T) {
	cfg, diags, path := loadString(t, `
virtual_server 192.0.2.1 80 {
    protocol TCP
    real_server 198.51.100.1 80 {
        inhibit_on_failure
        uthreshold 100
        lthreshold 80
        TCP_CHECK {
        }
    }
    real_server 198.51.100.2 80 {
        TCP_CHECK {
        }
    }
}
`)
	if cfg == nil {
		t.Fatalf("does not load:\n%s", diags)
	}
	pool := cfg.Pools[cfg.Services[0].Pool]
	a, b := pool.Servers[0], pool.Servers[1]
	if pool.ServerOnFailure(a) != "inhibit" || pool.ServerOnFailure(b) != "remove" {
		t.Errorf("on failure: %s, %s; want inhibit for the first only", pool.ServerOnFailure(a), pool.ServerOnFailure(b))
	}
	if a.MaxConnections != 100 || a.MinConnections != 80 || b.MaxConnections != 0 {
		t.Errorf("thresholds %d/%d and %d, want 100/80 and none", a.MaxConnections, a.MinConnections, b.MaxConnections)
	}
	p := "pools." + cfg.Services[0].Pool + ".servers[0].max_connections"
	if at, ok := cfg.PositionOf(p); !ok || at.Line != 6 {
		t.Errorf("%s written at %v (%v), want %s line 6", p, at, ok, path)
	}
}

// TestVirtualServerAllPorts: a virtual_server without a port (IPVS's
// port 0 service, every port) covers ports 1-65535 on a shared mark.
func TestVirtualServerAllPorts(t *testing.T) {
	cfg, diags, _ := loadString(t, `
virtual_server 192.0.2.1 {
    protocol TCP
    lb_kind DR
    persistence_timeout 300
    real_server 198.51.100.1 {
        TCP_CHECK {
            connect_port 22
        }
    }
}
`)
	if cfg == nil {
		t.Fatalf("does not load:\n%s", diags)
	}
	s := cfg.Services[0]
	if len(s.Ports) != 1 || s.Ports[0] != (config.PortRange{Lo: 1, Hi: 65535}) || s.Mark.Mode != config.MarkShared {
		t.Errorf("service ports %v, mark %v; want 1-65535 on a shared mark", s.Ports, s.Mark)
	}
	if s.Persistence.Timeout.D() != 300*time.Second {
		t.Errorf("persistence %v, want 300s", s.Persistence.Timeout)
	}
}

// TestDNSCheckDNSSECTypes: DNS_CHECK asks any type keepalived knows,
// RRSIG and DNSKEY included.
func TestDNSCheckDNSSECTypes(t *testing.T) {
	cfg, diags, _ := loadString(t, `
virtual_server 192.0.2.1 53 {
    real_server 198.51.100.1 53 {
        DNS_CHECK {
            type rrsig
            name example.org
        }
    }
}
`)
	if cfg == nil {
		t.Fatalf("does not load:\n%s", diags)
	}
	if got := cfg.Pools[cfg.Services[0].Pool].Checks[0].QueryType; got != "RRSIG" {
		t.Errorf("query type %q, want RRSIG", got)
	}
}

// TestOverlappingGroups: an entry of a virtual_server_group that an
// earlier group already has goes to the earlier group's service, with a
// warning at the entry, instead of an overlap error.
func TestOverlappingGroups(t *testing.T) {
	cfg, diags, path := loadString(t, `
virtual_server_group A {
    192.0.2.1 80
    192.0.2.2 80
}
virtual_server_group B {
    192.0.2.2 80
    192.0.2.3 80
}
virtual_server group A {
    protocol TCP
    real_server 198.51.100.1 80 {
    }
}
virtual_server group B {
    protocol TCP
    real_server 198.51.100.2 80 {
    }
}
`)
	if cfg == nil {
		t.Fatalf("does not load:\n%s", diags)
	}
	if got := fmt.Sprint(cfg.Services[0].VIPs, cfg.Services[1].VIPs); got != "[192.0.2.1 192.0.2.2] [192.0.2.3]" {
		t.Errorf("VIPs of the groups' services: %s, want [192.0.2.1 192.0.2.2] [192.0.2.3]", got)
	}
	want := path + ":7:5: warning: virtual_server_group B: 192.0.2.2 port 80/tcp is also in virtual_server_group A"
	if !strings.Contains(diags.String(), want) {
		t.Errorf("diagnostics lack %q:\n%s", want, diags)
	}
}

// TestFolding: identical pools become one, and a warning with the same
// cause is given once, with the count and the other places.
func TestFolding(t *testing.T) {
	conv := convertString(t, `
virtual_server 192.0.2.1 80 {
    protocol TCP
    real_server 198.51.100.1 80 {
        TCP_CHECK {
            delay_before_retry 3
        }
    }
}
virtual_server 192.0.2.2 80 {
    protocol TCP
    real_server 198.51.100.1 80 {
        TCP_CHECK {
            delay_before_retry 3
        }
    }
}
`)
	if len(conv.Config.Pools) != 1 || conv.Config.Services[0].Pool != conv.Config.Services[1].Pool {
		t.Errorf("pools %v, services on %s and %s: want one pool for both", conv.Config.Pools, conv.Config.Services[0].Pool, conv.Config.Services[1].Pool)
	}
	var retry []string
	for _, d := range conv.Diags {
		if strings.Contains(d.Message, "delay_before_retry") {
			retry = append(retry, d.String())
		}
	}
	if len(retry) != 1 || !strings.Contains(retry[0], "(2 times in all; also at 14:13)") {
		t.Errorf("delay_before_retry warnings: %q, want one naming the second place", retry)
	}
}

func convertString(t *testing.T, conf string) Conversion {
	t.Helper()
	path := filepath.Join(t.TempDir(), "keepalived.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	conv := Convert(path, Options{ConfigID: "x"})
	if conv.Config == nil {
		t.Fatalf("not converted:\n%s", conv.Diags)
	}
	return conv
}

// net_namespace is read at the top level (as Octavia writes it) and in
// global_defs, and written as halb's net_namespace.
func TestNetNamespace(t *testing.T) {
	for _, conf := range []string{
		"net_namespace amphora-haproxy\nvrrp_instance v { interface eth0\n virtual_router_id 1\n priority 100\n virtual_ipaddress { 192.0.2.1/24 } }\n",
		"global_defs {\n net_namespace amphora-haproxy\n}\nvrrp_instance v { interface eth0\n virtual_router_id 1\n priority 100\n virtual_ipaddress { 192.0.2.1/24 } }\n",
	} {
		conv := convertString(t, conf)
		if errs := conv.Diags.Errors(); len(errs) > 0 {
			t.Fatalf("errors: %v", errs)
		}
		if conv.Config.NetNamespace != "amphora-haproxy" {
			t.Errorf("NetNamespace = %q, want amphora-haproxy", conv.Config.NetNamespace)
		}
		out, err := RenderYAML(conv.Config, conv.Written, conv.Origins)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(out), "net_namespace: amphora-haproxy") {
			t.Errorf("YAML lacks net_namespace:\n%s", out)
		}
	}
}

// What keepalived complains about and runs with anyway converts with a
// warning to what keepalived does; what it refuses, halb refuses.
func TestKeepalivedFallbacks(t *testing.T) {
	conf := `vrrp_instance v {
    interface eth0
    virtual_router_id 1
    priority 100,high
    authentication {
        auth_type PASS;
        auth_pass secret
    }
    virtual_ipaddress { 192.0.2.1/24 }
}
virtual_server 192.0.2.1 80 {
    lb_algo loadbalance
    lb_kind FNAT
    persistence_timeout 0
    protocol TCP
    real_server 198.51.100.1 80 { weight 1 }
}
`
	conv := convertString(t, conf)
	if errs := conv.Diags.Errors(); len(errs) > 0 {
		t.Fatalf("errors: %v", errs)
	}
	in := conv.Config.VRRP.Instances[0]
	if in.Priority != 100 || in.AuthPassword != "" {
		t.Errorf("priority %d, auth password %q; want keepalived's 100 and none", in.Priority, in.AuthPassword)
	}
	svc := conv.Config.Services[0]
	if svc.Scheduler != "wlc" || svc.Forward != "nat" || svc.Persistence.Timeout != 0 {
		t.Errorf("scheduler %q, forward %q, persistence %v; want wlc, nat, none", svc.Scheduler, svc.Forward, svc.Persistence.Timeout)
	}
	for _, want := range []string{"4:14: warning: priority", "6:19: warning: auth_type", "12:13: warning: lb_algo", "13:13: warning: lb_kind", "14:25: warning: persistence_timeout"} {
		if !strings.Contains(conv.Diags.String(), want) {
			t.Errorf("no diagnostic %q in:\n%s", want, conv.Diags)
		}
	}

	conv = Convert(writeKeepalivedConf(t, "vrrp_instance v {\n    interface lo\n    virtual_router_id 1\n    virtual_ipaddress { 192.0.2.1/24 }\n}\n"), Options{ConfigID: "x"})
	if !strings.Contains(conv.Diags.String(), ":2:15: interface: VRRP cannot run on the loopback interface") {
		t.Errorf("interface lo: %s", conv.Diags)
	}
}

func writeKeepalivedConf(t *testing.T, conf string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "keepalived.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// What keepalived skips with a complaint (an entry that is not an
// address, a track_script naming no vrrp_script) halb skips too, with one
// warning each; the rest (a route's protocol too) still converts and
// validates.
func TestKeepalivedSkips(t *testing.T) {
	conf := `vrrp_script chk { script "/bin/true" }
vrrp_instance v {
    interface eth0
    virtual_router_id 1
    unicast_peer {
        XX.XX.XX.116
        192.0.2.3
    }
    virtual_ipaddress {
        VIP
        %VIP%
        __VIRTUAL_IP__/27
        <virtual-ip-address>/24
        192.0.2.1/24
    }
    virtual_routes {
        0.0.0.0/0 via 192.0.2.2 dev eth0 protocol static
    }
    track_script {
        missing
        chk
    }
}
vrrp_instance empty {
    interface eth0
    virtual_router_id 2
    virtual_ipaddress { floating_ip }
}
virtual_server <virtual-ip-address> 8080 {
    protocol TCP
    real_server 198.51.100.1 8080 { weight 1 }
}
global_defs { script_user root }
`
	conv := convertString(t, conf)
	if errs := conv.Diags.Errors(); len(errs) > 0 {
		t.Fatalf("errors: %v", errs)
	}
	want := []string{
		`:6:9: warning: unicast_peer: "XX.XX.XX.116" is not an address: keepalived skips it`,
		`:10:9: warning: virtual_ipaddress: "VIP" is not an address: keepalived skips it`,
		`:11:9: warning: virtual_ipaddress: "%VIP%" is not an address`,
		`:12:9: warning: virtual_ipaddress: "__VIRTUAL_IP__/27" is not an address`,
		`:13:9: warning: virtual_ipaddress: "<virtual-ip-address>/24" is not an address`,
		`:20:9: warning: track_script missing: no vrrp_script of that name: keepalived leaves it out`,
		`:27:25: warning: virtual_ipaddress: "floating_ip" is not an address`,
		`:29:16: warning: virtual_server: "<virtual-ip-address>" is not an address: keepalived skips the virtual server`,
	}
	got := conv.Diags.String()
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Errorf("no diagnostic %q in:\n%s", w, got)
		}
	}
	if n := strings.Count(got, "warning:"); n != len(want) {
		t.Errorf("%d warnings, want %d:\n%s", n, len(want), got)
	}
	v, empty := conv.Config.VRRP.Instances[0], conv.Config.VRRP.Instances[1]
	if len(v.VIPs) != 1 || v.VIPs[0].String() != "192.0.2.1/24" || len(v.UnicastPeers) != 1 || v.UnicastPeers[0].String() != "192.0.2.3" {
		t.Errorf("vips %v, peers %v; want 192.0.2.1/24 and 192.0.2.3", v.VIPs, v.UnicastPeers)
	}
	if len(v.Routes) != 1 || v.Routes[0].Protocol != "static" || len(v.TrackScripts) != 1 || v.TrackScripts[0].Name != "chk" {
		t.Errorf("routes %v, track scripts %v; want the route (protocol static) and chk", v.Routes, v.TrackScripts)
	}
	if loc := conv.Written["vrrp.instances[0].track_scripts[0]"]; loc.Pos.Line != 21 {
		t.Errorf("track_scripts[0] written at line %d, want 21 (chk)", loc.Pos.Line)
	}
	if len(empty.VIPs) != 0 || len(conv.Config.Services) != 0 {
		t.Errorf("instance empty has VIPs %v, services %v; want none", empty.VIPs, conv.Config.Services)
	}
	out, err := RenderYAML(conv.Config, conv.Written, conv.Origins)
	if err != nil {
		t.Fatal(err)
	}
	if _, pd := config.Parse("converted.yaml", out, config.Options{Hostname: "h"}); pd.HasErrors() {
		t.Errorf("the YAML written does not validate: %v\n%s", pd.Errors(), out)
	}
}

// An interface that keepalived cannot find is refused: halb refuses one
// named by an address or a template placeholder.
func TestInterfaceNotAName(t *testing.T) {
	for name, want := range map[string]string{
		"192.0.2.2":   ":2:15: interface 192.0.2.2: an address, not an interface name",
		"2001:db8::1": ":2:15: interface 2001:db8::1: an address, not an interface name",
		"<interface>": ":2:15: interface <interface>: a placeholder, not an interface name",
	} {
		conv := Convert(writeKeepalivedConf(t, "vrrp_instance v {\n    interface "+name+"\n    virtual_router_id 1\n    virtual_ipaddress { 192.0.2.1/24 }\n}\n"), Options{ConfigID: "x"})
		if !strings.Contains(conv.Diags.String(), want) || len(conv.Diags.Errors()) == 0 {
			t.Errorf("interface %s: %s", name, conv.Diags)
		}
	}
	conv := convertString(t, "vrrp_instance v {\n    interface eth0.10\n    virtual_router_id 1\n    virtual_ipaddress { 192.0.2.1/24 }\n}\n")
	if errs := conv.Diags.Errors(); len(errs) > 0 {
		t.Errorf("interface eth0.10: %v", errs)
	}
}
