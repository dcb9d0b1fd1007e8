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
	writeStatus(&b, st, time.Now())
	if !strings.Contains(b.String(), "ok [checks http:8080; conns 80..100]") {
		t.Errorf("status lacks the server's own checks and thresholds:\n%s", b.String())
	}
	if strings.Count(b.String(), "[") != 1 {
		t.Errorf("a server without options of its own shows some:\n%s", b.String())
	}
}
