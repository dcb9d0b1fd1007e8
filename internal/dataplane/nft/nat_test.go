package nft

import (
	"context"
	"fmt"
	"math"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"halb/internal/config"
	"halb/internal/dataplane"
	"halb/internal/engine"
)

const natConfig = `
node: lb
services:
  - name: web
    protocol: tcp
    vips: [203.0.113.10]
    ports: [80]
    mark: none
    forward: nat
    %s
    pool: web
pools:
  web:
    on_failure: %s
    check: {type: tcp}
    servers:
      - {address: 198.51.100.21, weight: %d}
      - {address: 198.51.100.22, weight: %d}
      - {address: 198.51.100.23, weight: %d}
`

// natState is the desired state of natConfig with weights 1, 2, 3 and the
// given servers down.
func natState(t testing.TB, extra, onFailure string, down ...string) dataplane.State {
	return natStateW(t, extra, onFailure, [3]int{1, 2, 3}, down...)
}

func natStateW(t testing.TB, extra, onFailure string, w [3]int, down ...string) dataplane.State {
	t.Helper()
	cfg, diags := config.Parse("nat.yaml", []byte(fmt.Sprintf(natConfig, extra, onFailure, w[0], w[1], w[2])), config.Options{Hostname: "lb"})
	if cfg == nil {
		t.Fatalf("config: %s", diags)
	}
	in := engine.Inputs{Config: cfg, Health: map[engine.ServerRef]engine.ServerHealth{}}
	for _, s := range cfg.Pools["web"].Servers {
		in.Health[engine.ServerRef{Pool: "web", Addr: s.Address, Port: s.Port}] = engine.ServerHealth{Up: true, Weight: -1}
	}
	for _, a := range down {
		for ref := range in.Health {
			if ref.Addr.String() == a {
				in.Health[ref] = engine.ServerHealth{Up: false, Weight: -1, Reason: "test"}
			}
		}
	}
	return engine.Desired(in).State
}

// TestNATDistributionByWeight: 1,200 connections through the LB spread
// 1:2:3 over three backends.
func TestNATDistributionByWeight(t *testing.T) {
	l := newNATLab(t, 3)
	d := nsDataplane(t, l.lb, WithMode(LoadBalance))
	reconcile(t, d, natState(t, "", "inhibit"))
	cl := newDialer(t, l.client)
	const n = 1200
	count := map[string]int{}
	for i := range n {
		name, err := cl.hit("", "203.0.113.10:80")
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		count[name]++
	}
	t.Logf("distribution over %d connections: %v", n, count)
	for i, w := range []float64{1, 2, 3} {
		name := fmt.Sprintf("198.51.100.%d", 21+i)
		want := n * w / 6
		if got := float64(count[name]); math.Abs(got-want) > 0.05*n {
			t.Errorf("%s (weight %v) got %v connections, want %v ± %v", name, w, got, want, 0.05*n)
		}
	}
}

// clients adds n client addresses 203.0.113.101… and returns them.
func (l *natLab) clients(t testing.TB, n int) []string {
	t.Helper()
	var out []string
	for i := range n {
		a := fmt.Sprintf("203.0.113.%d", 101+i)
		if err := l.client.IP("addr", "add", a+"/24", "dev", "eth0"); err != nil {
			t.Fatal(err)
		}
		out = append(out, a)
	}
	return out
}

