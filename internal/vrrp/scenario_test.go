package vrrp

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"halb/internal/lab/labtest"
)

// TestLabLinkDown: the master's interface goes down → it goes FAULT and
// drops its VIP, the backup (halb or keepalived) takes over; link up → it
// returns to BACKUP and preempts.
func TestLabLinkDown(t *testing.T) {
	labtest.RequireRoot(t)
	m := modes[0]
	for _, peer := range []string{"halb", "keepalived"} {
		t.Run(peer, func(t *testing.T) {
			p := newPair(t)
			a := p.start(t, "halb", m, 1, 150, true)
			p.start(t, peer, m, 2, 100, true)
			waitVIP(t, m.vip(), generous(masterDown(m.interval, 100)), p.a, p.a, p.b)
			if err := p.a.IP("link", "set", "eth0", "down"); err != nil {
				t.Fatal(err)
			}
			waitVIP(t, m.vip(), generous(masterDown(m.interval, 100)), p.b, p.a, p.b)
			waitEvent(t, a, "vi", "FAULT", time.Second)
			if err := p.a.IP("link", "set", "eth0", "up"); err != nil {
				t.Fatal(err)
			}
			waitVIP(t, m.vip(), generous(masterDown(m.interval, 150)), p.a, p.a, p.b)
		})
	}
}

// waitEvent waits for a halb node to report an instance in state.
func waitEvent(t *testing.T, n *node, instance, state string, within time.Duration) {
	t.Helper()
	deadline := time.After(within)
	for {
		select {
		case ev := <-n.events:
			if ev.Instance == instance && ev.New == state {
				if ev.Reason == "" {
					t.Fatalf("event %+v has no reason", ev)
				}
				return
			}
		case <-deadline:
			t.Fatalf("%s: no %s event for %s within %s", n.host.Name, state, instance, within)
		}
	}
}

// TestLabSplitBrain: with the two switch ports isolated from each other
// (links stay up), both nodes become master; healed, one master remains.
func TestLabSplitBrain(t *testing.T) {
	labtest.RequireRoot(t)
	labtest.RequireTool(t, "bridge")
	m := modes[0]
	for _, peer := range []string{"halb", "keepalived"} {
		t.Run(peer, func(t *testing.T) {
			p := newPair(t)
			p.start(t, "halb", m, 1, 150, true)
			p.start(t, peer, m, 2, 100, true)
			waitVIP(t, m.vip(), generous(masterDown(m.interval, 100)), p.a, p.a, p.b)
			for _, port := range []string{p.aPort, p.bPort} {
				if out, err := p.sw.Run("bridge", "link", "set", "dev", port, "isolated", "on"); err != nil {
					t.Fatalf("%v: %s", err, out)
				}
			}
			bound := generous(masterDown(m.interval, 100))
			deadline := time.Now().Add(bound)
			for {
				onA, onB := hasAddr(t, p.a, m.vip()), hasAddr(t, p.b, m.vip())
				if onA && onB {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("no split brain within %s of isolating the ports: VIP on a %v, on b %v", bound, onA, onB)
				}
				time.Sleep(20 * time.Millisecond)
			}
			for _, port := range []string{p.aPort, p.bPort} {
				if out, err := p.sw.Run("bridge", "link", "set", "dev", port, "isolated", "off"); err != nil {
					t.Fatalf("%v: %s", err, out)
				}
			}
			waitVIP(t, m.vip(), generous(masterDown(m.interval, 100)), p.a, p.a, p.b)
			holdVIP(t, m.vip(), 5*m.interval, p.a, p.a, p.b)
		})
	}
}

// TestLabActiveActive: two instances, each node master of one; when a
// node dies the other holds both.
func TestLabActiveActive(t *testing.T) {
	p := newPair(t)
	conf := func(n, p1, p2 int) string {
		return halbConf("n", 10, p1, `    - name: vi11
      interface: eth0
      vrid: 11
      priority: `+strconv.Itoa(p2)+`
      advert_interval: 100ms
      garp: {count: 1, second_burst: 0s}
      vips: [192.0.2.101/24]
`, "192.0.2.100/24")
	}
	iv := 100 * time.Millisecond
	a := startHelper(t, p.a, conf(1, 150, 100))
	startHelper(t, p.b, conf(2, 100, 150))
	waitVIP(t, "192.0.2.100", generous(masterDown(iv, 100)), p.a, p.a, p.b)
	waitVIP(t, "192.0.2.101", generous(masterDown(iv, 100)), p.b, p.a, p.b)
	a.term()
	waitVIP(t, "192.0.2.100", generous(masterDown(iv, 100)), p.b, p.a, p.b)
	waitVIP(t, "192.0.2.101", time.Second, p.b, p.a, p.b)
}

