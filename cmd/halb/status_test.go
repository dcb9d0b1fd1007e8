package main

import (
	"strings"
	"testing"
	"time"

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
	writeStatus(&b, st, time.Now())
	for _, want := range []string{"fwmark 7 ipv4", "[2001:db8::9]:80"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, b.String())
		}
	}
	if strings.Contains(b.String(), " :0") {
		t.Errorf("status shows an empty address:\n%s", b.String())
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
	writeStatus(&b, st, now)
	for _, want := range []string{"192.0.2.1  65000  established  1m0s ago", "its AS number is not 65000",
		"DRAINING", "203.0.113.10  withdrawn  draining"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, b.String())
		}
	}
}