// TestNATPersistence: with persistence each client stays on its backend
// after the weights change (the pins hold it); once the pins are flushed
// the new table moves some of them, which shows the pins were at work.
func TestNATPersistence(t *testing.T) {
	l := newNATLab(t, 3)
	srcs := l.clients(t, 24)
	d := nsDataplane(t, l.lb, WithMode(LoadBalance))
	const persist = "persistence: {timeout: 60s}"
	reconcile(t, d, natState(t, persist, "inhibit"))
	cl := newDialer(t, l.client)
	first := map[string]string{}
	for _, src := range srcs {
		name, err := cl.hit(src, "203.0.113.10:80")
		if err != nil {
			t.Fatal(err)
		}
		first[src] = name
		for range 3 { // the same client again: same backend
			again, err := cl.hit(src, "203.0.113.10:80")
			if err != nil {
				t.Fatal(err)
			}
			if again != name {
				t.Fatalf("client %s went to %s, then to %s", src, name, again)
			}
		}
	}
	reconcile(t, d, natStateW(t, persist, "inhibit", [3]int{5, 1, 1}))
	for _, src := range srcs {
		name, err := cl.hit(src, "203.0.113.10:80")
		if err != nil {
			t.Fatal(err)
		}
		if name != first[src] {
			t.Errorf("client %s pinned to %s moved to %s when the weights changed", src, first[src], name)
		}
	}
	out, err := l.lb.Run("bash", "-c", "for s in $(nft -j list sets inet | grep -o '\"pin-[0-9a-f-]*' | tr -d '\"'); do nft flush set inet halb $s; done")
	if err != nil {
		t.Fatalf("flush pins: %v: %s", err, out)
	}
	moved := 0
	for _, src := range srcs {
		name, err := cl.hit(src, "203.0.113.10:80")
		if err != nil {
			t.Fatal(err)
		}
		if name != first[src] {
			moved++
		}
	}
	t.Logf("%d of %d clients moved once their pins were gone", moved, len(srcs))
	if moved == 0 {
		t.Error("no client moved after the pins were flushed: the weights change did not matter, so the test proves nothing")
	}
}

// TestNATFailedBackendGetsNoNewFlows: a backend that fails (inhibited or
// removed) gets no new connection, pinned clients included, while a
// connection it already serves goes on.
func TestNATFailedBackendGetsNoNewFlows(t *testing.T) {
	for _, onFailure := range []string{"inhibit", "remove"} {
		t.Run(onFailure, func(t *testing.T) {
			l := newNATLab(t, 3)
			srcs := l.clients(t, 12)
			d := nsDataplane(t, l.lb, WithMode(LoadBalance))
			for _, persist := range []string{"", "persistence: {timeout: 60s}"} {
				reconcile(t, d, natState(t, persist, onFailure))
				cl := newDialer(t, l.client)
				var onFailed []string
				var old []net.Conn
				for _, src := range srcs {
					c, name, err := cl.dial(src, "203.0.113.10:80")
					if err != nil {
						t.Fatal(err)
					}
					if name == "198.51.100.23" {
						onFailed = append(onFailed, src)
						old = append(old, c)
					} else {
						c.Close()
					}
				}
				if len(onFailed) == 0 {
					t.Fatal("no client reached 198.51.100.23 before it failed")
				}
				reconcile(t, d, natState(t, persist, onFailure, "198.51.100.23"))
				count := map[string]int{}
				for i := range 300 {
					name, err := cl.hit(srcs[i%len(srcs)], "203.0.113.10:80")
					if err != nil {
						t.Fatal(err)
					}
					count[name]++
				}
				if count["198.51.100.23"] > 0 {
					t.Errorf("%q: failed backend got %d of 300 new connections", persist, count["198.51.100.23"])
				}
				for _, c := range old {
					if err := echo(c, "still there"); err != nil {
						t.Errorf("%q: established connection to the failed backend broke: %v", persist, err)
					}
					c.Close()
				}
				t.Logf("%q: after the failure: %v (%d clients were on it)", persist, count, len(onFailed))
			}
		})
	}
}

// echo sends a line and expects the backend's echo of it.
func echo(c net.Conn, msg string) error {
	_, err := echoFrom(c, msg)
	return err
}

