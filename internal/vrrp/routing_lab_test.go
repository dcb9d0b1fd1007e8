package vrrp

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"halb/internal/lab/labtest"
	"halb/internal/lab/netns"
)

// TestLabRouting: an instance's routes and rules are on the master only
// and follow the VIP; static addresses and routes are on every node
// while halb runs and gone when it stops. Routes carry the protocol
// configured (boot when none is), and are removed with it.
func TestLabRouting(t *testing.T) {
	labtest.RequireRoot(t)
	p := newPair(t)
	const vip = "192.0.2.100"
	iv := 100 * time.Millisecond
	conf := func(name string, prio, static int) string {
		return halbConf(name, 10, prio, "", vip+"/24") + `      routes:
        - {to: 198.51.100.0/24, via: 192.0.2.254, protocol: bird}
        - {to: 203.0.113.0/24, dev: eth0, table: 100, scope: link, protocol: 250}
      rules: [{from: 192.0.2.100/32, table: 100, priority: 1000}]
  static:
    addresses: [{address: ` + fmt.Sprintf("192.0.2.%d/24", static) + `, dev: eth0}]
    routes: [{to: 203.0.113.128/25, type: blackhole}, {to: 203.0.113.64/26, type: blackhole, protocol: static}]
`
	}
	// show is ip's output; an error (a table that does not exist yet)
	// shows nothing.
	show := func(h *netns.Host, args ...string) string {
		out, err := h.Run("ip", args...)
		if err != nil {
			return ""
		}
		return string(out)
	}
	// has reports which of the instance's routes (with their protocols)
	// and rules h has.
	has := func(h *netns.Host) [3]bool {
		return [3]bool{strings.Contains(show(h, "route", "show", "198.51.100.0/24", "proto", "bird"), "via 192.0.2.254"),
			strings.Contains(show(h, "route", "show", "table", "100", "proto", "250"), "203.0.113.0/24 dev eth0 scope link"),
			strings.Contains(show(h, "rule", "show"), "1000:\tfrom 192.0.2.100 lookup 100")}
	}
	hasStatic := func(h *netns.Host, n int) bool {
		return hasAddr(t, h, fmt.Sprintf("192.0.2.%d", n)) && strings.Contains(show(h, "route", "show", "203.0.113.128/25", "proto", "boot"), "blackhole") &&
			strings.Contains(show(h, "route", "show", "203.0.113.64/26", "proto", "static"), "blackhole")
	}
	waitRouting := func(h *netns.Host, want bool) {
		t.Helper()
		deadline := time.Now().Add(2 * time.Second)
		for has(h) != [3]bool{want, want, want} {
			if time.Now().After(deadline) {
				t.Fatalf("%s: routes, table-100 route, rule present = %v; want all %v", h.Name, has(h), want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	a := startHelper(t, p.a, conf("a", 150, 211))
	startHelper(t, p.b, conf("b", 100, 212))
	waitVIP(t, vip, generous(masterDown(iv, 100)), p.a, p.a, p.b)
	waitRouting(p.a, true)
	waitRouting(p.b, false)
	if !hasStatic(p.a, 211) || !hasStatic(p.b, 212) {
		t.Fatal("static address or route missing")
	}

	a.term()
	waitVIP(t, vip, generous(iv), p.b, p.a, p.b)
	waitRouting(p.b, true)
	waitRouting(p.a, false)
	if hasStatic(p.a, 211) || !hasStatic(p.b, 212) {
		t.Error("static address or route left on the stopped node, or gone from the running one")
	}
}
