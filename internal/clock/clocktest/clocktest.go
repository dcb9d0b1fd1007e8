// Package clocktest is a fake clock.Clock for tests: its time moves only
// when the test advances it, and its timers fire then, in time order.
package clocktest

import (
	"slices"
	"sync"
	"time"

	"halb/internal/clock"
)

// Clock is a fake clock. It is safe for concurrent use.
type Clock struct {
	mu  sync.Mutex
	now time.Time
	// timers are the running timers.
	timers []*timer
}

// Start is where New puts a clock given the zero time.
var Start = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// New returns a fake clock showing t (Start if t is zero).
func New(t time.Time) *Clock {
	if t.IsZero() {
		t = Start
	}
	return &Clock{now: t}
}

// Now returns the fake time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// NewTimer returns a timer that fires once Advance reaches d from now (at
// once if d <= 0).
func (c *Clock) NewTimer(d time.Duration) clock.Timer {
	t := &timer{clk: c, ch: make(chan time.Time, 1)}
	t.Reset(d)
	return t
}

// After is NewTimer(d).C().
func (c *Clock) After(d time.Duration) <-chan time.Time { return c.NewTimer(d).C() }

// Advance moves the time on by d, firing the timers that come due on the
// way, each at its own time.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	end := c.now.Add(d)
	for {
		i := c.next()
		if i < 0 || c.timers[i].at.After(end) {
			break
		}
		t := c.timers[i]
		c.now = t.at
		c.fire(i)
	}
	c.now = end
}

// Set moves the time on to t (never back), like Advance.
func (c *Clock) Set(t time.Time) { c.Advance(max(t.Sub(c.Now()), 0)) }

// Timers returns how many timers are running.
func (c *Clock) Timers() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers)
}

// next is the index of the earliest running timer, -1 if none.
func (c *Clock) next() int {
	i := -1
	for k, t := range c.timers {
		if i < 0 || t.at.Before(c.timers[i].at) {
			i = k
		}
	}
	return i
}

// fire sends the time on timer i and stops it.
func (c *Clock) fire(i int) {
	t := c.timers[i]
	c.timers = slices.Delete(c.timers, i, i+1)
	select {
	case t.ch <- c.now:
	default:
	}
}

type timer struct {
	clk *Clock
	ch  chan time.Time
	at  time.Time
}

func (t *timer) C() <-chan time.Time { return t.ch }

// Stop stops the timer and drains its channel, like *time.Timer since
// Go 1.23.
func (t *timer) Stop() bool {
	t.clk.mu.Lock()
	defer t.clk.mu.Unlock()
	return t.stop()
}

func (t *timer) stop() bool {
	select {
	case <-t.ch:
	default:
	}
	if i := slices.Index(t.clk.timers, t); i >= 0 {
		t.clk.timers = slices.Delete(t.clk.timers, i, i+1)
		return true
	}
	return false
}

// Reset stops the timer and makes it fire after d.
func (t *timer) Reset(d time.Duration) bool {
	c := t.clk
	c.mu.Lock()
	defer c.mu.Unlock()
	was := t.stop()
	t.at = c.now.Add(d)
	c.timers = append(c.timers, t)
	if d <= 0 {
		c.fire(len(c.timers) - 1)
	}
	return was
}
