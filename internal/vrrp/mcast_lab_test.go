package vrrp

import (
	"strings"
	"testing"
	"time"

	"halb/internal/lab/labtest"
)

// TestLabMulticastGroup: halb and keepalived on another multicast group
// (vrrp_mcast_group4) hear each other: the keepalived backup stays
// backup while halb is master, and takes over when halb stops.
func TestLabMulticastGroup(t *testing.T) {
	labtest.RequireRoot(t)
	m := modes[0]
	p := newPair(t)
	a := startHelper(t, p.a, strings.Replace(m.halbYAML(1, 150, true, ""), "vrrp:\n", "vrrp:\n  multicast_group4: 224.0.0.19\n", 1))
	startKeepalived(t, p.b, strings.Replace(m.keepalivedConf(2, 100, true), "global_defs {\n", "global_defs {\n  vrrp_mcast_group4 224.0.0.19\n", 1))
	waitVIP(t, m.vip(), generous(masterDown(m.interval, 150)), p.a, p.a, p.b)
	holdVIP(t, m.vip(), 2*masterDown(m.interval, 100), p.a, p.a, p.b)
	a.term()
	waitVIP(t, m.vip(), generous(m.interval)+time.Second, p.b, p.a, p.b)
}
