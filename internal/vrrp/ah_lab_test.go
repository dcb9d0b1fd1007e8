package vrrp

import (
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"halb/internal/lab/labtest"
	"halb/internal/lab/netns"
)

// ahMode is VRRPv2 under IPsec AH, keepalived's auth_type AH.
var ahMode = mode{name: "v2-ipv4-ah", version: 2, interval: time.Second, auth: "s3cret", ah: true}

const ahMetrics = "127.0.0.1:9464"

// startAHHalb runs halb run with metrics on host number n of the pair.
func (p *pair) startAHHalb(t *testing.T, m mode, n, prio int) *node {
	t.Helper()
	host := p.a
	if n == 2 {
		host = p.b
	}
	node, _ := startHalbRun(t, host, fmt.Sprintf("api: {metrics: %q}\n", ahMetrics)+m.halbYAML(n, prio, true, ""))
	return node
}

// keepalivedAHErrors are keepalived's log lines for adverts it drops
// for their authentication.
var keepalivedAHErrors = []string{"IPSEC", "AH header", "auth, expecting", "Invalid auth type"}

func keepalivedDropped(k *node) []string {
	var out []string
	for _, line := range strings.Split(k.logs.String(), "\n") {
		for _, e := range keepalivedAHErrors {
			if strings.Contains(line, e) {
				out = append(out, line)
				break
			}
		}
	}
	return out
}

// TestLabAHKeepalived pairs halb run with keepalived, both with auth_type
// AH: each stays backup to the other at a higher priority for two
// master-down intervals (it would take over if it dropped the adverts),
// takes over when the other stops, and a restarted halb (sequence
// numbers from 1 again) takes the VIP back from keepalived, over
// multicast and unicast. With another password, both are masters and halb counts keepalived's adverts as
// rejected for their ICV.
func TestLabAHKeepalived(t *testing.T) {
	labtest.RequireRoot(t)
	m := ahMode
	vip := m.vip()
	crash := generous(masterDown(m.interval, 100))
	const (
		received = "halb_vrrp_adverts_received_total"
		rejected = "halb_vrrp_adverts_rejected_total"
	)

	unicast := m
	unicast.name, unicast.unicast = "v2-ipv4-ah-unicast", true
	for _, m := range []mode{m, unicast} {
		t.Run(m.name, func(t *testing.T) { ahWithKeepalived(t, m) })
	}

	t.Run("wrong-password", func(t *testing.T) {
		p := newPair(t)
		p.startAHHalb(t, m, 1, 150)
		other := m
		other.auth = "0ther"
		k := startKeepalived(t, p.b, other.keepalivedConf(2, 100, true))
		deadline := time.Now().Add(crash)
		for !hasAddr(t, p.a, vip) || !hasAddr(t, p.b, vip) {
			if time.Now().After(deadline) {
				t.Fatalf("after %s, %s on a %v, on b %v; want both masters", crash, vip, hasAddr(t, p.a, vip), hasAddr(t, p.b, vip))
			}
			time.Sleep(50 * time.Millisecond)
		}
		// keepalived, as a master hearing adverts it drops, sends its own
		// only every few seconds.
		holdBoth := time.Now().Add(2 * m.interval)
		for time.Now().Before(holdBoth) {
			if !hasAddr(t, p.a, vip) || !hasAddr(t, p.b, vip) {
				t.Fatalf("%s left a master: on a %v, on b %v", vip, hasAddr(t, p.a, vip), hasAddr(t, p.b, vip))
			}
			time.Sleep(50 * time.Millisecond)
		}
		c := scrape(t, p.a, ahMetrics)
		if c[rejected+"/icv"] < 1 || c[received] != 0 {
			t.Errorf("halb's counters with keepalived on another password: %v", c)
		}
		t.Logf("halb with another password: %v", c)
		if !strings.Contains(k.logs.String(), "invalid IPSEC HMAC-MD5") {
			t.Errorf("keepalived did not drop halb's adverts for their ICV:\n%s", k.logs.String())
		}
	})
}

// ahWithKeepalived runs TestLabAHKeepalived's election, failover and
// restart in mode m.
func ahWithKeepalived(t *testing.T, m mode) {
	vip := m.vip()
	crash := generous(masterDown(m.interval, 100))
	const (
		received = "halb_vrrp_adverts_received_total"
		rejected = "halb_vrrp_adverts_rejected_total"
	)
	t.Run("keepalived-master", func(t *testing.T) {
		p := newPair(t)
		k := startKeepalived(t, p.a, m.keepalivedConf(1, 150, true))
		p.startAHHalb(t, m, 2, 100)
		waitVIP(t, vip, crash, p.a, p.a, p.b)
		holdVIP(t, vip, 2*masterDown(m.interval, 100), p.a, p.a, p.b)
		c := scrape(t, p.b, ahMetrics)
		if c[received] < 3 || c[rejected+"/icv"] != 0 || c[rejected+"/replay"] != 0 || c[rejected+"/auth"] != 0 {
			t.Errorf("halb's counters as keepalived's backup: %v", c)
		}
		t.Logf("halb as backup: %v", c)
		k.kill()
		took := waitVIP(t, vip, crash, p.b, p.b)
		t.Logf("kill -9 of keepalived: %s moved to halb in %s", vip, took)
	})

	t.Run("halb-master", func(t *testing.T) {
		p := newPair(t)
		h := p.startAHHalb(t, m, 1, 150)
		k := startKeepalived(t, p.b, m.keepalivedConf(2, 100, true))
		waitVIP(t, vip, crash, p.a, p.a, p.b)
		holdVIP(t, vip, 2*masterDown(m.interval, 100), p.a, p.a, p.b)
		if d := keepalivedDropped(k); len(d) > 0 {
			t.Errorf("keepalived dropped halb's adverts:\n%s", strings.Join(d, "\n"))
		}
		h.term()
		took := waitVIP(t, vip, generous(m.interval), p.b, p.a, p.b)
		t.Logf("SIGTERM of halb: %s moved to keepalived in %s", vip, took)

		// Restarted, halb numbers from what it hears from keepalived, so
		// keepalived takes its adverts and yields.
		p.startAHHalb(t, m, 1, 150)
		took = waitVIP(t, vip, generous(masterDown(m.interval, 150)), p.a, p.a, p.b)
		t.Logf("restarted halb took %s back in %s", vip, took)
		holdVIP(t, vip, 2*m.interval, p.a, p.a, p.b)
		if d := keepalivedDropped(k); len(d) > 0 {
			t.Errorf("keepalived dropped the restarted halb's adverts:\n%s", strings.Join(d, "\n"))
		}
	})
}

