package nft

import (
	"fmt"
	"math"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"halb/internal/config"
	"halb/internal/dataplane"
	"halb/internal/engine"
	"halb/internal/lab/netns"
)

const drConfig = `
node: lb
services:
  - name: web
    protocol: tcp
    vips: [192.0.2.9]
    ports: [80]
    mark: shared
    forward: dr
    pool: web
pools:
  web:
    servers:
      - {address: 192.0.2.21, weight: 1}
      - {address: 192.0.2.22, weight: 2}
      - {address: 192.0.2.23, weight: 3}
`

func drState(t testing.TB) dataplane.State {
	t.Helper()
	cfg, diags := config.Parse("dr.yaml", []byte(drConfig), config.Options{Hostname: "lb"})
	if cfg == nil {
		t.Fatal(diags)
	}
	return engine.Desired(engine.Inputs{Config: cfg}).State
}

// TestDirectRouting: on one link, two LB nodes carry a DR service (a
// firewall-mark service, so its packets are classified by the mark
// rules' tuples) with the same netdev table. Connections to the VIP
// spread 1:2:3 over backends that answer the client directly; then the
// VIP moves from node A to node B and twenty long-lived connections go
// on, on the same backends, with no state shared between the nodes.
func TestDirectRouting(t *testing.T) {
	lab, lbA := labHost(t)
	lbB, err := lab.AddHost("lbb")
	if err != nil {
		t.Fatal(err)
	}
	lan, client := drLAN(t, lab)
	portA, err := lab.Connect(lbA, lan, "eth0", "192.0.2.2/24", "192.0.2.9/24")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lab.Connect(lbB, lan, "eth0", "192.0.2.3/24"); err != nil {
		t.Fatal(err)
	}
	st := drState(t)
	dps := map[*netns.Host]*Dataplane{}
	for _, lb := range []*netns.Host{lbA, lbB} {
		dps[lb] = nsDataplane(t, lb, WithMode(LoadBalance))
		reconcile(t, dps[lb], st)
	}
	out, err := lbA.Run("nft", "list", "table", "netdev", DefaultTable)
	if err != nil {
		t.Fatalf("nft list table netdev: %v: %s", err, out)
	}
	if !strings.Contains(string(out), `fwd ip to 192.0.2.21 device "eth0"`) {
		t.Fatalf("no fwd rule in the netdev table:\n%s", out)
	}

	cl := newDialer(t, client)
	const n = 600
	count := map[string]int{}
	for i := range n {
		name, err := cl.hit("", "192.0.2.9:80")
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		count[name]++
	}
	t.Logf("distribution over %d connections: %v", n, count)
	for i, w := range []float64{1, 2, 3} {
		name := fmt.Sprintf("192.0.2.%d", 21+i)
		if got, want := float64(count[name]), n*w/6; math.Abs(got-want) > 0.07*n {
			t.Errorf("%s (weight %v) got %v connections, want %v ± %v", name, w, got, want, 0.07*n)
		}
	}

	conns := make([]net.Conn, 20)
	on := make([]string, len(conns))
	for i := range conns {
		c, name, err := cl.dial("", "192.0.2.9:80")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns[i], on[i] = c, name
	}
	if err := lan.IP("link", "set", portA, "down"); err != nil {
		t.Fatal(err)
	}
	if err := lbB.IP("addr", "add", "192.0.2.9/24", "dev", "eth0"); err != nil {
		t.Fatal(err)
	}
	must(t, client, "ip", "neigh", "flush", "all")
	check := func(when string) {
		t.Helper()
		for i, c := range conns {
			name, err := echoFrom(c, when)
			if err != nil {
				t.Errorf("connection %d (on %s) did not survive %s: %v", i, on[i], when, err)
			} else if name != on[i] {
				t.Errorf("connection %d moved from %s to %s at %s", i, on[i], name, when)
			}
		}
	}
	check("the failover")
	// Node B now carries the flows and has recorded them: new weights move
	// Maglev slots, but no established connection.
	changed := drState(t)
	for i := range changed.Services[0].Reals {
		changed.Services[0].Reals[i].Weight = 3 - i
	}
	reconcile(t, dps[lbB], changed)
	check("a weight change")

	// A client port (below the ephemeral range) reused for a new connection
	// after the table changed:
	// its SYN is balanced anew, and the next segments must follow it, not
	// the port's stale flow entry from before the change.
	must(t, client, "sysctl", "-qw", "net.ipv4.tcp_tw_reuse=1")
	before := map[int]string{}
	for port := 20000; port < 20060; port++ {
		name, err := cl.hit(fmt.Sprintf("192.0.2.100:%d", port), "192.0.2.9:80")
		if err != nil {
			t.Fatalf("port %d: %v", port, err)
		}
		before[port] = name
	}
	reconcile(t, dps[lbB], drState(t))
	moved := 0
	for port := 20000; port < 20060; port++ {
		name, err := cl.hit(fmt.Sprintf("192.0.2.100:%d", port), "192.0.2.9:80")
		if err != nil {
			t.Errorf("port %d reused after a table change: %v", port, err)
			continue
		}
		if name != before[port] {
			moved++
		}
	}
	if moved == 0 {
		t.Fatal("no reused port hashed to another backend: the test proves nothing")
	}
	t.Logf("%d of 60 reused ports went to another backend after the change, all connected", moved)
}

