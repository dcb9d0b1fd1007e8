package vrrp

import (
	"strings"
	"testing"
	"time"

	"halb/internal/lab/labtest"
	"halb/internal/lab/netns"
)

// partition drops VRRP (protocol 112) arriving at each host, or lets it
// through again.
func partition(t *testing.T, on bool, hosts ...*netns.Host) {
	t.Helper()
	for _, h := range hosts {
		args := []string{"delete", "table", "ip", "halbsplit"}
		if on {
			args = []string{"-f", "-"}
		}
		cmd := h.Command(t.Context(), "nft", args...)
		if on {
			cmd.Stdin = strings.NewReader("table ip halbsplit {\n chain in {\n  type filter hook input priority 0;\n  ip protocol 112 drop\n }\n}\n")
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("nft %v in %s: %v: %s", args, h.Name, err, out)
		}
	}
}

// macOf is the MAC address of host's eth0.
func macOf(t *testing.T, h *netns.Host) string {
	t.Helper()
	out, err := h.Run("cat", "/sys/class/net/eth0/address")
	if err != nil {
		t.Fatalf("%s: %v", h.Name, err)
	}
	return strings.TrimSpace(string(out))
}

// waitNeigh waits until host's neighbour entry for addr has the MAC.
func waitNeigh(t *testing.T, h *netns.Host, addr, mac string, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		out, _ := h.Run("ip", "neigh", "show", addr, "dev", "eth0")
		if strings.Contains(string(out), "lladdr "+mac) {
			return time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("%s: neighbour %s is %q after %s, want lladdr %s", h.Name, addr, strings.TrimSpace(string(out)), within, mac)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestLabSplitBrainHeal: two halb nodes cut off from each other's
// adverts both become master, and a client follows the last gratuitous
// ARP, the lower-priority node's. When the cut heals, the higher
// priority node hears the other master, stays master and announces its
// VIPs again: the client's neighbour entry points at it again at once
// (without that, the entry would keep the loser's MAC until it goes
// stale); the other node goes back to backup.
func TestLabSplitBrainHeal(t *testing.T) {
	labtest.RequireRoot(t)
	labtest.RequireTool(t, "nft")
	p := newPair(t)
	c, err := p.lab.AddHost("c")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.lab.Connect(c, p.sw, "eth0", "192.0.2.3/24"); err != nil {
		t.Fatal(err)
	}
	// Let every gratuitous ARP replace the entry at once.
	if out, err := c.Run("sysctl", "-qw", "net.ipv4.neigh.eth0.locktime=0"); err != nil {
		t.Fatalf("sysctl: %v: %s", err, out)
	}
	const vip = "192.0.2.100"
	iv := 100 * time.Millisecond
	a := startHelper(t, p.a, halbConf("a", 10, 150, "", vip+"/24"))
	b := startHelper(t, p.b, halbConf("b", 10, 100, "", vip+"/24"))
	waitVIP(t, vip, generous(masterDown(iv, 100)), p.a, p.a, p.b)
	waitEvent(t, b, "vi10", "BACKUP", time.Second)
	if out, err := c.Run("ping", "-c1", "-W1", vip); err != nil {
		t.Fatalf("ping %s: %v: %s", vip, err, out)
	}
	macA, macB := macOf(t, p.a), macOf(t, p.b)
	waitNeigh(t, c, vip, macA, time.Second)

	partition(t, true, p.a, p.b)
	waitEvent(t, b, "vi10", "MASTER", generous(masterDown(iv, 100)))
	if !hasAddr(t, p.a, vip) {
		t.Fatal("a lost the VIP during the split")
	}
	waitNeigh(t, c, vip, macB, time.Second)

	// a hears b first (had b heard a first, b would have gone quiet and
	// a heard no lower-priority master: keepalived's garp_lower_prio
	// has the same limit).
	partition(t, false, p.a)
	took := waitNeigh(t, c, vip, macA, 5*iv)
	t.Logf("after the heal, the client's entry points at the winner in %s", took)
	partition(t, false, p.b)
	waitEvent(t, b, "vi10", "BACKUP", time.Second)
	waitVIP(t, vip, time.Second, p.a, p.a, p.b)
	waitNeigh(t, c, vip, macA, 0)
	if !strings.Contains(a.logs.String(), "lower priority master heard") {
		t.Error("a did not log the lower priority master")
	}
}
