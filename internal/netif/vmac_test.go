package netif

import (
	"net"
	"testing"
)

// TestEUI64LinkLocal: the link-local address made of a MAC is the
// kernel's (ip link shows it for a fresh interface).
func TestEUI64LinkLocal(t *testing.T) {
	for mac, want := range map[string]string{
		"b2:49:08:0e:18:ed": "fe80::b049:8ff:fe0e:18ed",
		"00:00:5e:00:02:0a": "fe80::200:5eff:fe00:20a",
	} {
		hw, _ := net.ParseMAC(mac)
		got, err := eui64LinkLocal(hw)
		if err != nil || got.String() != want {
			t.Errorf("%s: %s, %v; want %s", mac, got, err, want)
		}
	}
	if _, err := eui64LinkLocal(nil); err == nil {
		t.Error("a link-local address made of no MAC")
	}
}
