package notify

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"halb/internal/api"
)

// recorder is a Sender that keeps what it is sent, and may block or fail.
type recorder struct {
	name  string
	mu    sync.Mutex
	got   []Message
	at    []time.Time
	block chan struct{}
	fail  bool
}

func (r *recorder) Name() string { return r.name }

func (r *recorder) Send(ctx context.Context, m Message) error {
	if r.block != nil {
		select {
		case <-r.block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got, r.at = append(r.got, m), append(r.at, time.Now())
	if r.fail {
		return errors.New("relay refused")
	}
	return nil
}

func (r *recorder) messages() []Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Message{}, r.got...)
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func statusOK(context.Context) (api.Status, error) { return siteStatus(), nil }

// TestNotifierGroupsAndRateLimits runs the notifier on synctest's fake
// clock: a six-instance failover is one message after the group window;
// a server flapping for two minutes afterwards gives one message a minute.
func TestNotifierGroupsAndRateLimits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{name: "rec"}
		n := New(Options{Node: "lb-a", Status: statusOK, Log: quiet(), Wait: 5 * time.Second, MinInterval: time.Minute, Senders: []Sender{rec}})
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { n.Run(ctx); close(done) }()
		start := time.Now()
		for i, name := range []string{"v1", "v2", "v3", "v4", "v5", "v6"} {
			n.Sink(vrrpEvent(uint64(i+1), time.Now(), name, "BACKUP", "MASTER", "master down timer expired"))
			time.Sleep(50 * time.Millisecond)
		}
		time.Sleep(10 * time.Second)
		synctest.Wait()
		if got := rec.messages(); len(got) != 1 || len(got[0].Events) != 6 {
			t.Fatalf("after the failover: %d messages, want 1 with the 6 transitions", len(got))
		}
		if d := rec.at[0].Sub(start); d != 5*time.Second {
			t.Errorf("failover message sent %s after the first event, want the 5s window", d)
		}
		for i := range 60 {
			n.Sink(healthEvent(uint64(10+i), time.Now(), 12, i%2 == 1))
			time.Sleep(2 * time.Second)
		}
		cancel()
		<-done
		got := rec.messages()
		if len(got) < 3 || len(got) > 4 {
			t.Fatalf("%d messages for a failover and 60 flaps over 2 minutes; want 3 or 4", len(got))
		}
		for i := 1; i < len(got)-1; i++ {
			if d := rec.at[i].Sub(rec.at[i-1]); d < time.Minute {
				t.Errorf("messages %d and %d %s apart, under the 1m rate limit", i-1, i, d)
			}
		}
		if s := got[1].Subject; s[:len("lb-a: 198.51.100.12 flapping in pool www")] != "lb-a: 198.51.100.12 flapping in pool www" {
			t.Errorf("second message subject %q, want the flapping server", s)
		}
		if st := n.Stats(); st[1].Name != "rec" || st[1].Sent != uint64(len(got)) || st[0].Dropped != 0 {
			t.Errorf("stats = %+v", st)
		}
	})
}

// TestNotifierNeverBlocks: a sender stuck forever neither blocks Sink nor
// stops the other senders; a failing one is counted.
func TestNotifierNeverBlocks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		stuck := &recorder{name: "stuck", block: make(chan struct{})}
		failing := &recorder{name: "failing", fail: true}
		ok := &recorder{name: "ok"}
		n := New(Options{Node: "lb-a", Status: statusOK, Log: quiet(), Wait: time.Second, MinInterval: time.Second, Senders: []Sender{stuck, failing, ok}})
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { n.Run(ctx); close(done) }()
		for i := range 5000 {
			n.Sink(healthEvent(uint64(i), time.Now(), 12, i%2 == 0))
			if i%100 == 0 {
				time.Sleep(time.Second)
			}
		}
		time.Sleep(5 * time.Second)
		synctest.Wait()
		if len(ok.messages()) < 40 || len(failing.messages()) != len(ok.messages()) {
			t.Errorf("ok got %d messages, failing %d; want about 50 each", len(ok.messages()), len(failing.messages()))
		}
		cancel()
		<-done // the stuck sender is abandoned after the grace period
		stats := map[string]Stats{}
		for _, s := range n.Stats() {
			stats[s.Name] = s
		}
		if stats["failing"].Failed == 0 || stats["failing"].Sent != 0 {
			t.Errorf("failing sender counted %+v", stats["failing"])
		}
		if stats["stuck"].Dropped == 0 {
			t.Errorf("stuck sender: no dropped messages counted: %+v", stats["stuck"])
		}
	})
}

// TestStartupConfirmationsAreQuiet: a server's first result confirming it
// up is no news; a first DOWN and a recovery are.
func TestStartupConfirmationsAreQuiet(t *testing.T) {
	n := New(Options{Node: "lb-a"})
	for i, c := range []struct {
		last byte
		up   bool
		want bool
	}{{11, true, false}, {12, false, true}, {11, false, true}, {11, true, true}, {12, true, true}} {
		if got := n.notable(healthEvent(uint64(i), t0, c.last, c.up)); got != c.want {
			t.Errorf("event %d (.%d up=%v): notable %v, want %v", i, c.last, c.up, got, c.want)
		}
	}
	if !n.notable(vrrpEvent(9, t0, "web-a", "INIT", "BACKUP", "startup")) {
		t.Error("VRRP transition not notable")
	}
}