// pinger pings a VIP from a host ten times a second until stopped.
type pinger struct {
	cancel context.CancelFunc
	done   chan struct{}
	out    strings.Builder
}

func startPinger(t *testing.T, host *netns.Host, vip string) *pinger {
	t.Helper()
	labtest.RequireTool(t, "ping")
	ctx, cancel := context.WithCancel(context.Background())
	pg := &pinger{cancel: cancel, done: make(chan struct{})}
	cmd := host.Command(ctx, "ping", "-n", "-q", "-i", "0.1", "-W", "1", vip)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGINT) }
	cmd.Stdout, cmd.Stderr = &pg.out, &pg.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { cmd.Wait(); close(pg.done) }()
	t.Cleanup(func() { cancel(); <-pg.done })
	return pg
}

var pingSummary = regexp.MustCompile(`(\d+) packets transmitted, (\d+) received`)

// stop ends the pings and returns how many were sent and lost.
func (pg *pinger) stop(t *testing.T) (sent, lost int) {
	t.Helper()
	time.Sleep(1500 * time.Millisecond) // the last replies' time (-W 1)
	pg.cancel()
	<-pg.done
	sm := pingSummary.FindStringSubmatch(pg.out.String())
	if sm == nil {
		t.Fatalf("no ping summary in:\n%s", pg.out.String())
	}
	sent, _ = strconv.Atoi(sm[1])
	got, _ := strconv.Atoi(sm[2])
	return sent, sent - got
}

// convertKeepalived runs halb convert on a keepalived node's
// configuration.
func convertKeepalived(t *testing.T, k *node) string {
	t.Helper()
	cmd := exec.Command(labtest.HalbBinary(t), "convert", k.confPath())
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("halb convert: %v\n%s", err, stderr.String())
	}
	return string(out)
}

// TestLabAHMigration replaces a keepalived pair using AH by halb one node
// at a time, each halb converted from its keepalived.conf by halb
// convert, while a client pings the VIP ten times a second: first the
// backup (keepalived stays master), then the master (its SIGTERM hands
// the VIP to halb, and the new halb takes it back by preemption). The
// pings lost stay within one failover's bound.
func TestLabAHMigration(t *testing.T) {
	labtest.RequireRoot(t)
	m := ahMode
	vip := m.vip()
	p := newPair(t)
	c, err := p.lab.AddHost("c")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.lab.Connect(c, p.sw, "eth0", "192.0.2.3/24"); err != nil {
		t.Fatal(err)
	}
	k1 := startKeepalived(t, p.a, m.keepalivedConf(1, 150, true))
	k2 := startKeepalived(t, p.b, m.keepalivedConf(2, 100, true))
	waitVIP(t, vip, generous(masterDown(m.interval, 100)), p.a, p.a, p.b)
	pg := startPinger(t, c, vip)
	start := time.Now()

	// The backup first: keepalived on a stays master throughout.
	k2.term()
	hb := convertKeepalived(t, k2)
	startHalbRun(t, p.b, fmt.Sprintf("api: {metrics: %q}\n", ahMetrics)+hb)
	holdVIP(t, vip, 2*masterDown(m.interval, 100), p.a, p.a, p.b)
	if cnt := scrape(t, p.b, ahMetrics); cnt["halb_vrrp_adverts_received_total"] < 3 {
		t.Errorf("halb on b heard too few of keepalived's adverts: %v", cnt)
	}

	// Then the master: its priority 0 hands the VIP to halb on b, and
	// halb on a takes it back.
	k1.term()
	took := waitVIP(t, vip, generous(m.interval), p.b, p.a, p.b)
	t.Logf("keepalived master stopped: %s moved to halb on b in %s", vip, took)
	ha := convertKeepalived(t, k1)
	startHalbRun(t, p.a, fmt.Sprintf("api: {metrics: %q}\n", ahMetrics)+ha)
	took = waitVIP(t, vip, generous(masterDown(m.interval, 150)), p.a, p.a, p.b)
	t.Logf("halb on a took %s back in %s", vip, took)
	holdVIP(t, vip, 3*m.interval, p.a, p.a, p.b)
	if d := keepalivedDropped(k1); len(d) > 0 {
		t.Errorf("keepalived on a dropped halb's adverts:\n%s", strings.Join(d, "\n"))
	}

	sent, lost := pg.stop(t)
	// One failover on SIGTERM: the backup waits the skew time.
	skew := time.Duration(256-100) * m.interval / 256
	bound := int(generous(skew) / (100 * time.Millisecond))
	t.Logf("migration over %s: %d pings, %d lost (bound %d)", time.Since(start).Round(time.Second), sent, lost, bound)
	if sent < 100 || lost > bound {
		t.Errorf("%d pings sent, %d lost; want at least 100 sent and at most %d lost", sent, lost, bound)
	}
}
