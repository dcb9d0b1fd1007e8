package keepalived

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"

	"halb/internal/config"
)

// TestRoundTrip generates halb configurations within what keepalived can
// say, writes each as a keepalived.conf, reads it back, and expects the
// same configuration.
func TestRoundTrip(t *testing.T) {
	dir := t.TempDir()
	rapid.Check(t, func(rt *rapid.T) {
		gen := genConfig(rt)
		orig, diags := config.Build(gen, setPaths(gen), config.Options{Hostname: "h"})
		if orig == nil {
			rt.Fatalf("generated configuration is invalid:\n%s", diags)
		}
		conf := writeConf(orig)
		path := filepath.Join(dir, "keepalived.conf")
		if err := os.WriteFile(path, conf, 0o644); err != nil {
			rt.Fatal(err)
		}
		// The same warnings as the original (no VRRP instance carries a
		// VIP…), and none of the reader's own.
		same := map[string]bool{}
		for _, d := range diags {
			same[d.Message] = true
		}
		back, diags := Load(path, Options{ConfigID: "x"}, config.Options{Hostname: "h"})
		for _, d := range diags {
			if back == nil || !same[d.Message] {
				rt.Fatalf("read back with diagnostics:\n%s\nfrom:\n%s", diags, conf)
			}
		}
		a, _ := RenderYAML(orig, nil, nil)
		b, _ := RenderYAML(back, nil, nil)
		if !bytes.Equal(a, b) {
			rt.Fatalf("round trip changed the configuration\nbefore:\n%s\nafter:\n%s\nkeepalived.conf:\n%s", a, b, conf)
		}
	})
}

// setPaths marks as written the generated values that halb's defaults
// would otherwise replace when they are zero.
func setPaths(c *config.Config) map[string]config.Location {
	w := map[string]config.Location{}
	for i := range c.VRRP.Instances {
		w[fmt.Sprintf("vrrp.instances[%d].preempt", i)] = config.Location{}
		w[fmt.Sprintf("vrrp.instances[%d].advert_interval", i)] = config.Location{}
	}
	for i, s := range c.Services {
		if s.Persistence.Timeout > 0 {
			w[fmt.Sprintf("services[%d].persistence.netmask", i)] = config.Location{}
		}
	}
	for name, p := range c.Pools {
		w["pools."+name+".quorum"] = config.Location{}
		for i := range p.Servers {
			w[fmt.Sprintf("pools.%s.servers[%d].weight", name, i)] = config.Location{}
		}
	}
	return w
}

func genName(t *rapid.T, label string) string {
	return rapid.StringMatching(`[a-z][a-z0-9]{0,6}`).Draw(t, label)
}