// echoFrom sends a line and returns the name of the backend that echoed it.
func echoFrom(c net.Conn, msg string) (string, error) {
	c.SetDeadline(time.Now().Add(3 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := fmt.Fprintf(c, "%s\n", msg); err != nil {
		return "", err
	}
	buf := make([]byte, 256)
	n, err := c.Read(buf)
	if err != nil {
		return "", err
	}
	name, rest, _ := strings.Cut(strings.TrimSpace(string(buf[:n])), " ")
	if rest != msg {
		return "", fmt.Errorf("echo %q: got %q", msg, buf[:n])
	}
	return name, nil
}

// TestNATReloadUnderLoad: while clients open connections without pause and
// long-lived ones keep talking, the state changes twenty times (weights,
// a backend out and back, a service added and removed, the same state
// again, a restart of the data plane); no connection fails.
func TestNATReloadUnderLoad(t *testing.T) {
	l := newNATLab(t, 3)
	d := nsDataplane(t, l.lb, WithMode(LoadBalance))
	base := natState(t, "", "inhibit")
	reconcile(t, d, base)
	cl := newDialer(t, l.client)
	var long []net.Conn
	for range 8 {
		c, _, err := cl.dial("", "203.0.113.10:80")
		if err != nil {
			t.Fatal(err)
		}
		long = append(long, c)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failures []error
	total := 0
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				_, err := cl.hit("", "203.0.113.10:80")
				mu.Lock()
				total++
				if err != nil {
					failures = append(failures, err)
				}
				mu.Unlock()
			}
		}()
	}
	extra := natState(t, "", "inhibit")
	extra.Services = append(extra.Services, func() dataplane.VirtualService {
		vs := extra.Services[0]
		vs.Key.Port = 8080
		vs.Reals = append([]dataplane.Real(nil), vs.Reals...)
		return vs
	}())
	extra.Sort()
	states := []dataplane.State{
		natStateW(t, "", "inhibit", [3]int{3, 2, 1}),
		natState(t, "", "inhibit", "198.51.100.22"),
		natState(t, "", "remove", "198.51.100.22"),
		base,
		extra,
		base,
		natStateW(t, "", "inhibit", [3]int{1, 1, 1}),
	}
	for i := range 20 {
		st := states[i%len(states)]
		if i == 10 {
			d = nsDataplane(t, l.lb, WithMode(LoadBalance)) // a restart: reads the table, rewrites nothing that holds
		}
		if err := d.Reconcile(context.Background(), st); err != nil {
			t.Errorf("reload %d: %v", i, err)
			break
		}
		time.Sleep(50 * time.Millisecond)
		for j, c := range long {
			if err := echo(c, fmt.Sprintf("reload %d", i)); err != nil {
				t.Errorf("long-lived connection %d failed after reload %d: %v", j, i, err)
			}
		}
	}
	close(stop)
	wg.Wait()
	for _, c := range long {
		c.Close()
	}
	t.Logf("%d connections during 20 reloads, %d failed", total, len(failures))
	if total < 100 {
		t.Errorf("only %d connections ran during the reloads; the load was too light to show anything", total)
	}
	for i, err := range failures {
		if i < 5 {
			t.Errorf("connection failed during reloads: %v", err)
		}
	}
}

// TestNATPortTranslation: servers with their own port (8080) behind a
// service on port 80, and a service whose servers keep the packet's port.
func TestNATPortTranslation(t *testing.T) {
	l := newNATLab(t, 2)
	for i, h := range l.backends {
		addr := fmt.Sprintf("198.51.100.%d", 21+i)
		serveNames(t, h, addr+":8080", addr+"/8080")
	}
	st := dataplane.State{Services: []dataplane.VirtualService{
		{Key: dataplane.ServiceKey{Family: 4, Protocol: "tcp", Addr: netip.MustParseAddr("203.0.113.10"), Port: 80}, Service: "alt",
			Reals: []dataplane.Real{
				{Addr: netip.MustParseAddr("198.51.100.21"), Port: 8080, Weight: 1, Forward: "nat"},
				{Addr: netip.MustParseAddr("198.51.100.22"), Port: 8080, Weight: 1, Forward: "nat"}}},
		{Key: dataplane.ServiceKey{Family: 4, Protocol: "tcp", Addr: netip.MustParseAddr("203.0.113.10"), Port: 8080}, Service: "keep",
			Reals: []dataplane.Real{
				{Addr: netip.MustParseAddr("198.51.100.21"), Weight: 1, Forward: "nat"},
				{Addr: netip.MustParseAddr("198.51.100.22"), Weight: 1, Forward: "nat"}}},
	}}
	st.Sort()
	reconcile(t, nsDataplane(t, l.lb, WithMode(LoadBalance)), st)
	cl := newDialer(t, l.client)
	for _, port := range []string{"80", "8080"} {
		for range 10 {
			name, err := cl.hit("", "203.0.113.10:"+port)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasSuffix(name, "/8080") {
				t.Fatalf("VIP port %s reached %s, want a server's port 8080", port, name)
			}
		}
	}
}
