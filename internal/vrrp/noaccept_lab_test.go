package vrrp

import (
	"testing"
	"time"

	"halb/internal/lab/labtest"
)

// TestLabNoAccept: the master of an instance with no_accept holds the
// VIP but drops packets to it; its own address still answers. Stopped,
// it removes the rule.
func TestLabNoAccept(t *testing.T) {
	labtest.RequireRoot(t)
	p := newPair(t)
	const vip = "192.0.2.100"
	iv := 100 * time.Millisecond
	a := startHelper(t, p.a, halbConf("a", 10, 150, "      no_accept: true\n", vip+"/24"))
	waitVIP(t, vip, generous(masterDown(iv, 150)), p.a, p.a, p.b)
	if out, err := p.b.Run("ping", "-c1", "-W1", "192.0.2.1"); err != nil {
		t.Fatalf("ping a's own address: %v: %s", err, out)
	}
	if out, err := p.b.Run("ping", "-c1", "-W1", vip); err == nil {
		t.Fatalf("the VIP answered a ping: %s", out)
	}
	a.term()
	if out, err := p.a.Run("nft", "list", "table", "inet", "halb_vrrp"); err == nil {
		t.Errorf("the no_accept table is left after stop:\n%s", out)
	}
}
