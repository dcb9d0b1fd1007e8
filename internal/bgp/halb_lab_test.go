package bgp

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"halb/internal/api"
	"halb/internal/lab/labtest"
	"halb/internal/lab/netns"
)

// The halb ECMP lab: the router of newECMPLab (BIRD 2, merge paths, BFD,
// L4 multipath hashing) with a client behind it on 198.51.100.0/24, three
// nodes running `halb run` with the nftables data plane in direct-routing
// mode, and three backends on the nodes' link that hold the VIP on lo
// and answer the client through the router.
const (
	clientAddr = "198.51.100.100"
	// healthInterval is the backends' check interval; a check fails at
	// once on a refused connection.
	healthInterval = 300 * time.Millisecond
)

func backendAddr(i int) string { return fmt.Sprintf("192.0.2.%d", 21+i) }

// halbConfig is node i's configuration.
func halbConfig(i int, dir string) string {
	return fmt.Sprintf(`node: n%d
dataplane: nftables
state_dir: %s
services:
  - {name: web, protocol: tcp, vips: [%s], ports: [80], mark: shared, forward: dr, pool: www}
pools:
  www:
    check: {type: tcp, port: 80, interval: %s, timeout: 200ms, rise: 1, fall: 1}
    servers: [{address: %s}, {address: %s}, {address: %s}]
bgp:
  asn: %d
  router_id: %s
  drain_time: 1s
  peers: [{address: %s, asn: %d, hold_time: 3s, bfd: {interval: 100ms, multiplier: 3}}]
  announce: [{vips: [%s], communities: ["65010:100"]}]
api: {socket: %s}
`, i+1, filepath.Join(dir, "state"), testVIP.Addr(), healthInterval, backendAddr(0), backendAddr(1), backendAddr(2),
		nodeASN, nodeAddr(i), routerAddr, routerASN, testVIP.Addr(), filepath.Join(dir, "halb.sock"))
}

// halbNode is one node's halb process.
type halbNode struct {
	cmd    *exec.Cmd
	socket string
	done   chan struct{}
}

// waitHealthy waits until the node sees n healthy servers.
func (n *halbNode) waitHealthy(t *testing.T, want int) {
	t.Helper()
	c := api.NewClient(n.socket)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		st, err := c.Status(t.Context())
		healthy := 0
		if err == nil && len(st.Services) > 0 {
			for _, s := range st.Services[0].Servers {
				if s.Healthy {
					healthy++
				}
			}
		}
		if healthy == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d healthy servers, want %d (%v)", n.socket, healthy, want, err)
		}
	}
}

// backend answers each line on a connection with its name, and can stop
// accepting (its health check then fails) while its connections go on.
type backend struct {
	host *netns.Host
	name string
	mu   sync.Mutex
	ln   net.Listener
}

func (b *backend) listen(t *testing.T) {
	t.Helper()
	ln, err := b.host.Listen("tcp", ":80")
	if err != nil {
		t.Fatal(err)
	}
	b.mu.Lock()
	b.ln = ln
	b.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					if _, err := fmt.Fprintln(c, b.name); err != nil {
						return
					}
				}
			}()
		}
	}()
}

func (b *backend) stop() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.ln.Close()
}

// flow is a long-lived connection from the client and the backend that
// answered it first.
type flow struct {
	c  net.Conn
	br *bufio.Reader
	on string
}

// ask sends a line and returns the backend's answer.
func (f *flow) ask() (string, error) {
	if err := f.c.SetDeadline(time.Now().Add(2 * time.Second)); err != nil {
		return "", err
	}
	if _, err := fmt.Fprintln(f.c, "hello"); err != nil {
		return "", err
	}
	line, err := f.br.ReadString('\n')
	return strings.TrimSpace(line), err
}

// survivors counts the flows that still answer from their first backend.
func survivors(t *testing.T, flows []*flow, when string) int {
	t.Helper()
	var mu sync.Mutex
	var wg sync.WaitGroup
	n := 0
	for i, f := range flows {
		wg.Go(func() {
			name, err := f.ask()
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				t.Logf("flow %d (on %s) after %s: %v", i, f.on, when, err)
			case name != f.on:
				t.Logf("flow %d moved from %s to %s after %s", i, f.on, name, when)
			default:
				n++
			}
		})
	}
	wg.Wait()
	return n
}

