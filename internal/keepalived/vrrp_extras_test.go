package keepalived

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"halb/internal/config"
)

const vrrpExtrasConf = `global_defs {
  router_id lb1
  vrrp_mcast_group4 224.0.0.18
  vrrp_mcast_group6 ff02::1:12
  vrrp_garp_lower_prio_repeat 2
}
net_namespace blue
vrrp_instance VI_1 {
  interface eth0
  virtual_router_id 51
  priority 150
  use_vmac
  vmac_xmit_base
  no_accept
  dont_track_primary
  garp_lower_prio_delay 3
  authentication {
    auth_pass s3cret
    auth_type AH
  }
  virtual_ipaddress {
    192.0.2.10/24
    192.0.2.11/24 dev eth1 scope link label eth1:vip brd 192.0.2.255
    192.0.2.13 dev eth0
  }
  virtual_ipaddress_excluded {
    192.0.2.12/24
  }
  track_process {
    nginx
  }
}
vrrp_instance VI_2 {
  interface eth0
  virtual_router_id 52
  virtual_ipaddress {
    192.0.2.10/24
  }
}
vrrp_instance VI_3 {
  interface eth0
  virtual_router_id 53
}
vrrp_track_process nginx {
  process nginx -g
  quorum 2
  weight -20
  fork_delay 1
}
`

// TestVRRPExtras: keepalived's VIP options, excluded VIPs, the same VIP
// in two instances, instances without VIPs, the lower-priority
// announcements, the multicast groups and dont_track_primary map onto
// halb's keys, track_process, use_vmac, no_accept and net_namespace too;
// auth_type AH maps onto auth_type ah without a warning.
func TestVRRPExtras(t *testing.T) {
	cfg, diags, path := loadString(t, vrrpExtrasConf)
	if cfg == nil {
		t.Fatalf("refused:\n%s", diags)
	}
	in := cfg.VRRP.Instances[0]
	if got := len(in.VIPs); got != 4 || len(cfg.VRRP.Instances[2].VIPs) != 0 {
		t.Fatalf("VIPs %v and %v", in.VIPs, cfg.VRRP.Instances[2].VIPs)
	}
	o, _ := in.VIPOption(netip.MustParseAddr("192.0.2.11"))
	if o != (config.VIPOption{Address: netip.MustParsePrefix("192.0.2.11/24"), Dev: "eth1", Scope: "link", Label: "eth1:vip",
		Broadcast: netip.MustParseAddr("192.0.2.255")}) {
		t.Errorf("options of 192.0.2.11: %+v", o)
	}
	if _, ok := in.VIPOption(netip.MustParseAddr("192.0.2.13")); ok {
		t.Error("dev naming the instance's own interface is an option")
	}
	if o, _ := in.VIPOption(netip.MustParseAddr("192.0.2.12")); !o.Excluded {
		t.Error("192.0.2.12 is not excluded")
	}
	if g := in.GARP; g.LowerPriorityCount != 2 || g.LowerPriorityDelay.D() != 3*time.Second {
		t.Errorf("garp %+v, want lower priority count 2 (global) and delay 3s", g)
	}
	if g := cfg.VRRP.Instances[1].GARP; g.LowerPriorityCount != 2 || g.LowerPriorityDelay.D() != 5*time.Second {
		t.Errorf("VI_2 garp %+v, want lower priority count 2, delay the second burst's", g)
	}
	if g := cfg.VRRP.MulticastGroup6; g != netip.MustParseAddr("ff02::1:12") || cfg.VRRP.Group(4) != netip.MustParseAddr("224.0.0.18") {
		t.Errorf("multicast groups %s, %s", cfg.VRRP.Group(4), g)
	}
	if got := cfg.VRRP.Processes; len(got) != 1 || got[0] != (config.Process{Name: "nginx", Command: "nginx", Args: "-g", Quorum: 2,
		Weight: -20, Interval: config.Duration(time.Second)}) || len(in.TrackProcesses) != 1 || in.TrackProcesses[0].Name != "nginx" {
		t.Errorf("processes %+v, tracked %+v", got, in.TrackProcesses)
	}
	if !in.VMAC || in.VMACName != "vrrp.51" || !in.VMACXmitBase {
		t.Errorf("vmac %v %q xmit_base %v, want true vrrp.51 true", in.VMAC, in.VMACName, in.VMACXmitBase)
	}
	if !in.NoAccept || cfg.VRRP.Instances[1].NoAccept {
		t.Error("no_accept not mapped to VI_1 alone")
	}
	if cfg.NetNamespace != "blue" {
		t.Errorf("net_namespace %q, want blue", cfg.NetNamespace)
	}
	if !in.IgnoreInterfaceDown || in.AuthPassword != "s3cret" || in.AuthType != "ah" {
		t.Errorf("ignore_interface_down %v, auth_password %q, auth_type %q; want true, s3cret and ah", in.IgnoreInterfaceDown, in.AuthPassword, in.AuthType)
	}
	var warnings []string
	for _, d := range diags {
		if d.Severity == config.Warning {
			warnings = append(warnings, strings.TrimPrefix(d.String(), path+":"))
		}
	}
	got := strings.Join(warnings, "\n")
	for _, want := range []string{
		"44:1: warning: vrrp_track_process nginx: halb counts the processes in /proc every second",
		"48:3: warning: fork_delay is not supported: halb counts the processes in /proc every second",
		`37:5: warning: vrrp.instances[1].vips[0]: VIP 192.0.2.10 is also carried by instance "VI_1"`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("no warning %q in:\n%s", want, got)
		}
	}
	if strings.Contains(got, "vrrp_mcast_group") || strings.Contains(got, "auth_type") || strings.Contains(got, "dont_track_primary") || strings.Contains(got, "virtual_ipaddress") {
		t.Errorf("warnings for what halb does as keepalived:\n%s", got)
	}

	// The rendered YAML reads back as the same instances.
	conv := Convert(path, Options{ConfigID: "x"})
	out, err := RenderYAML(conv.Config, conv.Written, conv.Origins)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), `{address: 192.0.2.11/24, dev: eth1, scope: link, label: "eth1:vip", broadcast: 192.0.2.255}`) ||
		!strings.Contains(string(out), "{address: 192.0.2.12/24, excluded: true}") {
		t.Errorf("rendered VIPs:\n%s", out)
	}
	back, bdiags := config.Parse("halb.yaml", out, config.Options{Hostname: "h"})
	if back == nil || bdiags.HasErrors() {
		t.Fatalf("rendered YAML refused:\n%s\n%s", bdiags, out)
	}
	for i := range cfg.VRRP.Instances {
		a, b := cfg.VRRP.Instances[i], back.VRRP.Instances[i]
		if a.Name != b.Name || len(a.VIPs) != len(b.VIPs) || len(a.VIPOptions) != len(b.VIPOptions) || a.GARP != b.GARP ||
			a.IgnoreInterfaceDown != b.IgnoreInterfaceDown || a.AuthType != b.AuthType || a.AuthPassword != b.AuthPassword {
			t.Errorf("instance %d after the round trip:\n%+v\nwant\n%+v", i, b, a)
		}
	}
}

