package main

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"halb/internal/api"
)

// TestStatusNamesMarkServicesWithoutVIPs: a mark service with no VIPs is
// shown by its mark and family, not as an empty address.
func TestStatusNamesMarkServicesWithoutVIPs(t *testing.T) {
	st := api.Status{Services: []api.Service{
		{Name: "fw", Protocol: "tcp", Family: 4, Mark: 7, Scheduler: "wlc", Forward: "dr", Pool: "p",
			Servers: []api.Server{{Address: "198.51.100.1", Weight: 1, EffectiveWeight: 1, Healthy: true}}},
		{Name: "web", Protocol: "tcp", VIP: "2001:db8::9", Family: 6, Port: 80, Scheduler: "wlc", Forward: "dr", Pool: "p"},
	}}
	var b strings.Builder
	writeStatus(&b, st, time.Now(), statusWidth)
	for _, want := range []string{"fwmark 0x7 ipv4", "[2001:db8::9]:80"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, b.String())
		}
	}
	if strings.Contains(b.String(), " :0") {
		t.Errorf("status shows an empty address:\n%s", b.String())
	}
}

// siteStatus is a status with six VIPs, per-VIP marks, a lost quorum, a
// long reason and a refused reload.
func siteStatus(now time.Time) api.Status {
	vips := []string{"192.0.2.9", "192.0.2.10", "192.0.2.49", "192.0.2.50", "192.0.2.139", "192.0.2.140"}
	servers := []api.Server{
		{Address: "198.51.100.11", Weight: 1, EffectiveWeight: 1, Healthy: true, Reason: "HTTP 200 from 198.51.100.11:443 /healthz", LastCheck: "ok", LastCheckMS: 1.2, Consecutive: 40},
		{Address: "198.51.100.12", Port: 8443, Weight: 2, Reason: "HTTP 503 from 198.51.100.12:8443 /healthz: " + strings.Repeat("service unavailable ", 8) + ", 24th failure in a row",
			LastCheck: "failed", LastCheckMS: 3.4, Consecutive: 24},
	}
	st := api.Status{Node: "lb-a", Version: "1.0", Dataplane: "ipvs", Config: "/etc/halb/halb.yaml",
		VRRP: []api.Instance{{Name: "web-a", Interface: "eth0", VRID: 9, State: "MASTER", Priority: 150, EffectivePriority: 150,
			Master: "192.0.2.1", Since: now.Add(-time.Hour), VIPs: []string{"192.0.2.9/24", "192.0.2.49/24", "192.0.2.139/24", "192.0.2.141/24",
				"192.0.2.142/24", "192.0.2.143/24", "192.0.2.144/24", "192.0.2.145/24", "192.0.2.146/24", "192.0.2.147/24", "192.0.2.148/24"}}},
		Pools:      []api.Pool{{Name: "www", Quorum: 2, HealthyWeight: 1}},
		LastReload: api.Reload{At: now.Add(-time.Minute), Errors: []string{"halb.yaml:6:13: vrrp.instances[0].vrid: 300 is not from 1 to 255"}},
	}
	for i, v := range vips {
		counted := slices.Clone(servers)
		act, inact, total := uint64(3), uint64(1), uint64(100)
		counted[0].ActiveConnections, counted[0].InactiveConnections = &act, &inact
		st.Services = append(st.Services, api.Service{Name: "https", Protocol: "tcp", VIP: v, Family: 4, Port: 443,
			Mark: 0x1e0c4d00 + uint32(i), Scheduler: "wlc", Forward: "dr", Pool: "www", Servers: counted, Connections: &total})
	}
	return st
}

