package netns_test

import (
	"strings"
	"testing"

	"halb/internal/lab/labtest"
	"halb/internal/lab/netns"
)

func TestTwoHostsOnASwitchPingAndCleanUp(t *testing.T) {
	labtest.RequireTool(t, "ping")
	l := labtest.NewLab(t)
	sw, err := l.AddSwitch("sw")
	if err != nil {
		t.Fatal(err)
	}
	a, err := l.AddHost("a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := l.AddHost("b")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Connect(a, sw, "eth0", "192.0.2.1/24", "2001:db8::1/64"); err != nil {
		t.Fatal(err)
	}
	port, err := l.Connect(b, sw, "eth0", "192.0.2.2/24", "2001:db8::2/64")
	if err != nil {
		t.Fatal(err)
	}
	for _, dst := range []string{"192.0.2.2", "2001:db8::2"} {
		if out, err := a.Run("ping", "-c1", "-W2", dst); err != nil {
			t.Fatalf("ping %s: %v\n%s", dst, err, out)
		}
	}
	// Cutting the switch port isolates b.
	if err := sw.IP("link", "set", port, "down"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Run("ping", "-c1", "-W1", "192.0.2.2"); err == nil {
		t.Fatal("ping crossed a switch port that is down")
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	left, err := netns.Leftovers(l.Prefix())
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 0 {
		t.Fatalf("namespaces left after Close: %s", strings.Join(left, ", "))
	}
}