// A tracker's weight is read with its place; keepalived's "weight N
// reverse" is refused, in the words of the tracker.
func TestTrackWeightReverse(t *testing.T) {
	conv := convertString(t, `vrrp_script chk {
  script "/bin/true"
  weight 10 reverse
}
vrrp_track_process nginx {
  process nginx
  weight -5 reverse
}
`)
	if s, pr := conv.Config.VRRP.Scripts, conv.Config.VRRP.Processes; len(s) != 1 || s[0].Weight != 10 || len(pr) != 1 || pr[0].Weight != -5 {
		t.Errorf("scripts %+v, processes %+v; want weights 10 and -5", s, pr)
	}
	for key, line := range map[string]int{"vrrp.scripts[0].weight": 3, "vrrp.processes[0].weight": 7} {
		if loc := conv.Written[key]; loc.Pos.Line != line {
			t.Errorf("%s written at line %d, want %d", key, loc.Pos.Line, line)
		}
	}
	if errs := conv.Diags.Errors(); len(errs) != 2 {
		t.Errorf("errors %v, want the two reverse weights", errs)
	}
	got := conv.Diags.String()
	for _, want := range []string{
		":3:13: weight reverse is not supported: halb adds a positive weight while the script succeeds and subtracts a negative one while it fails",
		":7:13: weight reverse is not supported: halb adds a positive weight while the processes run and subtracts a negative one while they do not",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("no diagnostic %q in:\n%s", want, got)
		}
	}
}

// An authentication block without auth_pass is ignored by keepalived
// ("no password given. Ignoring"): halb converts it to no authentication,
// with a located warning, and the result validates.
func TestAuthWithoutPassword(t *testing.T) {
	for _, kind := range []string{"AH", "PASS"} {
		cfg, diags, path := loadString(t, `vrrp_instance VI_1 {
    interface eth0
    virtual_router_id 10
    priority 100
    authentication {
        auth_type `+kind+`
    }
    virtual_ipaddress {
        192.0.2.100/24
    }
}
`)
		if cfg == nil {
			t.Fatalf("%s: refused:\n%s", kind, diags)
		}
		if in := cfg.VRRP.Instances[0]; in.AuthType != "" || in.AuthPassword != "" {
			t.Errorf("%s: auth_type %q password %q, want none", kind, in.AuthType, in.AuthPassword)
		}
		want := path + ":5:5: warning: authentication: auth_type " + kind + " without auth_pass"
		if !strings.Contains(diags.String(), want) {
			t.Errorf("%s: no warning %q in:\n%s", kind, want, diags)
		}
	}
}
