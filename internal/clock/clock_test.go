package clock

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestReal(t *testing.T) {
	var c Clock = Real{}
	before := time.Now()
	if err := Sleep(t.Context(), c, time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if now := c.Now(); now.Sub(before) < time.Millisecond {
		t.Fatalf("slept %s, want 1ms", now.Sub(before))
	}
	tm := c.NewTimer(time.Hour)
	if !tm.Stop() || tm.Reset(time.Millisecond) {
		t.Fatal("Stop and Reset do not report the timer's state")
	}
	<-tm.C()
	<-c.After(time.Millisecond)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := Sleep(ctx, c, time.Hour); !errors.Is(err, context.Canceled) {
		t.Fatalf("Sleep with a done context: %v", err)
	}
}
