package engine

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestResync: a data plane's Resync reconciles the same state again; what
// it put back is recorded (with the reasons of the requests it answered);
// a check that put nothing back is not, nor one of a data plane that does
// not count its changes.
func TestResync(t *testing.T) {
	cfg := loadString(t, loopConfig)
	for _, tc := range []struct {
		name    string
		changes int // -1: the data plane does not count
		want    string
	}{
		{"restored", 7, "data plane restored: 7 changes put back (table halb changed by nft (pid 42); nftables notifications lost)"},
		{"nothing to restore", 0, ""},
		{"uncounted", -1, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cdp := &countingDataplane{changes: tc.changes}
			var eng *Engine
			if tc.changes < 0 {
				eng = New(cfg, &cdp.fakeDataplane, "fake")
			} else {
				eng = New(cfg, cdp, "fake")
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			// Both requests come before Run: one reconcile answers them.
			eng.Resync("table halb changed by nft (pid 42)")
			eng.Resync("nftables notifications lost")
			eng.Resync("nftables notifications lost")
			go func() { done <- eng.Run(ctx) }()
			eventually(t, "the start's and the resync's reconcile", func() bool { _, n := cdp.last(); return n >= 2 })
			time.Sleep(20 * time.Millisecond) // a third reconcile would show
			if _, n := cdp.last(); n != 2 {
				t.Errorf("%d reconciles, want the start's and one for the requests", n)
			}
			cdp.mu.Lock()
			first := cdp.states[0]
			cdp.mu.Unlock()
			if s, _ := cdp.last(); weights(s) != weights(first) {
				t.Errorf("the resync reconciled %s, want the same state %s", weights(s), weights(first))
			}
			evs, err := eng.Events(ctx, 0)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range evs {
				if r.Kind == "dataplane_restored" {
					got = append(got, r.Summary)
					if r.Restored == nil || r.Restored.Changes != tc.changes || !strings.Contains(r.Restored.Reason, "pid 42") {
						t.Errorf("event %+v", r.Restored)
					}
				}
			}
			if strings.Join(got, "|") != tc.want {
				t.Errorf("events %q, want %q", got, tc.want)
			}
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		})
	}
}
