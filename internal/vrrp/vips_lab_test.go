package vrrp

import (
	"strings"
	"testing"
	"time"

	"halb/internal/lab/labtest"
)

// TestLabVIPOptions: halb master, keepalived backup, with VIPs on
// another interface (dev) with scope, label and broadcast, and an
// excluded VIP. halb adds each where and as configured, and its adverts
// list what keepalived's list (keepalived would take over from adverts
// listing other addresses).
func TestLabVIPOptions(t *testing.T) {
	labtest.RequireRoot(t)
	p := newPair(t)
	for _, h := range []string{"a", "b"} {
		host := p.a
		if h == "b" {
			host = p.b
		}
		// A second interface (this kernel has no dummy links).
		for _, args := range [][]string{{"link", "add", "eth1", "type", "veth", "peer", "name", "eth1p"},
			{"link", "set", "eth1", "up"}, {"link", "set", "eth1p", "up"}} {
			if err := host.IP(args...); err != nil {
				t.Fatal(err)
			}
		}
	}
	iv := 100 * time.Millisecond
	startHelper(t, p.a, `node: a
vrrp:
  instances:
    - name: vi
      interface: eth0
      vrid: 10
      priority: 150
      advert_interval: 100ms
      garp: {count: 1, second_burst: 0s}
      vips:
        - 192.0.2.100/24
        - {address: 198.51.100.100/24, dev: eth1, scope: link, label: "eth1:v", broadcast: 198.51.100.255}
        - {address: 192.0.2.101/24, excluded: true}
`)
	startKeepalived(t, p.b, `global_defs {
  router_id b
  vrrp_garp_master_repeat 1
}
vrrp_instance vi {
  state BACKUP
  interface eth0
  virtual_router_id 10
  priority 100
  advert_int 0.1
  version 3
  virtual_ipaddress {
    192.0.2.100/24
    198.51.100.100/24 dev eth1 scope link label eth1:v brd 198.51.100.255
  }
  virtual_ipaddress_excluded {
    192.0.2.101/24
  }
}
`)
	waitVIP(t, "192.0.2.100", generous(masterDown(iv, 150)), p.a, p.a, p.b)
	holdVIP(t, "192.0.2.100", 2*masterDown(iv, 100), p.a, p.a, p.b)
	for _, want := range []struct{ dev, line string }{
		{"eth1", "inet 198.51.100.100/24 brd 198.51.100.255 scope link eth1:v"},
		{"eth0", "inet 192.0.2.101/24 "},
	} {
		out, err := p.a.Run("ip", "-4", "-o", "addr", "show", "dev", want.dev)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(out), want.line) {
			t.Errorf("a's %s has no %q:\n%s", want.dev, want.line, out)
		}
	}
	if hasAddr(t, p.b, "198.51.100.100") || hasAddr(t, p.b, "192.0.2.101") {
		t.Error("the keepalived backup holds VIPs")
	}
}
