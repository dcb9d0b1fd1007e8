package bgp

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"halb/internal/config"
	"halb/internal/event"
)

// fakeSpeaker records the routes and runs until its context ends.
type fakeSpeaker struct {
	mu     sync.Mutex
	routes map[netip.Prefix]Attrs
	closed bool
}

func (f *fakeSpeaker) Run(ctx context.Context) error {
	<-ctx.Done()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	return nil
}

func (f *fakeSpeaker) Announce(p netip.Prefix, a Attrs) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.routes[p] = a
	return nil
}

func (f *fakeSpeaker) Withdraw(p netip.Prefix) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.routes, p)
	return nil
}

func (f *fakeSpeaker) Peers() []PeerStatus { return nil }

func (f *fakeSpeaker) isClosed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.closed
}

func (f *fakeSpeaker) announced() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for p := range f.routes {
		out = append(out, p.String())
	}
	slices.Sort(out)
	return out
}

// fakeLoopback records the addresses on the loopback.
type fakeLoopback struct {
	mu    sync.Mutex
	addrs map[netip.Prefix]bool
}

func (l *fakeLoopback) Add(ps []netip.Prefix) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, p := range ps {
		l.addrs[p] = true
	}
	return nil
}

func (l *fakeLoopback) Remove(ps []netip.Prefix) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, p := range ps {
		delete(l.addrs, p)
	}
	return nil
}

func (l *fakeLoopback) list() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for p := range l.addrs {
		out = append(out, p.String())
	}
	slices.Sort(out)
	return strings.Join(out, " ")
}

var vip6 = netip.MustParseAddr("2001:db8::10")

func nodeConfig(drain time.Duration, vips ...netip.Addr) *config.Config {
	return &config.Config{BGP: config.BGP{ASN: 65010, DrainTime: config.Duration(drain),
		Announce: []config.BGPAnnounce{{VIPs: vips, Communities: []config.Community{65010<<16 | 100}, MED: 7}}}}
}

type recorder struct {
	mu  sync.Mutex
	evs []event.Record
}

func (r *recorder) report(e event.Record) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.evs = append(r.evs, e)
}

func (r *recorder) summaries() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, e := range r.evs {
		out = append(out, e.Summary)
	}
	return out
}

func ready(quorum bool, vips ...netip.Addr) Readiness {
	r := Readiness{Programmed: true, Services: map[netip.Addr][]ServiceQuorum{}}
	for _, v := range vips {
		r.Services[v] = []ServiceQuorum{{Name: "web", Quorum: quorum}}
	}
	return r
}

