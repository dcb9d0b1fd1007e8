package vrrp

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"halb/internal/api"
	"halb/internal/lab/labtest"
	"halb/internal/lab/netns"
)

// fullPairConf is node n's keepalived.conf of the pair TestLabMigrateFullPair
// migrates: VRRPv2 under AH on a virtual MAC interface, with a virtual
// route, and a DR virtual server on the VIP whose three real servers each
// have their own checker.
func fullPairConf(n, prio int) string {
	return fmt.Sprintf(`global_defs {
  router_id lb%d
  vrrp_garp_master_repeat 1
  vrrp_garp_master_refresh 0
}

vrrp_instance vi {
  state BACKUP
  interface eth0
  virtual_router_id 10
  priority %d
  advert_int 1
  use_vmac
  authentication {
    auth_type AH
    auth_pass s3cret
  }
  virtual_ipaddress {
    192.0.2.100/24
  }
  virtual_routes {
    198.51.100.0/24 via 192.0.2.254
  }
}

virtual_server 192.0.2.100 80 {
  delay_loop 1
  lb_algo wrr
  lb_kind DR
  protocol TCP
  real_server 192.0.2.21 80 {
    weight 1
    TCP_CHECK {
      connect_port 8081
      connect_timeout 1
      retry 1
    }
  }
  real_server 192.0.2.22 80 {
    weight 1
    TCP_CHECK {
      connect_port 8082
      connect_timeout 1
      retry 1
    }
  }
  real_server 192.0.2.23 80 {
    weight 1
    HTTP_GET {
      url {
        path /healthz
        status_code 200
      }
      connect_timeout 1
      retry 1
    }
  }
}
`, n, prio)
}

// vipSampler records, every 50 ms, how many of the pair's nodes hold the
// VIP, and the longest runs of samples with none and with both.
type vipSampler struct {
	cancel context.CancelFunc
	done   chan struct{}

	mu                 sync.Mutex
	samples, none, two int
	maxNone, maxTwo    time.Duration
	err                error
}

func startVIPSampler(vip string, hosts ...*netns.Host) *vipSampler {
	ctx, cancel := context.WithCancel(context.Background())
	s := &vipSampler{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		var noneSince, twoSince time.Time
		for ctx.Err() == nil {
			held := 0
			for _, h := range hosts {
				out, err := h.Run("ip", "-o", "addr", "show")
				if err != nil {
					s.mu.Lock()
					s.err = fmt.Errorf("ip addr on %s: %w: %s", h.Name, err, out)
					s.mu.Unlock()
					return
				}
				if strings.Contains(string(out), " "+vip+"/") {
					held++
				}
			}
			now := time.Now()
			s.mu.Lock()
			s.samples++
			switch held {
			case 0:
				s.none++
				if noneSince.IsZero() {
					noneSince = now
				}
				s.maxNone = max(s.maxNone, now.Sub(noneSince))
			case 2:
				s.two++
				if twoSince.IsZero() {
					twoSince = now
				}
				s.maxTwo = max(s.maxTwo, now.Sub(twoSince))
			}
			if held != 0 {
				noneSince = time.Time{}
			}
			if held != 2 {
				twoSince = time.Time{}
			}
			s.mu.Unlock()
			time.Sleep(50 * time.Millisecond)
		}
	}()
	return s
}

func (s *vipSampler) stop() {
	s.cancel()
	<-s.done
}

// advertsFrom captures count VRRP adverts under AH on the client's link
// and fails unless all come from src with the virtual MAC of VRID 10.
func advertsFrom(t *testing.T, c *netns.Host, src string, count int) {
	t.Helper()
	out, err := c.Run("timeout", "5", "tcpdump", "-i", "eth0", "-e", "-nn", "-c", fmt.Sprint(count), "ip proto 51")
	want := "00:00:5e:00:01:0a > 01:00:5e:00:00:12"
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	n := 0
	for _, l := range lines {
		if strings.Contains(l, want) && strings.Contains(l, src+" > 224.0.0.18: AH") {
			n++
		}
	}
	if err != nil || n != count {
		t.Errorf("want %d adverts from %s by %s: %v:\n%s", count, src, want, err, out)
	}
}

