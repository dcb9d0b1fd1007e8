package vrrp

import (
	"strings"
	"testing"

	"halb/internal/lab/labtest"
)

// TestLabVMAC: halb master and keepalived backup, both with use_vmac:
// halb makes vrrp.10 with the virtual MAC 00:00:5e:00:01:0a and holds
// the VIP there (and no link-local address made of that MAC), keepalived
// hears its adverts (sent from vrrp.10) and stays backup, and a client
// resolves the VIP to the virtual MAC and sees the adverts come from it.
func TestLabVMAC(t *testing.T) {
	labtest.RequireRoot(t)
	labtest.RequireTool(t, "tcpdump")
	m := modes[0]
	p := newPair(t)
	c, err := p.lab.AddHost("c")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.lab.Connect(c, p.sw, "eth0", "192.0.2.3/24"); err != nil {
		t.Fatal(err)
	}
	startHelper(t, p.a, strings.Replace(m.halbYAML(1, 150, true, ""), "      vips:", "      vmac: true\n      vips:", 1))
	startKeepalived(t, p.b, strings.Replace(m.keepalivedConf(2, 100, true), "  interface eth0\n", "  interface eth0\n  use_vmac\n", 1))
	waitVIP(t, m.vip(), generous(masterDown(m.interval, 150)), p.a, p.a, p.b)
	holdVIP(t, m.vip(), 2*masterDown(m.interval, 100), p.a, p.a, p.b)
	out, err := p.a.Run("ip", "-o", "addr", "show", "dev", "vrrp.10")
	if err != nil || !strings.Contains(string(out), m.vip()+"/") {
		t.Fatalf("the VIP is not on vrrp.10: %v: %s", err, out)
	}
	// No link-local address made of the virtual MAC, which the peer's
	// interface would have too.
	if out, err := p.a.Run("ip", "-6", "-o", "addr", "show", "dev", "vrrp.10"); err != nil || strings.Contains(string(out), "fe80:") {
		t.Errorf("vrrp.10 has an IPv6 link-local address: %v: %s", err, out)
	}
	if out, err := c.Run("ping", "-c1", "-W1", m.vip()); err != nil {
		t.Fatalf("ping %s: %v: %s", m.vip(), err, out)
	}
	waitNeigh(t, c, m.vip(), "00:00:5e:00:01:0a", 0)
	// The adverts come from the virtual MAC.
	out, err = c.Run("timeout", "5", "tcpdump", "-i", "eth0", "-e", "-nn", "-c", "2", "ip proto 112")
	if err != nil || strings.Count(string(out), "00:00:5e:00:01:0a > 01:00:5e:00:00:12") != 2 {
		t.Errorf("adverts on the link: %v:\n%s", err, out)
	}
}
