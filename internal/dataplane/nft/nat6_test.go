package nft

import (
	"fmt"
	"math"
	"slices"
	"testing"

	"halb/internal/config"
	"halb/internal/dataplane"
	"halb/internal/engine"
)

const nat6Config = `
node: lb
services:
  - {name: web6, protocol: tcp, vips: ["2001:db8:1::10"], ports: [80], mark: none, forward: nat, pool: web6}
  - {name: tls6, protocol: tcp, vips: ["2001:db8:1::10"], ports: [443], mark: per-vip, forward: nat, pool: web6,
     persistence: {timeout: 60s, netmask: 64}}
pools:
  web6:
    servers:
      - {address: "2001:db8:2::21", port: 80, weight: 1}
      - {address: "2001:db8:2::22", port: 80, weight: 1}
      - {address: "2001:db8:2::23", port: 80, weight: 2}
`

// TestNATIPv6: the IPv6 paths (header offsets, 16-byte addresses in the
// hash and the pins' /64 mask) balance by weight and pin a client's /64,
// through a mark service whose servers listen on another port.
func TestNATIPv6(t *testing.T) {
	lab, lb := labHost(t)
	front, back, client := frontAndBack(t, lab, "2001:db8:1::100/64", "2001:db8:1::101/64")
	if _, err := lab.Connect(lb, front, "eth0", "2001:db8:1::2/64", "2001:db8:1::10/64"); err != nil {
		t.Fatal(err)
	}
	if _, err := lab.Connect(lb, back, "eth1", "2001:db8:2::1/64"); err != nil {
		t.Fatal(err)
	}
	must(t, lb, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
	for i := range 3 {
		h, err := lab.AddHost(fmt.Sprintf("be%d", i+1))
		if err != nil {
			t.Fatal(err)
		}
		addr := fmt.Sprintf("2001:db8:2::%d", 21+i)
		if _, err := lab.Connect(h, back, "eth0", addr+"/64"); err != nil {
			t.Fatal(err)
		}
		if err := h.IP("-6", "route", "add", "default", "via", "2001:db8:2::1"); err != nil {
			t.Fatal(err)
		}
		serveNames(t, h, "["+addr+"]:80", addr)
	}
	cfg, diags := config.Parse("nat6.yaml", []byte(nat6Config), config.Options{Hostname: "lb"})
	if cfg == nil {
		t.Fatal(diags)
	}
	d := nsDataplane(t, lb, WithMode(LoadBalance))
	st := engine.Desired(engine.Inputs{Config: cfg}).State
	reconcile(t, d, st)
	cl := newDialer(t, client)
	const n = 400
	count := map[string]int{}
	for i := range n {
		name, err := cl.hit("", "[2001:db8:1::10]:80")
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		count[name]++
	}
	t.Logf("distribution over %d connections: %v", n, count)
	for i, w := range []float64{1, 1, 2} {
		name := fmt.Sprintf("2001:db8:2::%d", 21+i)
		if got, want := float64(count[name]), n*w/4; math.Abs(got-want) > 0.08*n {
			t.Errorf("%s (weight %v) got %v, want %v ± %v", name, w, got, want, 0.08*n)
		}
	}
	// Two addresses of one /64: one backend for both, every time.
	pinned := map[string]int{}
	for i := range 20 {
		src := []string{"2001:db8:1::100", "2001:db8:1::101"}[i%2]
		name, err := cl.hit(src, "[2001:db8:1::10]:443")
		if err != nil {
			t.Fatal(err)
		}
		pinned[name]++
	}
	if len(pinned) != 1 {
		t.Errorf("one client /64 went to %v, want one backend", pinned)
	}

	// The counters: web6 and tls6 send to the same backend port, so
	// their keys overlap and neither is counted; without tls6, web6's
	// backends count their IPv6 connections.
	for _, s := range readCounters(t, d) {
		if len(s.Reals) != 0 {
			t.Errorf("%s counted though its backends share their keys with another service's: %+v", s.Key, s.Reals)
		}
	}
	st.Services = slices.DeleteFunc(st.Services, func(vs dataplane.VirtualService) bool { return vs.Service != "web6" })
	reconcile(t, d, st)
	count = map[string]int{}
	for range 20 {
		name, err := cl.hit("", "[2001:db8:1::10]:80")
		if err != nil {
			t.Fatal(err)
		}
		count[name]++
	}
	cs := readCounters(t, d)
	for i := range 3 {
		addr := fmt.Sprintf("2001:db8:2::%d", 21+i)
		r, ok := realCounters(t, cs, "tcp [2001:db8:1::10]:80", addr)
		if !ok || r.Connections != uint64(count[addr]) || r.PacketsIn < 3*r.Connections || r.PacketsOut < 2*r.Connections {
			t.Errorf("%s: counters %+v (found %v) for %d connections", addr, r, ok, count[addr])
		}
	}
}