func genConfig(t *rapid.T) *config.Config {
	c := &config.Config{Node: genName(t, "node"), Pools: map[string]config.Pool{}}
	vrids := map[int]bool{}
	used := map[netip.Addr]bool{}
	next := byte(1)
	addr := func() netip.Addr {
		a := netip.AddrFrom4([4]byte{192, 0, 2, next})
		next++
		used[a] = true
		return a
	}
	for i := range rapid.IntRange(0, 3).Draw(t, "instances") {
		in := config.Instance{
			Name:      fmt.Sprintf("VI_%d", i),
			Interface: rapid.SampledFrom([]string{"eth0", "eth1", "bond0"}).Draw(t, "if"),
			Priority:  rapid.IntRange(1, 255).Draw(t, "prio"),
			Version:   rapid.SampledFrom([]int{2, 3}).Draw(t, "version"),
			Preempt:   rapid.Bool().Draw(t, "preempt"),
		}
		for {
			in.VRID = rapid.IntRange(1, 255).Draw(t, "vrid")
			if !vrids[in.VRID] {
				vrids[in.VRID] = true
				break
			}
		}
		if in.Version == 2 {
			in.AdvertInterval = config.Duration(time.Duration(rapid.IntRange(1, 10).Draw(t, "adv")) * time.Second)
			if rapid.Bool().Draw(t, "auth") {
				in.AuthPassword = rapid.StringMatching(`[a-z0-9]{1,8}`).Draw(t, "pass")
			}
		} else {
			in.AdvertInterval = config.Duration(time.Duration(rapid.IntRange(1, 500).Draw(t, "adv")) * 10 * time.Millisecond)
		}
		in.PreemptDelay = config.Duration(time.Duration(rapid.IntRange(0, 60).Draw(t, "pdelay")) * time.Second)
		for range rapid.IntRange(1, 3).Draw(t, "vips") {
			in.VIPs = append(in.VIPs, netip.PrefixFrom(addr(), rapid.IntRange(24, 32).Draw(t, "len")))
		}
		if rapid.Bool().Draw(t, "unicast") {
			in.UnicastSource = netip.AddrFrom4([4]byte{198, 51, 100, byte(1 + i)})
			in.UnicastPeers = []netip.Addr{netip.AddrFrom4([4]byte{198, 51, 100, byte(101 + i)})}
		}
		for range rapid.IntRange(0, 2).Draw(t, "tracks") {
			in.TrackInterface = append(in.TrackInterface, config.TrackedObject{
				Name:   rapid.SampledFrom([]string{"eth2", "eth3"}).Draw(t, "track"),
				Weight: rapid.IntRange(-50, 50).Draw(t, "tweight"),
			})
		}
		c.VRRP.Instances = append(c.VRRP.Instances, in)
	}
	if n := len(c.VRRP.Instances); n >= 2 && rapid.Bool().Draw(t, "sync") {
		c.VRRP.SyncGroups = []config.SyncGroup{{Name: "SG", Instances: []string{"VI_0", "VI_1"}}}
	}
	marks := map[uint32]bool{}
	for i := range rapid.IntRange(0, 3).Draw(t, "services") {
		s := config.Service{
			Protocol:  rapid.SampledFrom([]string{"tcp", "udp"}).Draw(t, "proto"),
			Scheduler: rapid.SampledFrom(config.Schedulers).Draw(t, "sched"),
			Forward:   rapid.SampledFrom([]string{"dr", "nat", "tun"}).Draw(t, "fwd"),
		}
		if s.Scheduler == "sh" || s.Scheduler == "mh" {
			if rapid.Bool().Draw(t, "flag") {
				s.SchedulerFlags = []string{s.Scheduler + "-port"}
			}
		}
		if rapid.Bool().Draw(t, "fwmark") {
			for {
				s.Mark = config.Mark{Mode: config.MarkExternal, Value: uint32(rapid.IntRange(1, 1000).Draw(t, "mark"))}
				if !marks[s.Mark.Value] {
					marks[s.Mark.Value] = true
					break
				}
			}
			s.Name = fmt.Sprintf("fwmark-%d", s.Mark.Value)
		} else {
			s.Name = fmt.Sprintf("svc%d", i)
			s.Mark = config.Mark{Mode: config.MarkNone}
			for range rapid.IntRange(1, 3).Draw(t, "svips") {
				s.VIPs = append(s.VIPs, addr())
			}
			seen := map[uint16]bool{}
			for range rapid.IntRange(1, 3).Draw(t, "ports") {
				p := uint16(rapid.IntRange(1, 65535).Draw(t, "port"))
				if !seen[p] {
					seen[p] = true
					s.Ports = append(s.Ports, config.PortRange{Lo: p, Hi: p})
				}
			}
		}
		if rapid.Bool().Draw(t, "persist") {
			s.Persistence.Timeout = config.Duration(time.Duration(rapid.IntRange(1, 3600).Draw(t, "ptime")) * time.Second)
			s.Persistence.Netmask = rapid.IntRange(8, 32).Draw(t, "pmask")
		}
		s.Pool = s.Name
		c.Pools[s.Name] = genPool(t, s)
		c.Services = append(c.Services, s)
	}
	return c
}

