package notify

import (
	"fmt"
	"net/netip"
	"time"

	"halb/internal/api"
	"halb/internal/event"
)

var t0 = time.Date(2026, 11, 25, 17, 40, 0, 0, time.UTC)

// siteStatus is lb-a with pool www of three servers, .12 down.
func siteStatus() api.Status {
	srv := func(last byte, up bool, reason string) api.Server {
		w := 0
		if up {
			w = 1
		}
		return api.Server{Address: fmt.Sprintf("198.51.100.%d", last), Port: 80, Weight: 1, EffectiveWeight: w,
			Healthy: up, Reason: reason, LatencyMS: 1.5, LastChange: t0}
	}
	servers := []api.Server{srv(11, true, "HTTP 200"), srv(12, false, "HTTP 503 from 198.51.100.12:80 /healthz, 3rd failure in a row"), srv(13, true, "HTTP 200")}
	return api.Status{
		Node: "lb-a", Version: "1.0", Dataplane: "none", Config: "/etc/halb/halb.yaml", Started: t0.Add(-time.Hour),
		VRRP: []api.Instance{{Name: "web-a", Interface: "eth0", VRID: 9, State: "MASTER", Priority: 150, EffectivePriority: 150,
			Master: "192.0.2.11", Since: t0.Add(-time.Hour), VIPs: []string{"192.0.2.9/24"}}},
		Services: []api.Service{
			{Name: "https", Protocol: "tcp", VIP: "192.0.2.9", Port: 443, Scheduler: "wlc", Forward: "dr", Pool: "www", Servers: servers},
			{Name: "http", Protocol: "tcp", VIP: "192.0.2.9", Port: 80, Scheduler: "wlc", Forward: "dr", Pool: "www", Servers: servers},
		},
		Pools:  []api.Pool{{Name: "www", Quorum: 1, HealthyWeight: 2, QuorumUp: true}},
		Events: []event.Record{{Seq: 1, At: t0.Add(-time.Hour), Node: "lb-a", Kind: "reload", Summary: "reloaded /etc/halb/halb.yaml: no data plane change"}},
	}
}

func healthEvent(seq uint64, at time.Time, last byte, up bool) event.Record {
	h := &event.Health{At: at, Pool: "www", Addr: netip.AddrFrom4([4]byte{198, 51, 100, last}), Check: "http :80 /healthz",
		Up: up, Consecutive: 3, Latency: 1200 * time.Microsecond}
	if up {
		h.Reason = "HTTP 200"
	} else {
		h.Reason = fmt.Sprintf("HTTP 503 from 198.51.100.%d:80 /healthz, 3rd failure in a row", last)
	}
	state := "DOWN"
	if up {
		state = "UP"
	}
	return event.Record{Seq: seq, At: at, Node: "lb-a", Kind: "health", Health: h,
		Summary: fmt.Sprintf("198.51.100.%d %s in pool www (%s)", last, state, h.Reason)}
}

func vrrpEvent(seq uint64, at time.Time, name, from, to, reason string) event.Record {
	v := &event.VRRP{At: at, Instance: name, VRID: int(seq), Interface: "eth0", Old: from, New: to, Priority: 100, EffectivePriority: 100,
		Master: netip.MustParseAddr("192.0.2.12"), Reason: reason}
	return event.Record{Seq: seq, At: at, Node: "lb-a", Kind: "vrrp", VRRP: v,
		Summary: fmt.Sprintf("%s (VRID %d): %s -> %s (%s)", name, seq, from, to, reason)}
}
