package notify

import "time"

// Clock is the time source of the notifier, replaced in tests.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

// SystemClock is the real time.
type SystemClock struct{}

// Now returns the current time.
func (SystemClock) Now() time.Time { return time.Now() }

// After waits for d to elapse.
func (SystemClock) After(d time.Duration) <-chan time.Time { return time.After(d) }
