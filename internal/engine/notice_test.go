package engine

import (
	"context"
	"testing"
	"time"

	"halb/internal/event"
	"halb/internal/vrrp/fsm"
)

// TestEngineVRRPNotice: a VRRP notice is recorded as an event of its own
// and leaves the instance's status (state, since, reason) as it was.
func TestEngineVRRPNotice(t *testing.T) {
	src := newFakeSource()
	eng := New(loadString(t, loopConfig), &fakeDataplane{}, "fake", WithAnnouncer(fakeAnnouncer{src}), WithHealthChecker(fakeChecker{src}))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go eng.Run(ctx)

	t0 := time.Unix(1000, 0)
	src.vrrp <- event.VRRP{At: t0, Instance: "web-a", VRID: 9, Old: fsm.Backup.String(), New: fsm.Master.String(),
		Priority: 150, EffectivePriority: 150, Reason: "master down timer expired"}
	src.vrrp <- event.VRRP{At: t0.Add(time.Minute), Instance: "web-a", VRID: 9, Old: fsm.Master.String(), New: fsm.Master.String(),
		Priority: 150, EffectivePriority: 150, Reason: "VIP 192.0.2.9/24 was removed from eth0; put back", Notice: true}
	var last event.Record
	eventually(t, "the notice", func() bool {
		evs, err := eng.Events(ctx, 0)
		if err != nil || len(evs) == 0 {
			return false
		}
		last = evs[len(evs)-1]
		return last.VRRP != nil && last.VRRP.Notice
	})
	if want := "web-a (VRID 9): VIP 192.0.2.9/24 was removed from eth0; put back"; last.Summary != want || last.Kind != "vrrp" {
		t.Errorf("notice recorded as %s %q, want vrrp %q", last.Kind, last.Summary, want)
	}
	st, err := eng.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if v := st.VRRP[0]; v.State != "MASTER" || v.Reason != "master down timer expired" || !v.Since.Equal(t0) {
		t.Errorf("status after the notice: %+v", v)
	}
}