func genPool(t *rapid.T, s config.Service) config.Pool {
	p := config.Pool{
		Quorum:       rapid.IntRange(0, 5).Draw(t, "quorum"),
		OnFailure:    rapid.SampledFrom([]string{"inhibit", "remove"}).Draw(t, "onfail"),
		InitialState: rapid.SampledFrom([]string{"up", "down"}).Draw(t, "initial"),
	}
	if p.Quorum > 1 {
		p.Hysteresis = rapid.IntRange(0, p.Quorum-1).Draw(t, "hyst")
	}
	if rapid.Bool().Draw(t, "sorry") {
		p.SorryServer = "198.51.100.250"
		if rapid.Bool().Draw(t, "sorryport") {
			p.SorryServer += ":8080"
		}
	}
	ownPort := uint16(0)
	if len(s.Ports) == 1 {
		ownPort = s.Ports[0].Lo
	}
	for i := range rapid.IntRange(1, 3).Draw(t, "servers") {
		srv := config.Server{Address: netip.AddrFrom4([4]byte{198, 51, 100, byte(11 + i)}), Weight: rapid.IntRange(0, 100).Draw(t, "weight")}
		if s.Forward == "nat" && rapid.Bool().Draw(t, "sport") {
			srv.Port = uint16(rapid.IntRange(1, 65535).Draw(t, "srvport"))
			if srv.Port == ownPort {
				srv.Port = 0
			}
		}
		p.Servers = append(p.Servers, srv)
	}
	if rapid.Bool().Draw(t, "check") {
		interval := rapid.IntRange(1, 60).Draw(t, "interval")
		ch := config.Check{
			Type:     rapid.SampledFrom([]string{"tcp", "http"}).Draw(t, "ctype"),
			Interval: config.Duration(time.Duration(interval) * time.Second),
			Timeout:  config.Duration(time.Duration(rapid.IntRange(1, interval).Draw(t, "timeout")) * time.Second),
			Rise:     1,
			Fall:     rapid.IntRange(1, 5).Draw(t, "fall"),
			// A port the servers do not have; the servers' own port is
			// said by leaving it out.
			Port: uint16(rapid.IntRange(1, 65535).Draw(t, "cport")),
		}
		if ch.Port == ownPort || (ownPort != 0 && rapid.Bool().Draw(t, "ownport")) {
			ch.Port = 0
		}
		for ch.Port != 0 && slices.ContainsFunc(p.Servers, func(s config.Server) bool { return s.Port == ch.Port }) {
			ch.Port++
		}
		if ch.Type == "http" {
			ch.Path = "/" + genName(t, "path")
			ch.ExpectStatus = []config.StatusRange{{Lo: 200, Hi: rapid.IntRange(200, 399).Draw(t, "status")}}
			if rapid.Bool().Draw(t, "host") {
				ch.Host = genName(t, "host") + ".example.org"
			}
		}
		p.Checks = config.Checks{ch}
	}
	return p
}

