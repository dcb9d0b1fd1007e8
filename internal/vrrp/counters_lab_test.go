package vrrp

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/ipv4"

	"halb/internal/lab/labtest"
	"halb/internal/lab/netns"
	"halb/internal/vrrp/packet"
)

// scrape reads the halb_vrrp_adverts_* series of instance vi from a
// node's /metrics, keyed by series name and (for rejected) reason.
func scrape(t *testing.T, host *netns.Host, addr string) map[string]uint64 {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: host.DialContext}}
	resp, err := c.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("scrape %s: %v", host.Name, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("scrape %s: %v", host.Name, err)
	}
	out := map[string]uint64{}
	for _, line := range strings.Split(string(body), "\n") {
		if !strings.HasPrefix(line, "halb_vrrp_adverts_") || !strings.Contains(line, `instance="vi"`) {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		key := line[:strings.IndexByte(line, '{')]
		if j := strings.Index(line, `reason="`); j >= 0 {
			r := line[j+len(`reason="`):]
			key += "/" + r[:strings.IndexByte(r, '"')]
		}
		out[key] = uint64(v)
	}
	return out
}

// inject sends raw VRRP messages from host to the VRRP group on eth0 with
// the given TTL.
func inject(t *testing.T, host *netns.Host, ttl int, msgs ...[]byte) {
	t.Helper()
	var (
		c   net.PacketConn
		ifi *net.Interface
	)
	err := host.Do(func() (err error) {
		if ifi, err = net.InterfaceByName("eth0"); err != nil {
			return err
		}
		c, err = net.ListenPacket("ip4:112", "0.0.0.0")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	p := ipv4.NewPacketConn(c)
	if err := firstErr(p.SetMulticastInterface(ifi), p.SetMulticastTTL(ttl)); err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		if _, err := p.WriteTo(m, nil, &net.IPAddr{IP: packet.GroupIPv4.AsSlice()}); err != nil {
			t.Fatal(err)
		}
	}
}

// TestLabAdvertCounters runs two halb run daemons with metrics and reads
// their advert counters: the master's sent and the backup's received
// grow with time; an advert injected with a bad checksum counts as
// rejected for it on the backup, and adverts with TTL 1 do not reach it
// (its socket's filter drops them in the kernel).
func TestLabAdvertCounters(t *testing.T) {
	labtest.RequireRoot(t)
	m := modes[0]
	p := newPair(t)
	const metricsAddr = "127.0.0.1:9464"
	yaml := func(n, prio int) string {
		return fmt.Sprintf("api: {metrics: %q}\n", metricsAddr) + m.halbYAML(n, prio, true, "")
	}
	startHalbRun(t, p.a, yaml(1, 150))
	startHalbRun(t, p.b, yaml(2, 100))
	waitVIP(t, m.vip(), generous(masterDown(m.interval, 100)), p.a, p.a, p.b)

	const (
		sent     = "halb_vrrp_adverts_sent_total"
		received = "halb_vrrp_adverts_received_total"
		rejected = "halb_vrrp_adverts_rejected_total"
	)
	a1, b1 := scrape(t, p.a, metricsAddr), scrape(t, p.b, metricsAddr)

	a := packet.Advert{Version: 3, VRID: 10, Priority: 200, Interval: m.interval, Addrs: []netip.Addr{netip.MustParseAddr(m.vip())}}
	good, err := a.Marshal(netip.MustParseAddr(m.self(1)), packet.GroupIPv4, packet.ChecksumPseudoHeader)
	if err != nil {
		t.Fatal(err)
	}
	bad := append([]byte(nil), good...)
	bad[7] ^= 0xff
	// From a, so the master ignores them as its own; b rejects them.
	inject(t, p.a, 1, good, good)
	inject(t, p.a, 255, bad)

	// Ten intervals later, a has sent and b received about ten adverts.
	time.Sleep(10 * m.interval)
	deadline := time.Now().Add(generous(10 * m.interval))
	for {
		a2, b2 := scrape(t, p.a, metricsAddr), scrape(t, p.b, metricsAddr)
		ok := a2[sent] >= a1[sent]+5 && b2[received] >= b1[received]+5 &&
			b2[rejected+"/checksum"] == b1[rejected+"/checksum"]+1
		if ok {
			if a2[received] != a1[received] || b2[sent] != b1[sent] || b2[rejected+"/ttl"] != b1[rejected+"/ttl"] {
				t.Errorf("a master received, a backup sent, or TTL 1 reached halb: a %v → %v, b %v → %v", a1, a2, b1, b2)
			}
			t.Logf("a: %v\nb: %v", a2, b2)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("counters did not move as expected:\na %v → %v\nb %v → %v", a1, a2, b1, b2)
		}
		time.Sleep(m.interval)
	}
}