// bridgeCapture is tcpdump on the lab switch's bridge, until stopped.
type bridgeCapture struct {
	cancel context.CancelFunc
	done   chan struct{}
	out    syncBuffer
}

func startBridgeCapture(t *testing.T, sw *netns.Host, filter string) *bridgeCapture {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	bc := &bridgeCapture{cancel: cancel, done: make(chan struct{})}
	cmd := sw.Command(ctx, "tcpdump", "-i", "br0", "-e", "-nn", "-v", "-l", filter)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGINT) }
	cmd.Stdout, cmd.Stderr = &bc.out, &bc.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { cmd.Wait(); close(bc.done) }()
	t.Cleanup(func() { cancel(); <-bc.done })
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(bc.out.String(), "listening on") {
		if time.Now().After(deadline) {
			t.Fatalf("tcpdump is not listening after 10s: %s", bc.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return bc
}

// stop ends the capture and returns what tcpdump printed.
func (bc *bridgeCapture) stop() string {
	bc.cancel()
	<-bc.done
	return bc.out.String()
}

// hasRoute reports whether h routes 198.51.100.0/24 via the lab's gateway,
// the instance's virtual route.
func hasRoute(t *testing.T, h *netns.Host) bool {
	t.Helper()
	out, err := h.Run("ip", "route", "show", "198.51.100.0/24")
	if err != nil {
		t.Fatalf("ip route on %s: %v: %s", h.Name, err, out)
	}
	return strings.Contains(string(out), "via 192.0.2.254")
}

// waitRoute waits until the virtual route is on want only of a and b.
func waitRoute(t *testing.T, p *pair, want *netns.Host) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for hasRoute(t, p.a) != (want == p.a) || hasRoute(t, p.b) != (want == p.b) {
		if time.Now().After(deadline) {
			t.Fatalf("virtual route on a %v, on b %v; want on %s only", hasRoute(t, p.a), hasRoute(t, p.b), want.Name)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// serverHealth reads the real servers' health from halb status --json.
func serverHealth(t *testing.T, h *netns.Host, sock string) map[string]api.Server {
	t.Helper()
	out, err := h.Run(labtest.HalbBinary(t), "status", "--socket", sock, "--json")
	if err != nil {
		t.Fatalf("halb status on %s: %v: %s", h.Name, err, out)
	}
	var st api.Status
	if err := json.Unmarshal(out, &st); err != nil {
		t.Fatalf("status JSON: %v: %s", err, out)
	}
	m := map[string]api.Server{}
	for _, sv := range st.Services {
		for _, s := range sv.Servers {
			m[s.Address] = s
		}
	}
	return m
}

// waitHealth waits until halb on h sees the real servers healthy as want
// says, and returns what it sees.
func waitHealth(t *testing.T, h *netns.Host, sock string, want map[string]bool) map[string]api.Server {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := serverHealth(t, h, sock)
		ok := len(got) == len(want)
		for addr, healthy := range want {
			if s, found := got[addr]; !found || s.Healthy != healthy {
				ok = false
			}
		}
		if ok {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("halb on %s: servers %+v; want healthy %v", h.Name, got, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestLabMigrateFullPair is the migration of a keepalived pair using AH,
// use_vmac, virtual_routes and a virtual server with one checker per real
// server to halb, one node at a time, each node's halb.yaml made by halb
// convert from its keepalived.conf and checked by halb validate, with no
// hand edits. A client pings the VIP ten times a second throughout: first
// the backup is replaced (keepalived stays master and halb counts its
// adverts), then the master (its SIGTERM hands the VIP to halb on b, and
// halb on a takes it back). The pings lost stay within one failover's
// bound; the VIP is never on both nodes for more than a transition; the
// adverts leave from the virtual MAC under keepalived and halb, and no
// IGMP report does; the virtual route is on the master only; halb takes
// out only the real server whose checked port stops answering; and a
// stopped halb leaves no virtual MAC interface or rule behind.
//
// keepalived runs with --vrrp on the whole file: this kernel has no IPVS,
// and keepalived 2.2.7's checker process then exits with a fatal error
// ("IPVS: Can't initialize ipvs"), which stops keepalived altogether. So
// keepalived's checkers are not run here (the IPVS VM tests compare its
// virtual servers with halb's); halb runs the converted checks with the
// data plane off, and its status shows their results.
func TestLabMigrateFullPair(t *testing.T) {
	labtest.RequireRoot(t)
	labtest.RequireTool(t, "keepalived", "tcpdump", "ping", "nft")
	const vip = "192.0.2.100"
	iv := time.Second
	p := newPair(t)
	c, err := p.lab.AddHost("c")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.lab.Connect(c, p.sw, "eth0", "192.0.2.3/24"); err != nil {
		t.Fatal(err)
	}
	r, err := p.lab.AddHost("r")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.lab.Connect(r, p.sw, "eth0", "192.0.2.21/24", "192.0.2.22/24", "192.0.2.23/24"); err != nil {
		t.Fatal(err)
	}
	// The real servers' checked ports: two TCP ports and an HTTP URL.
	listen := func(addr string) net.Listener {
		l, err := r.Listen("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		return l
	}
	accept := func(l net.Listener) {
		go func() {
			for {
				conn, err := l.Accept()
				if err != nil {
					return
				}
				conn.Close()
			}
		}()
	}
	r1 := listen("192.0.2.21:8081")
	accept(r1)
	accept(listen("192.0.2.22:8082"))
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {})
	srv := &http.Server{Handler: mux}
	go srv.Serve(listen("192.0.2.23:80"))
	t.Cleanup(func() { srv.Close() })

	k1 := startKeepalived(t, p.a, fullPairConf(1, 150))
	k2 := startKeepalived(t, p.b, fullPairConf(2, 100))
	waitVIP(t, vip, generous(masterDown(iv, 100)), p.a, p.a, p.b)
	waitRoute(t, p, p.a) // keepalived adds virtual_routes with the VIPs, on the master only
	advertsFrom(t, c, "192.0.2.1", 2)
	pg := startPinger(t, c, vip)
	vs := startVIPSampler(vip, p.a, p.b)
	igmp := startBridgeCapture(t, p.sw, "igmp")
	start := time.Now()

	// run converts a keepalived node's file, validates the result and runs
	// it as it is.
	run := func(k *node) (*node, string) {
		t.Helper()
		yaml := convertKeepalived(t, k)
		conf := t.TempDir() + "/halb.yaml"
		if err := os.WriteFile(conf, []byte(yaml), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := k.host.Run(labtest.HalbBinary(t), "validate", conf); err != nil {
			t.Fatalf("halb validate of the converted %s: %v:\n%s\n%s", k.confPath(), err, out, yaml)
		}
		return startHalbRun(t, k.host, fmt.Sprintf("api: {metrics: %q}\n", ahMetrics)+yaml)
	}

	// The backup first: keepalived on a stays master throughout.
	k2.term()
	hb, sockB := run(k2)
	holdVIP(t, vip, 2*masterDown(iv, 100), p.a, p.a, p.b)
	if cnt := scrape(t, p.b, ahMetrics); cnt["halb_vrrp_adverts_received_total"] < 3 || cnt["halb_vrrp_adverts_rejected_total/icv"] != 0 {
		t.Errorf("halb on b as keepalived's backup: %v", cnt)
	}
	waitRoute(t, p, p.a)
	all := map[string]bool{"192.0.2.21": true, "192.0.2.22": true, "192.0.2.23": true}
	waitHealth(t, p.b, sockB, all)

	// Then the master: its priority 0 hands the VIP (and route) to halb on
	// b, and halb on a takes them back.
	k1.term()
	took := waitVIP(t, vip, generous(iv), p.b, p.a, p.b)
	t.Logf("keepalived master stopped: %s moved to halb on b in %s", vip, took)
	waitRoute(t, p, p.b)
	_, sockA := run(k1)
	took = waitVIP(t, vip, generous(masterDown(iv, 150)), p.a, p.a, p.b)
	t.Logf("halb on a took %s back in %s", vip, took)
	waitRoute(t, p, p.a)
	holdVIP(t, vip, 2*iv, p.a, p.a, p.b)
	advertsFrom(t, c, "192.0.2.1", 2)
	if d := keepalivedDropped(k1); len(d) > 0 {
		t.Errorf("keepalived on a dropped halb's adverts:\n%s", strings.Join(d, "\n"))
	}

	sent, lost := pg.stop(t)
	vs.stop()
	// One failover on SIGTERM: the backup waits the skew time.
	skew := time.Duration(256-100) * iv / 256
	bound := int(generous(skew) / (100 * time.Millisecond))
	t.Logf("migration over %s: %d pings, %d lost (bound %d)", time.Since(start).Round(time.Second), sent, lost, bound)
	if sent < 100 || lost > bound {
		t.Errorf("%d pings sent, %d lost; want at least 100 sent and at most %d lost", sent, lost, bound)
	}
	vs.mu.Lock()
	t.Logf("VIP samples: %d, on neither node %d (longest %s), on both %d (longest %s)", vs.samples, vs.none, vs.maxNone, vs.two, vs.maxTwo)
	if vs.err != nil {
		t.Error(vs.err)
	}
	// On both nodes only while the backup takes the new master's first
	// advert: within two samples.
	if vs.maxNone > generous(skew) || vs.maxTwo > 100*time.Millisecond {
		t.Errorf("VIP on neither node for up to %s (bound %s), on both for up to %s (bound 100ms)", vs.maxNone, generous(skew), vs.maxTwo)
	}
	vs.mu.Unlock()
	// A backup's IGMP report from the virtual MAC would have the switch
	// send the VIP's traffic to it until the master's next advert: halb,
	// like keepalived, sends them out of the parent interface.
	if reports := igmp.stop(); strings.Contains(reports, "00:00:5e:00:01:0a >") || !strings.Contains(reports, "gaddr 224.0.0.18") {
		t.Errorf("IGMP on the link: want reports for 224.0.0.18, none from the virtual MAC:\n%s", reports)
	}

	// Per-server checks: r1's checked port stops answering, and halb takes
	// out that server only, naming its check.
	waitHealth(t, p.a, sockA, all)
	r1.Close()
	down := map[string]bool{"192.0.2.21": false, "192.0.2.22": true, "192.0.2.23": true}
	for _, h := range []struct {
		host *netns.Host
		sock string
	}{{p.a, sockA}, {p.b, sockB}} {
		got := waitHealth(t, h.host, h.sock, down)
		if reason := got["192.0.2.21"].Reason; !strings.Contains(reason, "192.0.2.21:8081") {
			t.Errorf("halb on %s: 192.0.2.21 down for %q; want its check's reason", h.host.Name, reason)
		}
		t.Logf("halb on %s: 192.0.2.21 down: %s", h.host.Name, got["192.0.2.21"].Reason)
	}

	// Stopped, halb leaves neither the virtual MAC interface nor its
	// reports' table behind.
	hb.term()
	if out, err := p.b.Run("ip", "link", "show", "vrrp.10"); err == nil {
		t.Errorf("vrrp.10 left on b:\n%s", out)
	}
	if out, err := p.b.Run("nft", "list", "table", "ip", "halb_vmac"); err == nil {
		t.Errorf("halb's virtual MAC table left on b:\n%s", out)
	}
}