// writeConf writes a configuration as keepalived.conf.
func writeConf(c *config.Config) []byte {
	var b strings.Builder
	w := func(indent int, format string, args ...any) {
		b.WriteString(strings.Repeat("    ", indent))
		fmt.Fprintf(&b, format, args...)
		b.WriteByte('\n')
	}
	w(0, "global_defs {")
	w(1, "router_id %s", c.Node)
	w(0, "}")
	for _, in := range c.VRRP.Instances {
		w(0, "vrrp_instance %s {", in.Name)
		w(1, "interface %s", in.Interface)
		w(1, "virtual_router_id %d", in.VRID)
		w(1, "priority %d", in.Priority)
		w(1, "version %d", in.Version)
		w(1, "advert_int %s", seconds(in.AdvertInterval))
		if !in.Preempt {
			w(1, "nopreempt")
		}
		w(1, "preempt_delay %s", seconds(in.PreemptDelay))
		if in.AuthPassword != "" {
			w(1, "authentication {")
			w(2, "auth_type PASS")
			w(2, "auth_pass %s", in.AuthPassword)
			w(1, "}")
		}
		if in.UnicastSource.IsValid() {
			w(1, "unicast_src_ip %s", in.UnicastSource)
		}
		if len(in.UnicastPeers) > 0 {
			w(1, "unicast_peer {")
			for _, p := range in.UnicastPeers {
				w(2, "%s", p)
			}
			w(1, "}")
		}
		w(1, "virtual_ipaddress {")
		for _, v := range in.VIPs {
			w(2, "%s", v)
		}
		w(1, "}")
		if len(in.TrackInterface) > 0 {
			w(1, "track_interface {")
			for _, ti := range in.TrackInterface {
				w(2, "%s weight %d", ti.Name, ti.Weight)
			}
			w(1, "}")
		}
		w(0, "}")
	}
	for _, g := range c.VRRP.SyncGroups {
		w(0, "vrrp_sync_group %s {", g.Name)
		w(1, "sync_group_tracking_weight")
		w(1, "group {")
		for _, n := range g.Instances {
			w(2, "%s", n)
		}
		w(1, "}")
		w(0, "}")
	}
	for _, s := range c.Services {
		pool := c.Pools[s.Pool]
		if s.Mark.Mode == config.MarkExternal {
			w(0, "virtual_server fwmark %d {", s.Mark.Value)
		} else {
			w(0, "virtual_server_group %s {", s.Name)
			for _, v := range s.VIPs {
				for _, p := range s.Ports {
					w(1, "%s %d", v, p.Lo)
				}
			}
			w(0, "}")
			w(0, "virtual_server group %s {", s.Name)
		}
		w(1, "protocol %s", strings.ToUpper(s.Protocol))
		w(1, "lb_algo %s", s.Scheduler)
		for _, f := range s.SchedulerFlags {
			w(1, "%s", f)
		}
		w(1, "lb_kind %s", strings.ToUpper(s.Forward))
		if s.Persistence.Timeout > 0 {
			w(1, "persistence_timeout %d", int(s.Persistence.Timeout.D().Seconds()))
			if s.Persistence.Netmask != 32 {
				w(1, "persistence_granularity %d", s.Persistence.Netmask)
			}
		}
		w(1, "quorum %d", pool.Quorum)
		if pool.Hysteresis > 0 {
			w(1, "hysteresis %d", pool.Hysteresis)
		}
		if sorry, ok := pool.Sorry(); ok {
			if sorry.Port() != 0 {
				w(1, "sorry_server %s %d", sorry.Addr(), sorry.Port())
			} else {
				w(1, "sorry_server %s", sorry.Addr())
			}
		}
		if pool.OnFailure == "inhibit" {
			w(1, "inhibit_on_failure")
		}
		if pool.InitialState == "down" {
			w(1, "alpha")
		}
		for _, srv := range pool.Servers {
			if srv.Port != 0 {
				w(1, "real_server %s %d {", srv.Address, srv.Port)
			} else {
				w(1, "real_server %s {", srv.Address)
			}
			w(2, "weight %d", srv.Weight)
			for _, ch := range pool.Checks {
				writeCheck(w, ch)
			}
			w(1, "}")
		}
		w(0, "}")
	}
	return []byte(b.String())
}

func writeCheck(w func(int, string, ...any), ch config.Check) {
	kind := map[string]string{"tcp": "TCP_CHECK", "http": "HTTP_GET"}[ch.Type]
	w(2, "%s {", kind)
	if ch.Port != 0 {
		w(3, "connect_port %d", ch.Port)
	}
	w(3, "delay_loop %s", seconds(ch.Interval))
	w(3, "connect_timeout %s", seconds(ch.Timeout))
	w(3, "retry %d", ch.Fall-1)
	if ch.Type == "http" {
		w(3, "url {")
		w(4, "path %s", ch.Path)
		for _, r := range ch.ExpectStatus {
			w(4, "status_code %d-%d", r.Lo, r.Hi)
		}
		if ch.Host != "" {
			w(4, "virtualhost %s", ch.Host)
		}
		w(3, "}")
	}
	w(2, "}")
}

func seconds(d config.Duration) string {
	return fmt.Sprintf("%g", d.D().Seconds())
}
