package vrrp

import (
	"strings"
	"testing"
	"time"

	"halb/internal/lab/labtest"
)

// TestLabRestoreVIP: a VIP deleted by hand on the master is back within
// one advert interval, and an event says so.
func TestLabRestoreVIP(t *testing.T) {
	labtest.RequireRoot(t)
	p := newPair(t)
	const vip = "192.0.2.100"
	iv := time.Second
	conf := func(name string, prio int) string {
		return strings.Replace(halbConf(name, 10, prio, "", vip+"/24"), "advert_interval: 100ms", "advert_interval: 1s", 1)
	}
	a := startHelper(t, p.a, conf("a", 150))
	startHelper(t, p.b, conf("b", 100))
	waitEvent(t, a, "vi10", "MASTER", generous(masterDown(iv, 150)))
	waitVIP(t, vip, time.Second, p.a, p.a, p.b)

	if err := p.a.IP("addr", "del", vip+"/24", "dev", "eth0"); err != nil {
		t.Fatal(err)
	}
	took := waitVIP(t, vip, iv, p.a, p.a, p.b)
	t.Logf("the VIP deleted by hand was back in %s", took)
	deadline := time.After(time.Second)
	for {
		select {
		case ev := <-a.events:
			if ev.Notice && ev.Reason == "VIP "+vip+"/24 was removed from eth0 while master; put back" {
				return
			}
		case <-deadline:
			t.Fatal("no event says the VIP was put back")
		}
	}
}