// TestHalbECMP runs three `halb run` nodes behind the router and checks
// what the nodes promise the router and the clients: one next hop per
// node; every route withdrawn within a health interval when every backend
// is down; `halb drain` takes a node out without breaking a connection;
// a node killed leaves within BFD's detection time; and connections the
// router moves to another node stay on their backend (Maglev is the same
// on every node).
func TestHalbECMP(t *testing.T) {
	labtest.RequireTool(t, "nft")
	bin := labtest.HalbBinary(t)
	peer := birdPeer{asn: nodeASN, bfd: true, hold: 3}
	l := newECMPLab(t, [3]birdPeer{peer, peer, peer}, routerRetry)
	if out, err := l.router.Run("sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv4.conf.all.rp_filter=0"); err != nil {
		t.Fatalf("sysctl: %v: %s", err, out)
	}
	cl := labtest.Switch(t, l.lab, "cl")
	if _, err := l.lab.Connect(l.router, cl, "eth1", "198.51.100.1/24"); err != nil {
		t.Fatal(err)
	}
	client := labtest.Join(t, l.lab, cl, "c", clientAddr+"/24")
	if err := client.IP("route", "add", "default", "via", "198.51.100.1"); err != nil {
		t.Fatal(err)
	}
	var backends []*backend
	for i := range 3 {
		h := labtest.Join(t, l.lab, l.sw, fmt.Sprintf("b%d", i+1), backendAddr(i)+"/24")
		for _, kv := range []string{"net.ipv4.conf.all.arp_ignore=1", "net.ipv4.conf.all.arp_announce=2",
			"net.ipv4.conf.eth0.arp_ignore=1", "net.ipv4.conf.eth0.arp_announce=2"} {
			if out, err := h.Run("sysctl", "-qw", kv); err != nil {
				t.Fatalf("sysctl %s: %v: %s", kv, err, out)
			}
		}
		if err := h.IP("addr", "add", testVIP.String(), "dev", "lo"); err != nil {
			t.Fatal(err)
		}
		if err := h.IP("route", "add", "default", "via", routerAddr); err != nil {
			t.Fatal(err)
		}
		b := &backend{host: h, name: backendAddr(i)}
		b.listen(t)
		backends = append(backends, b)
	}

	nodes := make([]*halbNode, 3)
	for i, h := range l.nodes {
		dir := t.TempDir()
		file := filepath.Join(dir, "halb.yaml")
		if err := os.WriteFile(file, []byte(halbConfig(i, dir)), 0o600); err != nil {
			t.Fatal(err)
		}
		n := &halbNode{cmd: h.Command(context.Background(), bin, "run", "--config", file), socket: filepath.Join(dir, "halb.sock"),
			done: make(chan struct{})}
		n.cmd.Stderr = &prefixWriter{t: t, prefix: fmt.Sprintf("n%d", i+1)}
		if err := n.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { n.cmd.Wait(); close(n.done) }()
		t.Cleanup(func() {
			n.cmd.Process.Kill()
			<-n.done
		})
		nodes[i] = n
	}
	t.Logf("three nodes announced in %s", l.waitHops(hopsOf(0, 1, 2), 30*time.Second).Round(time.Millisecond))
	out, err := l.router.Run("ip", "route", "show", testVIP.Addr().String())
	if err != nil || strings.Count(string(out), "nexthop via") != 3 {
		t.Fatalf("the router's route is not one multipath route with three next hops (%v):\n%s", err, out)
	}

	// Every backend down: every node withdraws.
	for _, b := range backends {
		b.stop()
	}
	took := l.waitHops(nil, 10*time.Second)
	t.Logf("every backend down: the route left the router in %s (health interval %s)", took.Round(time.Millisecond), healthInterval)
	if limit := healthInterval + 700*time.Millisecond; took > limit {
		t.Errorf("withdrawn after %s, want within a health interval and a margin (%s)", took, limit)
	}
	for _, b := range backends {
		b.listen(t)
	}
	l.waitHops(hopsOf(0, 1, 2), 10*time.Second)
	for _, n := range nodes {
		n.waitHealthy(t, len(backends))
	}

	// Long-lived connections, spread over the nodes by the router.
	const nFlows = 100
	flows := make([]*flow, 0, nFlows)
	for i := range nFlows {
		ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
		c, err := client.DialContext(ctx, "tcp", testVIP.Addr().String()+":80")
		cancel()
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		t.Cleanup(func() { c.Close() })
		f := &flow{c: c, br: bufio.NewReader(c)}
		if f.on, err = f.ask(); err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		flows = append(flows, f)
	}
	spread := map[string]int{}
	for _, f := range flows {
		spread[f.on]++
	}
	t.Logf("%d connections over the backends: %v", nFlows, spread)

	// halb drain on node 1: its next hop leaves; the connections go on.
	start := time.Now()
	drain := l.nodes[0].Command(context.Background(), bin, "drain", "--socket", nodes[0].socket, "--timeout", "2s")
	drainOut, err := drain.CombinedOutput()
	if err != nil || !strings.Contains(string(drainOut), "withdrawn "+testVIP.Addr().String()) {
		t.Fatalf("halb drain: %v\n%s", err, drainOut)
	}
	t.Logf("halb drain:\n%s", drainOut)
	l.waitHops(hopsOf(1, 2), 5*time.Second)
	t.Logf("drain: node 1's next hop left; drain command done after %s", time.Since(start).Round(time.Millisecond))
	if n := survivors(t, flows, "the drain"); n != nFlows {
		t.Errorf("%d of %d connections survived the drain, want all", n, nFlows)
	} else {
		t.Logf("drain: %d of %d connections survived", n, nFlows)
	}

	// kill -9 node 3: BFD takes its next hop out.
	if err := nodes[2].cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	took = l.waitHops(hopsOf(1), 5*time.Second)
	t.Logf("kill -9: node 3's next hop left in %s", took.Round(time.Millisecond))
	if took > time.Second {
		t.Errorf("a killed node left the route after %s, want within 1s with BFD", took)
	}
	n := survivors(t, flows, "node 3 was killed")
	t.Logf("kill -9: %d of %d connections survived on their backend (%.1f%%)", n, nFlows, 100*float64(n)/nFlows)
	if n != nFlows {
		t.Errorf("%d of %d connections survived a node's removal, want all", n, nFlows)
	}
}
