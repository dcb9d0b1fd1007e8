package faults

import (
	"testing"
	"time"
)

// TestSinceStart: the log of halb's last run, and when it started.
func TestSinceStart(t *testing.T) {
	log := `time=2026-12-06T02:20:00.000Z level=INFO msg="halb running" node=lb-a
time=2026-12-06T02:20:01.000Z level=WARN msg="adverts with another interval (logged once)"
time=2026-12-06T02:24:26.051Z level=INFO msg="halb running" node=lb-a
time=2026-12-06T02:24:27.000Z level=INFO msg="VRRP transition"
`
	got, at := sinceStart(log)
	if want := `time=2026-12-06T02:24:26.051Z level=INFO msg="halb running" node=lb-a
time=2026-12-06T02:24:27.000Z level=INFO msg="VRRP transition"
`; got != want {
		t.Errorf("since the start: %q, want %q", got, want)
	}
	if want := time.Date(2026, 12, 6, 2, 24, 26, 51e6, time.UTC); !at.Equal(want) {
		t.Errorf("started at %v, want %v", at, want)
	}
	if got, at := sinceStart("no start here\n"); got != "no start here\n" || !at.IsZero() {
		t.Errorf("a log without a start: %q, %v; want all of it and no time", got, at)
	}
}
