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
