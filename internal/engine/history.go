package engine

import (
	"context"
	"fmt"
	"net/netip"
	"strings"

	"halb/internal/event"
)

// historySize bounds the event history kept in memory.
const historySize = 500

// WithEventSink adds a function called with every event record, on the
// engine goroutine: it must not block (hand the record to a buffered
// channel or drop it).
func WithEventSink(f func(event.Record)) Option {
	return func(e *Engine) { e.sinks = append(e.sinks, f) }
}

// record stamps an event, keeps it in the bounded history and passes it to
// the sinks.
func (e *Engine) record(r event.Record) {
	e.seq++
	r.Seq, r.Node = e.seq, e.cfg.Node
	if r.At.IsZero() {
		r.At = e.clock.Now()
	}
	if len(e.history) == historySize {
		copy(e.history, e.history[1:])
		e.history = e.history[:historySize-1]
	}
	e.history = append(e.history, r)
	for _, s := range e.sinks {
		s(r)
	}
}

// Events returns up to n of the most recent events, oldest first.
func (e *Engine) Events(ctx context.Context, n int) ([]event.Record, error) {
	var out []event.Record
	err := e.do(ctx, func() { out = e.recent(n) })
	return out, err
}

func (e *Engine) recent(n int) []event.Record {
	if n <= 0 || n > len(e.history) {
		n = len(e.history)
	}
	return append([]event.Record{}, e.history[len(e.history)-n:]...)
}

// ReloadRefused records a reload whose configuration had errors.
func (e *Engine) ReloadRefused(ctx context.Context, file string, errs []string) error {
	return e.do(ctx, func() {
		e.record(event.Record{Kind: "reload", Summary: fmt.Sprintf("reload of %s refused: %d errors; the running configuration stays", file, len(errs)),
			Reload: &event.Reload{At: e.clock.Now(), File: file, Errors: errs}})
	})
}

func vrrpSummary(ev event.VRRP) string {
	if ev.Notice {
		return fmt.Sprintf("%s (VRID %d): %s", ev.Instance, ev.VRID, ev.Reason)
	}
	s := fmt.Sprintf("%s (VRID %d): %s -> %s", ev.Instance, ev.VRID, ev.Old, ev.New)
	if ev.Reason != "" {
		s += " (" + ev.Reason + ")"
	}
	return s
}

func healthSummary(ev event.Health) string {
	state := "DOWN"
	if ev.Up {
		state = "UP"
	}
	server := ev.Addr.String()
	if ev.Port != 0 {
		server = netip.AddrPortFrom(ev.Addr, ev.Port).String()
	}
	s := fmt.Sprintf("%s %s in pool %s", server, state, ev.Pool)
	if ev.Reason != "" {
		s += " (" + ev.Reason + ")"
	}
	return s
}

func quorumSummary(q event.Quorum) string {
	if q.Up {
		return fmt.Sprintf("pool %s regained quorum (healthy weight %d, quorum %d)", q.Pool, q.HealthyWeight, q.Quorum)
	}
	s := fmt.Sprintf("pool %s LOST quorum (healthy weight %d < %d)", q.Pool, q.HealthyWeight, q.Quorum)
	if q.SorryActive {
		s += ", sorry server in"
	}
	return s
}

func reloadSummary(file string, changes []string) string {
	if len(changes) == 0 {
		return fmt.Sprintf("reloaded %s: no data plane change", file)
	}
	return fmt.Sprintf("reloaded %s: %d data plane changes (%s)", file, len(changes), strings.Join(first(changes, 3), "; "))
}

func first(s []string, n int) []string {
	if len(s) > n {
		return append(s[:n:n], fmt.Sprintf("+%d more", len(s)-n))
	}
	return s
}

func restoredSummary(r event.Restored) string {
	return fmt.Sprintf("data plane restored: %d changes put back (%s)", r.Changes, r.Reason)
}
