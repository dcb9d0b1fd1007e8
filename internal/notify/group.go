package notify

import (
	"time"

	"halb/internal/event"
)

// Grouper collects events into batches, one batch per notification. The
// first event of a burst opens a window of Wait; the batch is due when the
// window has closed and MinInterval has passed since the previous batch,
// so a flapping server or a failover of many instances is one message and
// messages never come faster than one per MinInterval. It is pure: the
// caller passes the time.
type Grouper struct {
	Wait        time.Duration
	MinInterval time.Duration
	// Max bounds the events kept in one batch; later ones are counted.
	Max int

	pending []event.Record
	omitted int
	opened  time.Time
	last    time.Time
}

// Batch is the content of one notification.
type Batch struct {
	Events []event.Record
	// Omitted counts events of the burst beyond Max.
	Omitted int
}

// Add puts an event into the pending batch.
func (g *Grouper) Add(r event.Record, now time.Time) {
	if len(g.pending) == 0 && g.omitted == 0 {
		g.opened = now
	}
	if g.Max > 0 && len(g.pending) >= g.Max {
		g.omitted++
		return
	}
	g.pending = append(g.pending, r)
}

// Due returns when the pending batch is to be sent, and false when
// nothing is pending.
func (g *Grouper) Due() (time.Time, bool) {
	if len(g.pending) == 0 {
		return time.Time{}, false
	}
	due := g.opened.Add(g.Wait)
	if !g.last.IsZero() {
		if next := g.last.Add(g.MinInterval); next.After(due) {
			due = next
		}
	}
	return due, true
}

// Take returns the pending batch when it is due at now, and starts a new
// one.
func (g *Grouper) Take(now time.Time) (Batch, bool) {
	due, ok := g.Due()
	if !ok || now.Before(due) {
		return Batch{}, false
	}
	return g.Flush(now)
}

// Flush returns whatever is pending, due or not (on shutdown).
func (g *Grouper) Flush(now time.Time) (Batch, bool) {
	if len(g.pending) == 0 {
		return Batch{}, false
	}
	b := Batch{Events: g.pending, Omitted: g.omitted}
	g.pending, g.omitted, g.last = nil, 0, now
	return b, true
}
