package notify

import (
	"testing"
	"time"
)

func TestGrouperBurstIsOneBatch(t *testing.T) {
	g := &Grouper{Wait: 5 * time.Second, MinInterval: time.Minute}
	for i := range 6 {
		g.Add(vrrpEvent(uint64(i+1), t0, "vip", "BACKUP", "MASTER", "master down timer expired"), t0.Add(time.Duration(i)*100*time.Millisecond))
	}
	due, ok := g.Due()
	if !ok || !due.Equal(t0.Add(5*time.Second)) {
		t.Fatalf("due = %v, %v; want window end %v", due, ok, t0.Add(5*time.Second))
	}
	if _, ok := g.Take(t0.Add(4 * time.Second)); ok {
		t.Fatal("batch taken before its window closed")
	}
	b, ok := g.Take(t0.Add(5 * time.Second))
	if !ok || len(b.Events) != 6 {
		t.Fatalf("took %d events (ok %v), want the 6 of the burst", len(b.Events), ok)
	}
	if _, ok := g.Due(); ok {
		t.Fatal("something pending after the batch was taken")
	}
}

func TestGrouperRateLimit(t *testing.T) {
	g := &Grouper{Wait: 5 * time.Second, MinInterval: time.Minute}
	// A server flapping every 2 s for 3 minutes: 90 events.
	var batches []Batch
	var sentAt []time.Time
	for i := range 90 {
		now := t0.Add(time.Duration(i) * 2 * time.Second)
		if b, ok := g.Take(now); ok {
			batches, sentAt = append(batches, b), append(sentAt, now)
		}
		g.Add(healthEvent(uint64(i+1), now, 12, i%2 == 1), now)
	}
	end := t0.Add(10 * time.Minute)
	if b, ok := g.Take(end); ok {
		batches, sentAt = append(batches, b), append(sentAt, end)
	}
	// First after the 5 s window, then at most one a minute.
	if len(batches) > 5 || len(batches) < 3 {
		t.Fatalf("%d messages for 90 flaps over 3 minutes; want 3 to 5", len(batches))
	}
	total := 0
	for i, b := range batches {
		total += len(b.Events)
		if i > 0 && sentAt[i].Sub(sentAt[i-1]) < time.Minute {
			t.Errorf("messages %d and %d only %s apart", i-1, i, sentAt[i].Sub(sentAt[i-1]))
		}
	}
	if total != 90 {
		t.Errorf("%d events delivered in batches, want all 90", total)
	}
	if !sentAt[0].Equal(t0.Add(6 * time.Second)) {
		t.Errorf("first message at %v, want at the first Take after the 5 s window (t0+6s)", sentAt[0].Sub(t0))
	}
}

func TestGrouperMaxCountsOmitted(t *testing.T) {
	g := &Grouper{Wait: time.Second, Max: 3}
	for i := range 5 {
		g.Add(healthEvent(uint64(i+1), t0, 12, i%2 == 0), t0)
	}
	b, ok := g.Flush(t0)
	if !ok || len(b.Events) != 3 || b.Omitted != 2 {
		t.Fatalf("flush = %d events, %d omitted, %v; want 3, 2, true", len(b.Events), b.Omitted, ok)
	}
}