// drLAN is the one-armed network of the direct-routing tests: a switch
// with a client (192.0.2.100) and three backends (192.0.2.21–23) that hold
// the VIP 192.0.2.9 on lo without answering ARP for it, each answering
// HTTP on the VIP with its own address. The load balancers join the switch.
func drLAN(t *testing.T, lab *netns.Lab) (lan, client *netns.Host) {
	t.Helper()
	lan, err := lab.AddSwitch("lan")
	if err != nil {
		t.Fatal(err)
	}
	if client, err = lab.AddHost("client"); err != nil {
		t.Fatal(err)
	}
	if _, err := lab.Connect(client, lan, "eth0", "192.0.2.100/24"); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		h, err := lab.AddHost(fmt.Sprintf("be%d", i+1))
		if err != nil {
			t.Fatal(err)
		}
		addr := fmt.Sprintf("192.0.2.%d", 21+i)
		if _, err := lab.Connect(h, lan, "eth0", addr+"/24"); err != nil {
			t.Fatal(err)
		}
		for _, s := range []string{"net.ipv4.conf.all.arp_ignore=1", "net.ipv4.conf.all.arp_announce=2",
			"net.ipv4.conf.eth0.arp_ignore=1", "net.ipv4.conf.eth0.arp_announce=2"} {
			must(t, h, "sysctl", "-qw", s)
		}
		if err := h.IP("addr", "add", "192.0.2.9/32", "dev", "lo"); err != nil {
			t.Fatal(err)
		}
		serveNames(t, h, "192.0.2.9:80", addr)
	}
	return lan, client
}

// TestDirectRoutingIPv6Table: the kernel takes an IPv6 DR service with
// persistence (flows, pins and fwd of 16-byte addresses), and nft reads
// the rules back as the ones it would write.
func TestDirectRoutingIPv6Table(t *testing.T) {
	lab, lb := labHost(t)
	lan, err := lab.AddSwitch("lan")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lab.Connect(lb, lan, "eth0", "2001:db8::2/64"); err != nil {
		t.Fatal(err)
	}
	vip := netip.MustParseAddr("2001:db8::9")
	st := dataplane.State{Services: []dataplane.VirtualService{{
		Key:     dataplane.ServiceKey{Family: 6, Protocol: "tcp", Addr: vip, Port: 80},
		Service: "web6", Persistence: 300 * time.Second, Netmask: 64,
		Reals: []dataplane.Real{
			{Addr: netip.MustParseAddr("2001:db8::21"), Weight: 1, Forward: "dr"},
			{Addr: netip.MustParseAddr("2001:db8::22"), Weight: 1, Forward: "dr"},
		},
	}}}
	reconcile(t, nsDataplane(t, lb, WithMode(LoadBalance)), st)
	out := listNetdev(t, lb)
	for _, want := range []string{
		`fwd ip6 to 2001:db8::21 device "eth0"`,
		"update @drpin-", "ip6 saddr & ffff:ffff:ffff:ffff:: timeout 5m",
		"jhash ip6 saddr & ffff:ffff:ffff:ffff:: mod ",
		"ip6 saddr . th sport . ip6 daddr . th dport @flow-",
		"2001:db8::9 . tcp . 80 : goto dr-",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("netdev table lacks %q:\n%s", want, out)
		}
	}
}
