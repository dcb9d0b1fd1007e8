package netif

import (
	"context"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"halb/internal/lab/labtest"
)

const vmacInNamespace = "HALB_NETIF_VMAC_TEST_IN_NAMESPACE"

// TestLabVMACIGMP makes two virtual MAC interfaces on a's eth0 and joins
// the VRRP group on one: b sees the IGMP reports come from eth0's MAC,
// none from the virtual MAC. halb's map names both interfaces; removing
// one leaves the other's entry, removing both leaves no table. The test
// binary re-runs itself inside a's namespace for the part that acts on a.
func TestLabVMACIGMP(t *testing.T) {
	if os.Getenv(vmacInNamespace) != "" {
		vmacOnA(t)
		return
	}
	labtest.RequireRoot(t)
	labtest.RequireTool(t, "tcpdump", "nft")
	lab := labtest.NewLab(t)
	sw, err := lab.AddSwitch("sw")
	if err != nil {
		t.Fatal(err)
	}
	a, err := lab.AddHost("a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := lab.AddHost("b")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lab.Connect(a, sw, "eth0", "192.0.2.1/24"); err != nil {
		t.Fatal(err)
	}
	if _, err := lab.Connect(b, sw, "eth0", "192.0.2.2/24"); err != nil {
		t.Fatal(err)
	}
	link, err := a.Run("cat", "/sys/class/net/eth0/address")
	if err != nil {
		t.Fatal(err)
	}
	mac := strings.TrimSpace(string(link))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// a's reports only: the lab's bridge sends its own.
	capture := b.Command(ctx, "tcpdump", "-i", "eth0", "-e", "-nn", "-v", "-l", "-c", "2",
		"igmp and (ether src "+mac+" or ether src 00:00:5e:00:01:0a)")
	var out strings.Builder
	capture.Stdout = &out
	said := newSayWatch("listening on")
	capture.Stderr = said
	if err := capture.Start(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-said.seen:
	case <-time.After(10 * time.Second):
		t.Fatalf("tcpdump is not listening after 10s: %s", said)
	}
	child := a.Command(ctx, os.Args[0], "-test.run=^TestLabVMACIGMP$", "-test.v")
	child.Env = append(os.Environ(), vmacInNamespace+"=1")
	if res, err := child.CombinedOutput(); err != nil {
		t.Fatalf("in namespace a: %v\n%s", err, res)
	}
	if err := capture.Wait(); err != nil {
		t.Fatalf("capture: %v: %s", err, out.String())
	}
	got := out.String()
	if strings.Count(got, mac+" > 01:00:5e:00:00:16") != 2 || !strings.Contains(got, "gaddr 224.0.0.18") || strings.Contains(got, "00:00:5e:00:01:0a >") {
		t.Errorf("want two IGMP reports for 224.0.0.18 from %s, none from the virtual MAC:\n%s", mac, got)
	}
}

// vmacOnA runs in a's namespace.
func vmacOnA(t *testing.T) {
	parents := func() string {
		t.Helper()
		out, err := exec.Command("nft", "list", "map", "ip", vmacTable, "parents").CombinedOutput()
		if err != nil {
			return ""
		}
		return string(out)
	}
	for range 2 { // making it again is not an error
		if err := EnsureVMAC("eth0", "vrrp.10", VirtualMAC(10, 4)); err != nil {
			t.Fatal(err)
		}
	}
	if err := EnsureVMAC("eth0", "vrrp.11", VirtualMAC(11, 4)); err != nil {
		t.Fatal(err)
	}
	// nft prints the parents as numbers (the library records no byte
	// order for a map's data); the reports b captures show them right.
	if m := parents(); !strings.Contains(m, `"vrrp.10" : `) || !strings.Contains(m, `"vrrp.11" : `) {
		t.Fatalf("halb's map:\n%s", m)
	}
	ifi, err := net.InterfaceByName("vrrp.10")
	if err != nil {
		t.Fatal(err)
	}
	// Joining sends the reports; b captures two.
	c, err := net.ListenMulticastUDP("udp4", ifi, &net.UDPAddr{IP: net.IPv4(224, 0, 0, 18)})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second) // the join's second report, within a second
	c.Close()

	if err := RemoveVMAC("vrrp.10"); err != nil {
		t.Fatal(err)
	}
	if m := parents(); strings.Contains(m, "vrrp.10") || !strings.Contains(m, `"vrrp.11" : `) {
		t.Fatalf("halb's map after vrrp.10 is removed:\n%s", m)
	}
	for range 2 { // removing it again is not an error
		if err := RemoveVMAC("vrrp.11"); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := exec.Command("nft", "list", "table", "ip", vmacTable).CombinedOutput(); err == nil {
		t.Fatalf("halb's table left:\n%s", out)
	}
}