// TestNodeAnnouncesWhatItServes: a VIP is announced, with the configured
// attributes, while a service on it has quorum, and withdrawn when quorum
// is lost or the node is drained; each change is an event.
func TestNodeAnnouncesWhatItServes(t *testing.T) {
	sp, lo := &fakeSpeaker{routes: map[netip.Prefix]Attrs{}}, &fakeLoopback{addrs: map[netip.Prefix]bool{}}
	n := newNode(sp, lo, slog.New(slog.DiscardHandler), nodeConfig(0, vipA, vip6))
	var rec recorder
	n.ReportTo(rec.report)

	n.Serving(Readiness{Services: ready(true, vipA, vip6).Services})
	if got := sp.announced(); len(got) != 0 {
		t.Errorf("announced %v before the data plane was programmed", got)
	}
	n.Serving(ready(true, vipA))
	if got := sp.announced(); !slices.Equal(got, []string{"203.0.113.10/32"}) {
		t.Errorf("announced %v, want the VIP with a service only", got)
	}
	if a := sp.routes[netip.MustParsePrefix("203.0.113.10/32")]; a.MED != 7 || !slices.Equal(a.Communities, []uint32{65010<<16 | 100}) {
		t.Errorf("attributes %+v, want MED 7 and community 65010:100", a)
	}
	_, st := n.Status()
	if st[0] != (VIPStatus{vipA, true, ReasonReady}) || st[1] != (VIPStatus{vip6, false, ReasonNoService}) {
		t.Errorf("status %+v", st)
	}
	n.Serving(ready(false, vipA))
	if got := sp.announced(); len(got) != 0 {
		t.Errorf("announced %v without quorum", got)
	}
	n.Serving(ready(true, vipA, vip6))
	n.Drain()
	if got := sp.announced(); len(got) != 0 {
		t.Errorf("announced %v while drained", got)
	}
	n.Serving(ready(true, vipA, vip6))
	if got := sp.announced(); len(got) != 0 {
		t.Errorf("announced %v after a reconcile while drained", got)
	}
	_, st = n.Status()
	if st[0].Reason != ReasonDraining {
		t.Errorf("status %+v, want draining", st)
	}
	want := []string{
		"VIP 203.0.113.10 announced to the routers",
		"VIP 203.0.113.10 withdrawn from the routers: no_quorum",
		"VIP 203.0.113.10 announced to the routers",
		"VIP 2001:db8::10 announced to the routers",
		"VIP 203.0.113.10 withdrawn from the routers: draining",
		"VIP 2001:db8::10 withdrawn from the routers: draining",
	}
	if got := rec.summaries(); !slices.Equal(got, want) {
		t.Errorf("events:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestNodeRunAndStop: the VIPs are on the loopback while the node runs;
// on stop it withdraws, keeps forwarding for the drain time, then closes
// the sessions and takes the VIPs off.
func TestNodeRunAndStop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sp, lo := &fakeSpeaker{routes: map[netip.Prefix]Attrs{}}, &fakeLoopback{addrs: map[netip.Prefix]bool{}}
		n := newNode(sp, lo, slog.New(slog.DiscardHandler), nodeConfig(5*time.Second, vipA, vip6))
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- n.Run(ctx, nil) }()
		synctest.Wait()
		if got := lo.list(); got != "2001:db8::10/128 203.0.113.10/32" {
			t.Errorf("loopback %q, want both VIPs", got)
		}
		n.Serving(ready(true, vipA, vip6))

		// A reload drops one VIP: withdrawn and off the loopback.
		if err := n.Reload(nodeConfig(5*time.Second, vipA)); err != nil {
			t.Fatal(err)
		}
		if got, lo := sp.announced(), lo.list(); !slices.Equal(got, []string{"203.0.113.10/32"}) || lo != "203.0.113.10/32" {
			t.Errorf("after the reload: announced %v, loopback %q", got, lo)
		}

		start := time.Now()
		cancel()
		synctest.Wait()
		if got := sp.announced(); len(got) != 0 {
			t.Errorf("announced %v while stopping", got)
		}
		if lo.list() == "" || sp.isClosed() {
			t.Error("stopped forwarding before the drain time")
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if waited := time.Since(start); waited != 5*time.Second {
			t.Errorf("drained for %s, want 5s", waited)
		}
		if !sp.isClosed() || lo.list() != "" {
			t.Errorf("after stop: sessions closed %v, loopback %q", sp.isClosed(), lo.list())
		}
	})
}

// TestNodeStopsAtOnceWhenNothingAnnounced: a node that announced nothing
// (drained, or never ready) does not wait the drain time.
func TestNodeStopsAtOnceWhenNothingAnnounced(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sp, lo := &fakeSpeaker{routes: map[netip.Prefix]Attrs{}}, &fakeLoopback{addrs: map[netip.Prefix]bool{}}
		n := newNode(sp, lo, slog.New(slog.NewTextHandler(io.Discard, nil)), nodeConfig(5*time.Second, vipA))
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- n.Run(ctx, nil) }()
		n.Serving(ready(true, vipA))
		n.Drain()
		start := time.Now()
		cancel()
		if err := <-done; err != nil || time.Since(start) != 0 {
			t.Errorf("Run: %v after %s, want nil at once", err, time.Since(start))
		}
	})
}

func TestRestartNeeded(t *testing.T) {
	cur := config.BGP{ASN: 65010, Peers: []config.BGPPeer{{Address: netip.MustParseAddr("192.0.2.1"), ASN: 65000}}}
	next := cur
	next.Announce = []config.BGPAnnounce{{VIPs: []netip.Addr{vipA}}}
	next.DrainTime = config.Duration(time.Second)
	if got := RestartNeeded(cur, next); len(got) != 0 {
		t.Errorf("announce lists and drain time: %v, want them applied live", got)
	}
	next.ASN = 65011
	next.Peers = []config.BGPPeer{{Address: netip.MustParseAddr("192.0.2.2"), ASN: 65000}}
	got := strings.Join(RestartNeeded(cur, next), "; ")
	if !strings.Contains(got, "bgp.asn: changed from 65010 to 65011") || !strings.Contains(got, "bgp.peers: changed") {
		t.Errorf("RestartNeeded = %q", got)
	}
}