// TestLabSyncGroupTrackingNotify: on a, instance vi10 tracks an interface
// (weight 0) and is in a sync group with vi11. Tracked interface down →
// vi10 FAULT → vi11 FAULT too → b holds both VIPs. A tracking script with
// a negative weight lowers a's vi10 below b's, so b preempts it. The
// notify executable gets instance, old state, new state and reason.
func TestLabSyncGroupTrackingNotify(t *testing.T) {
	p := newPair(t)
	for _, args := range [][]string{{"link", "add", "trk0", "type", "veth", "peer", "name", "trk1"},
		{"link", "set", "trk1", "up"}, {"link", "set", "trk0", "up"}} {
		if err := p.a.IP(args...); err != nil {
			t.Fatal(err)
		}
	}
	dir := scriptDir(t)
	flag := filepath.Join(dir, "healthy")
	notifyLog := filepath.Join(dir, "notify.log")
	notify := filepath.Join(dir, "notify.sh")
	if err := os.WriteFile(notify, []byte("#!/bin/sh\necho \"$1|$2|$3|$4\" >> "+notifyLog+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(flag, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	aConf := `node: a
script_user: nobody
vrrp:
  scripts:
    - {name: chk, command: [test, -e, ` + flag + `], interval: 100ms, timeout: 100ms, rise: 2, fall: 2, weight: -100}
  sync_groups:
    - {name: web, instances: [vi10, vi11]}
  instances:
    - name: vi10
      interface: eth0
      vrid: 10
      priority: 150
      advert_interval: 100ms
      garp: {count: 1, second_burst: 0s}
      vips: [192.0.2.100/24]
      track_interfaces: [{name: trk0}]
      track_scripts: [{name: chk}]
      notify: ` + notify + `
    - name: vi11
      interface: eth0
      vrid: 11
      priority: 150
      advert_interval: 100ms
      garp: {count: 1, second_burst: 0s}
      vips: [192.0.2.101/24]
`
	bConf := halbConf("b", 10, 100, `    - name: vi11
      interface: eth0
      vrid: 11
      priority: 100
      advert_interval: 100ms
      garp: {count: 1, second_burst: 0s}
      vips: [192.0.2.101/24]
`, "192.0.2.100/24")
	iv := 100 * time.Millisecond
	a := startHelper(t, p.a, aConf)
	startHelper(t, p.b, bConf)
	bound := generous(masterDown(iv, 100))
	waitVIP(t, "192.0.2.100", bound, p.a, p.a, p.b)
	waitVIP(t, "192.0.2.101", bound, p.a, p.a, p.b)

	// Tracked interface down: the whole group fails over.
	if err := p.a.IP("link", "set", "trk0", "down"); err != nil {
		t.Fatal(err)
	}
	waitVIP(t, "192.0.2.100", bound, p.b, p.a, p.b)
	waitVIP(t, "192.0.2.101", bound, p.b, p.a, p.b)
	if err := p.a.IP("link", "set", "trk0", "up"); err != nil {
		t.Fatal(err)
	}
	waitVIP(t, "192.0.2.100", bound, p.a, p.a, p.b)
	waitVIP(t, "192.0.2.101", bound, p.a, p.a, p.b)

	// The script fails twice (fall 2): vi10's priority 50 < 100 is the
	// group's, b preempts both members, and they stay there.
	os.Remove(flag)
	waitVIP(t, "192.0.2.100", bound+time.Second, p.b, p.a, p.b)
	waitVIP(t, "192.0.2.101", bound+time.Second, p.b, p.a, p.b)
	holdVIP(t, "192.0.2.100", 10*iv, p.b, p.a, p.b)
	holdVIP(t, "192.0.2.101", 0, p.b, p.a, p.b)
	os.WriteFile(flag, nil, 0o644)
	waitVIP(t, "192.0.2.100", bound+time.Second, p.a, p.a, p.b)
	waitVIP(t, "192.0.2.101", bound+time.Second, p.a, p.a, p.b)

	a.term()
	data, err := os.ReadFile(notifyLog)
	if err != nil {
		t.Fatal(err)
	}
	log := string(data)
	for _, want := range []string{
		"vi10|INIT|BACKUP|started",
		"vi10|MASTER|FAULT|tracked interface trk0 down",
		"vi10|BACKUP|MASTER|",
		"vi10|MASTER|BACKUP|",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("notify log lacks %q:\n%s", want, log)
		}
	}
}

// TestLabSyncGroupFollow: both nodes run a sync group of vi10 and vi11
// (b is halb or keepalived). On a, a tracking script with weight -100 on
// vi10 lowers the group's priority to 50, below b's 100: b takes both
// members over and keeps them (no flapping although a's vi11 alone would
// still outrank b); the script recovered, a takes both back.
func TestLabSyncGroupFollow(t *testing.T) {
	labtest.RequireRoot(t)
	for _, peer := range []string{"halb", "keepalived"} {
		t.Run(peer, func(t *testing.T) {
			p := newPair(t)
			flag := filepath.Join(scriptDir(t), "healthy")
			if err := os.WriteFile(flag, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			member := func(vrid, prio int, extra string) string {
				return fmt.Sprintf(`    - name: vi%d
      interface: eth0
      vrid: %d
      priority: %d
      advert_interval: 100ms
      garp: {count: 1, second_burst: 0s}
      vips: [192.0.2.%d/24]
%s`, vrid, vrid, prio, vrid+90, extra)
			}
			startHelper(t, p.a, `node: a
script_user: nobody
vrrp:
  scripts:
    - {name: chk, command: [test, -e, `+flag+`], interval: 100ms, timeout: 100ms, rise: 2, fall: 2, weight: -100}
  sync_groups:
    - {name: web, instances: [vi10, vi11]}
  instances:
`+member(10, 150, "      track_scripts: [{name: chk}]\n")+member(11, 150, ""))
			if peer == "keepalived" {
				startKeepalived(t, p.b, keepalivedGroupConf)
			} else {
				startHelper(t, p.b, "node: b\nvrrp:\n  sync_groups:\n    - {name: web, instances: [vi10, vi11]}\n  instances:\n"+
					member(10, 100, "")+member(11, 100, ""))
			}
			iv := 100 * time.Millisecond
			bound := generous(masterDown(iv, 100))
			vips := []string{"192.0.2.100", "192.0.2.101"}
			for _, v := range vips {
				waitVIP(t, v, bound, p.a, p.a, p.b)
			}
			os.Remove(flag)
			for _, v := range vips {
				waitVIP(t, v, bound+time.Second, p.b, p.a, p.b) // + fall 2 × 100ms, generously
			}
			for _, v := range vips {
				holdVIP(t, v, 10*iv, p.b, p.a, p.b)
			}
			if err := os.WriteFile(flag, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			for _, v := range vips {
				waitVIP(t, v, bound+time.Second, p.a, p.a, p.b)
			}
			for _, v := range vips {
				holdVIP(t, v, 10*iv, p.a, p.a, p.b)
			}
		})
	}
}

// keepalivedGroupConf is b's side of TestLabSyncGroupFollow for keepalived.
const keepalivedGroupConf = `global_defs {
  router_id b
  vrrp_garp_master_repeat 1
  vrrp_garp_master_refresh 0
}
vrrp_sync_group web {
  group {
    vi10
    vi11
  }
}
vrrp_instance vi10 {
  state BACKUP
  interface eth0
  virtual_router_id 10
  priority 100
  advert_int 0.1
  version 3
  virtual_ipaddress {
    192.0.2.100/24
  }
}
vrrp_instance vi11 {
  state BACKUP
  interface eth0
  virtual_router_id 11
  priority 100
  advert_int 0.1
  version 3
  virtual_ipaddress {
    192.0.2.101/24
  }
}
`

// TestLabReload: SIGHUP with the same configuration leaves the master and
// its VIP alone (no event, no flap); a changed priority restarts only
// that instance.
func TestLabReload(t *testing.T) {
	p := newPair(t)
	iv := 100 * time.Millisecond
	a := startHelper(t, p.a, halbConf("a", 10, 150, `    - name: vi11
      interface: eth0
      vrid: 11
      priority: 150
      advert_interval: 100ms
      vips: [192.0.2.101/24]
`, "192.0.2.100/24"))
	startHelper(t, p.b, halbConf("b", 10, 100, "", "192.0.2.100/24"))
	waitVIP(t, "192.0.2.100", generous(masterDown(iv, 100)), p.a, p.a, p.b)
	waitEvent(t, a, "vi11", "MASTER", generous(masterDown(iv, 150)))
	for len(a.events) > 0 {
		<-a.events
	}
	held := func() {
		holdVIP(t, "192.0.2.100", 0, p.a, p.a, p.b)
		holdVIP(t, "192.0.2.101", 0, p.a, p.a, p.b)
	}
	a.reload(held)
	holdVIP(t, "192.0.2.100", 10*iv, p.a, p.a, p.b)
	holdVIP(t, "192.0.2.101", 0, p.a, p.a, p.b)
	select {
	case ev := <-a.events:
		t.Fatalf("an unchanged reload produced an event: %+v", ev)
	default:
	}
	conf, _ := os.ReadFile(a.confPath())
	changed := strings.Replace(string(conf), "priority: 150\n      advert_interval: 100ms\n      vips: [192.0.2.101/24]", "priority: 160\n      advert_interval: 100ms\n      vips: [192.0.2.101/24]", 1)
	if changed == string(conf) {
		t.Fatal("test config not as expected")
	}
	os.WriteFile(a.confPath(), []byte(changed), 0o644)
	a.reload(func() { holdVIP(t, "192.0.2.100", 0, p.a, p.a, p.b) })
	waitEvent(t, a, "vi11", "INIT", 5*time.Second)
	waitEvent(t, a, "vi11", "MASTER", generous(masterDown(iv, 160)))
	holdVIP(t, "192.0.2.100", 3*iv, p.a, p.a, p.b)
}

// TestLabUnicastUnknownSource: with unicast peers configured, adverts
// from any other source are dropped: b, whose only peer is an absent
// address, ignores a and makes itself master too.
func TestLabUnicastUnknownSource(t *testing.T) {
	p := newPair(t)
	iv := 100 * time.Millisecond
	startHelper(t, p.a, halbConf("a", 10, 150, "", "192.0.2.100/24")+
		"      unicast_source: 192.0.2.1\n      unicast_peers: [192.0.2.2]\n")
	startHelper(t, p.b, halbConf("b", 10, 100, "", "192.0.2.100/24")+
		"      unicast_source: 192.0.2.2\n      unicast_peers: [192.0.2.9]\n")
	waitVIP(t, "192.0.2.100", generous(masterDown(iv, 100)), p.a, p.a)
	waitVIP(t, "192.0.2.100", generous(masterDown(iv, 100)), p.b, p.b)
	holdVIP(t, "192.0.2.100", 5*iv, p.b, p.b)
}

// TestLabOwnerGARPBursts: an address owner (priority 255) is master at
// once and announces its VIP with a burst of garp.count gratuitous ARPs,
// then a second burst after garp.second_burst.
func TestLabOwnerGARPBursts(t *testing.T) {
	labtest.RequireTool(t, "tcpdump")
	p := newPair(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	capture := p.b.Command(ctx, "tcpdump", "-i", "eth0", "-nn", "-l", "--time-stamp-precision=micro", "-tt",
		"arp and arp[6:2] == 1 and arp[14:4] == arp[24:4]")
	var out, errOut syncBuffer
	capture.Stdout, capture.Stderr = &out, &errOut
	if err := capture.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); capture.Wait() }()
	for deadline := time.Now().Add(startupAllowance); !strings.Contains(errOut.String(), "listening on"); {
		if time.Now().After(deadline) {
			t.Fatalf("tcpdump not listening within %s: %s", startupAllowance, errOut.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	const count, second = 3, time.Second
	conf := strings.Replace(halbConf("a", 10, 255, "", "192.0.2.100/24"),
		"garp: {count: 1, second_burst: 0s}", "garp: {count: 3, second_burst: 1s}", 1)
	startHelper(t, p.a, conf)
	waitVIP(t, "192.0.2.100", generous(0), p.a, p.a, p.b)
	garps := func() []float64 {
		var times []float64
		for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
			if f := strings.Fields(line); len(f) > 0 && strings.Contains(line, "who-has 192.0.2.100 tell 192.0.2.100") {
				ts, err := strconv.ParseFloat(f[0], 64)
				if err != nil {
					t.Fatalf("bad line %q", line)
				}
				times = append(times, ts)
			}
		}
		return times
	}
	bound := generous(second)
	for deadline := time.Now().Add(bound); len(garps()) < 2*count; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d gratuitous ARPs within %s of mastership, want %d + %d:\n%s", len(garps()), bound, count, count, out.String())
		}
	}
	time.Sleep(second / 2) // nothing more comes: no refresh is configured
	times := garps()
	if len(times) != 2*count {
		t.Fatalf("%d gratuitous ARPs, want %d + %d:\n%s", len(times), count, count, out.String())
	}
	gap := time.Duration((times[count] - times[count-1]) * float64(time.Second))
	if gap < second/2 || gap > 2*second+second/2 {
		t.Fatalf("second burst %s after the first, want %s (between 0.5× and 2× + 0.5 s)", gap, second)
	}
	t.Logf("second burst %s after the first (configured %s)", gap, second)
}

// TestLabChecksumForms: a sends VRRPv3 IPv4 adverts with the message-only
// checksum (RFC 9568 routers), b with keepalived's pseudo-header form;
// each accepts the other's, so there is one master.
func TestLabChecksumForms(t *testing.T) {
	p := newPair(t)
	iv := 100 * time.Millisecond
	startHelper(t, p.a, strings.Replace(halbConf("a", 10, 150, "", "192.0.2.100/24"),
		"      vips:", "      ipv4_checksum: message\n      vips:", 1))
	startHelper(t, p.b, halbConf("b", 10, 100, "", "192.0.2.100/24"))
	waitVIP(t, "192.0.2.100", generous(masterDown(iv, 100)), p.a, p.a, p.b)
	holdVIP(t, "192.0.2.100", 10*iv, p.a, p.a, p.b)
}