// TestStatusForPeople: marks in hex, every VIP, the pool and its quorum,
// the last check, a refused reload; no line over 120 columns unless
// --wide.
func TestStatusForPeople(t *testing.T) {
	now := time.Now()
	var b strings.Builder
	writeStatus(&b, siteStatus(now), now, statusWidth)
	out := b.String()
	want := []string{"LAST RELOAD REFUSED 1m0s ago", "vrid: 300 is not from 1 to 255", "192.0.2.148/24", "a mark per VIP",
		"pool www (1/2 up, QUORUM LOST: healthy weight 1 < 2)  600 connections", "up      18/6", "198.51.100.12:8443", "failed 3.4ms", "ok 1.2ms"}
	for i := range 6 {
		want = append(want, fmt.Sprintf("(0x1e0c4d0%d)", i))
	}
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("status lacks %q:\n%s", w, out)
		}
	}
	if strings.Contains(out, "+") {
		t.Errorf("status elides items:\n%s", out)
	}
	for _, line := range strings.Split(out, "\n") {
		if n := utf8.RuneCountInString(line); n > statusWidth {
			t.Errorf("line of %d columns:\n%s", n, line)
		}
	}
	if !strings.Contains(out, "…") {
		t.Errorf("the long reason is not cut:\n%s", out)
	}
	b.Reset()
	writeStatus(&b, siteStatus(now), now, 0)
	if !strings.Contains(b.String(), "24th failure in a row") {
		t.Errorf("--wide cuts the reason:\n%s", b.String())
	}
}

// TestStatusShowsServerOptions: a server's own checks and connection
// thresholds appear next to its health; a plain server shows nothing more.
func TestStatusShowsServerOptions(t *testing.T) {
	st := api.Status{Services: []api.Service{
		{Name: "web", Protocol: "tcp", VIP: "192.0.2.9", Family: 4, Port: 80, Scheduler: "wlc", Forward: "nat", Pool: "p",
			Servers: []api.Server{
				{Address: "198.51.100.1", Weight: 1, Healthy: true, Reason: "ok"},
				{Address: "198.51.100.2", Weight: 1, Healthy: true, Reason: "ok", Checks: []string{"http:8080"}, MaxConnections: 100, MinConnections: 80},
			}},
	}}
	var b strings.Builder
	writeStatus(&b, st, time.Now(), statusWidth)
	if !strings.Contains(b.String(), "198.51.100.2 [checks http:8080; conns 80..100]") {
		t.Errorf("status lacks the server's own checks and thresholds:\n%s", b.String())
	}
	if strings.Count(b.String(), "[") != 1 {
		t.Errorf("a server without options of its own shows some:\n%s", b.String())
	}
}

// TestStatusShowsBGP: sessions with their state and last error, and each
// VIP's route with its reason.
func TestStatusShowsBGP(t *testing.T) {
	now := time.Now()
	st := api.Status{BGP: &api.BGP{Draining: true,
		Sessions: []api.BGPSession{{Peer: "192.0.2.1", ASN: 65000, State: "established", Since: now.Add(-time.Minute)},
			{Peer: "192.0.2.2", ASN: 65000, State: "active", LastError: "peer 192.0.2.2: its AS number is not 65000"}},
		Announced: []api.BGPVIP{{VIP: "203.0.113.10", Reason: "draining"}}}}
	var b strings.Builder
	writeStatus(&b, st, now, statusWidth)
	for _, want := range []string{"192.0.2.1  65000  established  1m0s ago", "its AS number is not 65000",
		"DRAINING", "203.0.113.10  withdrawn  draining"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, b.String())
		}
	}
}

// TestStatusShowsSysctls: the kernel settings the data plane set, sorted.
func TestStatusShowsSysctls(t *testing.T) {
	st := api.Status{Node: "lb-a", Dataplane: "ipvs",
		Sysctls: map[string]string{"net.ipv4.vs.sloppy_tcp": "1", "net.ipv4.vs.expire_nodest_conn": "1"}}
	var b strings.Builder
	writeStatus(&b, st, time.Now(), statusWidth)
	if !strings.Contains(b.String(), "\nsysctls net.ipv4.vs.expire_nodest_conn=1 net.ipv4.vs.sloppy_tcp=1\n") {
		t.Errorf("status lacks the sysctls:\n%s", b.String())
	}
	b.Reset()
	writeStatus(&b, api.Status{Node: "lb-a"}, time.Now(), statusWidth)
	if strings.Contains(b.String(), "sysctls") {
		t.Errorf("status shows sysctls when none were set:\n%s", b.String())
	}
}
