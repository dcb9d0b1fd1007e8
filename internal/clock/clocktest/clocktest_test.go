package clocktest

import (
	"context"
	"errors"
	"testing"
	"time"

	"halb/internal/clock"
)

var _ clock.Clock = (*Clock)(nil)

// TestTimersFireInOrder: Advance fires each timer due at its own time and
// leaves the others running.
func TestTimersFireInOrder(t *testing.T) {
	c := New(time.Time{})
	if !c.Now().Equal(Start) {
		t.Fatalf("new clock at %s, want %s", c.Now(), Start)
	}
	late, early := c.NewTimer(3*time.Second), c.NewTimer(time.Second)
	after := c.After(2 * time.Second)
	c.Advance(2 * time.Second)
	for name, ch := range map[string]<-chan time.Time{"1s": early.C(), "2s": after} {
		select {
		case at := <-ch:
			if want := Start.Add(map[string]time.Duration{"1s": time.Second, "2s": 2 * time.Second}[name]); !at.Equal(want) {
				t.Errorf("%s timer fired at %s, want %s", name, at, want)
			}
		default:
			t.Errorf("%s timer did not fire", name)
		}
	}
	select {
	case <-late.C():
		t.Fatal("3s timer fired after 2s")
	default:
	}
	if n := c.Timers(); n != 1 {
		t.Fatalf("%d timers running, want 1", n)
	}
	c.Set(Start.Add(3 * time.Second))
	if _, ok := <-late.C(); !ok || c.Timers() != 0 {
		t.Fatalf("3s timer: fired %v, %d running", ok, c.Timers())
	}
}

func TestStopReset(t *testing.T) {
	c := New(time.Time{})
	tm := c.NewTimer(time.Second)
	if !tm.Stop() || tm.Stop() {
		t.Fatal("Stop: want true once, then false")
	}
	c.Advance(time.Hour)
	select {
	case <-tm.C():
		t.Fatal("a stopped timer fired")
	default:
	}
	if tm.Reset(time.Minute) {
		t.Fatal("Reset of a stopped timer reported it running")
	}
	c.Advance(59 * time.Second)
	if !tm.Reset(time.Minute) {
		t.Fatal("Reset of a running timer reported it stopped")
	}
	c.Advance(59 * time.Second)
	select {
	case <-tm.C():
		t.Fatal("the timer fired before its reset time")
	default:
	}
	c.Advance(time.Second)
	<-tm.C()
	if tm.Reset(0); len(tm.C()) != 1 {
		t.Fatal("Reset(0) did not fire at once")
	}
}

func TestSleep(t *testing.T) {
	c := New(time.Time{})
	done := make(chan error)
	go func() { done <- clock.Sleep(t.Context(), c, time.Second) }()
	for c.Timers() == 0 {
		time.Sleep(time.Millisecond) // the goroutine has not started its timer yet
	}
	c.Advance(time.Second)
	if err := <-done; err != nil {
		t.Fatalf("Sleep: %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := clock.Sleep(ctx, c, time.Second); !errors.Is(err, context.Canceled) {
		t.Fatalf("Sleep with a done context: %v", err)
	}
	if c.Timers() != 0 {
		t.Fatalf("Sleep left %d timers running", c.Timers())
	}
}
