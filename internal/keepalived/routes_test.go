package keepalived

import (
	"fmt"
	"strings"
	"testing"
)

// TestRoutesRulesStatic: virtual_routes and virtual_rules become an
// instance's routes and rules, static_* the static addresses, routes and
// rules; a route without a protocol has keepalived's (keepalived); what halb
// cannot do is located.
func TestRoutesRulesStatic(t *testing.T) {
	cfg, diags, path := loadString(t, `static_ipaddress {
  192.0.2.200/24 dev eth1 scope link
  192.0.2.201/24
}
static_routes {
  default via 192.0.2.254 metric 10
  blackhole 203.0.113.0/24 protocol bird
  blackhole 203.0.113.128/25 protocol 0x20
}
static_rules {
  from all fwmark 0x10/0xff table main priority 90
}
vrrp_instance VI_1 {
  interface eth0
  virtual_router_id 51
  virtual_ipaddress {
    192.0.2.10/24
  }
  virtual_routes {
    src 192.0.2.10 to 198.51.100.0/24 via 192.0.2.1 dev eth0 table 100 mtu 1400
    2001:db8:1::/64 via 2001:db8::1 or 2001:db8::2
  }
  virtual_rules {
    from 192.0.2.10 table 100 pref 100
    to 2001:db8:2::/64 iif eth0 table 7
  }
}
`)
	if cfg == nil {
		t.Fatalf("refused:\n%s", diags)
	}
	in := cfg.VRRP.Instances[0]
	st := cfg.VRRP.Static
	got := fmt.Sprintf("%+v\n%+v\n%+v\n%+v\n%+v", in.Routes, in.Rules, st.Addresses, st.Routes, st.Rules)
	want := `[{To:198.51.100.0/24 Via:192.0.2.1 Dev:eth0 Src:192.0.2.10 Table:100 Metric:0 Scope: Type: Protocol:keepalived} {To:2001:db8:1::/64 Via:2001:db8::1 Dev: Src:invalid IP Table:0 Metric:0 Scope: Type: Protocol:keepalived}]
[{From:192.0.2.10/32 To:invalid Prefix Table:100 Priority:100 FWMark:0 IIF: OIF: Family:0} {From:invalid Prefix To:2001:db8:2::/64 Table:7 Priority:0 FWMark:0 IIF:eth0 OIF: Family:6}]
[{Address:192.0.2.200/24 Dev:eth1 Scope:link Label: Broadcast:invalid IP Excluded:false} {Address:192.0.2.201/24 Dev:eth0 Scope: Label: Broadcast:invalid IP Excluded:false}]
[{To:0.0.0.0/0 Via:192.0.2.254 Dev: Src:invalid IP Table:0 Metric:10 Scope: Type: Protocol:keepalived} {To:203.0.113.0/24 Via:invalid IP Dev: Src:invalid IP Table:0 Metric:0 Scope: Type:blackhole Protocol:bird} {To:203.0.113.128/25 Via:invalid IP Dev: Src:invalid IP Table:0 Metric:0 Scope: Type:blackhole Protocol:32}]
[{From:invalid Prefix To:invalid Prefix Table:254 Priority:90 FWMark:16 IIF: OIF: Family:0}]`
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	var warnings []string
	for _, d := range diags {
		warnings = append(warnings, strings.TrimPrefix(d.String(), path+":"))
	}
	w := strings.Join(warnings, "\n")
	for _, want := range []string{
		"11:19: warning: rule: fwmark mask 0xff is not supported",
		"20:72: warning: route: mtu is not supported",
		"21:37: warning: route: or (a multipath route) is not supported",
	} {
		if !strings.Contains(w, want) {
			t.Errorf("no %q in:\n%s", want, w)
		}
	}

	_, diags, path = loadString(t, `vrrp_instance VI_1 {
  interface eth0
  virtual_router_id 51
  virtual_routes {
    via 192.0.2.1
    198.51.100.0/24 table mine
    198.51.100.0/25 protocol quagga
    198.51.100.0/26 protocol none
  }
  virtual_rules {
    from 192.0.2.300 table 1
    from 192.0.2.1 goto 7
  }
}
`)
	got = strings.ReplaceAll(diags.String(), path+":", "")
	for _, want := range []string{"5:5: route: no destination", `6:27: table "mine" is not a number`,
		`7:30: route: protocol "quagga" is not a number up to 255`, "8:30: warning: route: protocol none (unspec) cannot be set by halb",
		`11:10: rule: from "192.0.2.300" is not an address`, "12:20: rule: goto is not supported"} {
		if !strings.Contains(got, want) {
			t.Errorf("no %q in:\n%s", want, got)
		}
	}
}
