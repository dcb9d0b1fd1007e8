// Package clock is the time source of halb's logic: code that reads the
// time or waits takes a Clock, so that tests can pass a fake one
// (package clocktest) and move time themselves.
package clock

import (
	"context"
	"time"
)

// Clock tells the time and makes timers.
type Clock interface {
	Now() time.Time
	// NewTimer returns a timer that fires once, after d.
	NewTimer(d time.Duration) Timer
	// After is NewTimer(d).C(), for a wait that is never stopped.
	After(d time.Duration) <-chan time.Time
}

// Timer is the part of *time.Timer that halb uses.
type Timer interface {
	// C receives the time when the timer fires.
	C() <-chan time.Time
	// Stop stops the timer; it reports whether the timer was running.
	Stop() bool
	// Reset makes the timer fire after d; it reports whether the timer
	// was running.
	Reset(d time.Duration) bool
}

// Real is the system clock.
type Real struct{}

// Now returns the current time.
func (Real) Now() time.Time { return time.Now() }

// NewTimer returns a timer of package time.
func (Real) NewTimer(d time.Duration) Timer { return realTimer{time.NewTimer(d)} }

// After waits for d to elapse.
func (Real) After(d time.Duration) <-chan time.Time { return time.After(d) }

type realTimer struct{ t *time.Timer }

func (t realTimer) C() <-chan time.Time        { return t.t.C }
func (t realTimer) Stop() bool                 { return t.t.Stop() }
func (t realTimer) Reset(d time.Duration) bool { return t.t.Reset(d) }

// Sleep waits for d on c, or until ctx is done (then it returns ctx's
// error).
func Sleep(ctx context.Context, c Clock, d time.Duration) error {
	t := c.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
