package engine

import (
	"context"
	"net/netip"
	"sync"
	"testing"
	"time"

	"halb/internal/event"
)

// servingAnnouncer is an announcer that observes what the node serves and
// reports events of its own.
type servingAnnouncer struct {
	fakeAnnouncer
	mu      sync.Mutex
	serving []Serving
	report  func(event.Record)
}

func (a *servingAnnouncer) Serving(s Serving) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.serving = append(a.serving, s)
}

func (a *servingAnnouncer) ReportTo(f func(event.Record)) { a.report = f }

func (a *servingAnnouncer) last() (Serving, int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.serving) == 0 {
		return Serving{}, 0
	}
	return a.serving[len(a.serving)-1], len(a.serving)
}

// TestServingObserver: after every reconcile the announcer learns whether
// the data plane is programmed and which services on each VIP have
// quorum, and whether every server of the pool has a health result; the
// events it reports go into the history.
func TestServingObserver(t *testing.T) {
	cfg := loadString(t, loopConfig)
	dp := &fakeDataplane{fail: 1}
	src := newFakeSource()
	a := &servingAnnouncer{fakeAnnouncer: fakeAnnouncer{src}}
	eng := New(cfg, dp, "fake", WithAnnouncer(a), WithHealthChecker(fakeChecker{src}), WithRetryInterval(10*time.Millisecond))
	if a.report == nil {
		t.Fatal("the engine did not give the announcer a report function")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- eng.Run(ctx) }()
	defer func() { cancel(); <-done }()

	vip := netip.MustParseAddr("192.0.2.9")
	eventually(t, "a failed reconcile, then a programmed data plane", func() bool {
		s, n := a.last()
		return n >= 2 && s.Programmed && len(s.VIPs[vip]) == 1 && s.VIPs[vip][0].Quorum
	})
	a.mu.Lock()
	first := a.serving[0]
	a.mu.Unlock()
	if first.Programmed {
		t.Errorf("the failed first reconcile was reported as programmed: %+v", first)
	}
	if s, _ := a.last(); s.VIPs[vip][0].Checked {
		t.Errorf("the pool's quorum is reported checked before any health result: %+v", s)
	}
	for _, ip := range []string{"198.51.100.11", "198.51.100.12"} {
		src.health <- event.Health{Pool: "www", Addr: netip.MustParseAddr(ip), Up: false, Weight: -1, Reason: "refused"}
	}
	eventually(t, "quorum lost on the VIP", func() bool {
		s, _ := a.last()
		return len(s.VIPs[vip]) == 1 && s.VIPs[vip][0].Name == "web" && !s.VIPs[vip][0].Quorum && s.VIPs[vip][0].Checked
	})

	a.report(event.Record{Kind: "bgp_route", Summary: "withdrawn", BGPRoute: &event.BGPRoute{VIP: vip, Reason: "no_quorum"}})
	eventually(t, "the reported event in the history", func() bool {
		evs, err := eng.Events(ctx, 1)
		return err == nil && len(evs) == 1 && evs[0].Kind == "bgp_route" && evs[0].Node == "lb-t" && evs[0].Seq > 0
	})
}
