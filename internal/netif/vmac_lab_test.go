package netif

import (
	"context"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"halb/internal/lab/labtest"
)

const vmacInNamespace = "HALB_NETIF_VMAC_TEST_IN_NAMESPACE"

// TestLabVMACReports makes virtual MAC interfaces on a's eth0, one of
// each family and another IPv4 one, and joins the VRRP groups on the
// first two: b sees the IGMP and MLDv2 reports come from eth0's MAC, and
// nothing from a virtual MAC. halb's maps name the interfaces; removing
// one leaves the others' entries, removing all leaves no table. The test
// binary re-runs itself inside a's namespace for the part that acts on a.
func TestLabVMACReports(t *testing.T) {
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
	if _, err := a.Run("sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0"); err != nil {
		t.Fatal(err)
	}
	if _, err := lab.Connect(a, sw, "eth0", "192.0.2.1/24", "2001:db8::1/64"); err != nil {
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
	// a's frames only: the lab's bridge sends its own reports.
	capture := b.Command(ctx, "tcpdump", "-i", "eth0", "-e", "-nn", "-v", "-l",
		"ether src "+mac+" or ether src 00:00:5e:00:01:0a or ether src 00:00:5e:00:01:0b or ether src 00:00:5e:00:02:0a")
	capture.Cancel = func() error { return capture.Process.Signal(syscall.SIGINT) }
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
	child := a.Command(ctx, os.Args[0], "-test.run=^TestLabVMACReports$", "-test.v")
	child.Env = append(os.Environ(), vmacInNamespace+"=1")
	if res, err := child.CombinedOutput(); err != nil {
		t.Fatalf("in namespace a: %v\n%s", err, res)
	}
	time.Sleep(200 * time.Millisecond) // tcpdump prints the last frames
	capture.Cancel()
	capture.Wait()
	got := out.String()
	if strings.Contains(got, "00:00:5e:00:0") || !strings.Contains(got, "gaddr 224.0.0.18") || !strings.Contains(got, "gaddr ff02::12") {
		t.Errorf("want the reports for 224.0.0.18 and ff02::12 from %s, nothing from a virtual MAC:\n%s", mac, got)
	}
}

// vmacOnA runs in a's namespace.
func vmacOnA(t *testing.T) {
	parents := func(fam string) string {
		t.Helper()
		out, err := exec.Command("nft", "list", "map", fam, vmacTable, "parents").CombinedOutput()
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
	for name, mac := range map[string]net.HardwareAddr{"vrrp.11": VirtualMAC(11, 4), "vrrp6.10": VirtualMAC(10, 6)} {
		if err := EnsureVMAC("eth0", name, mac); err != nil {
			t.Fatal(err)
		}
	}
	// nft prints the parents as numbers (the library records no byte
	// order for a map's data); the reports b captures show them right.
	for _, fam := range []string{"ip", "ip6"} {
		if m := parents(fam); !strings.Contains(m, `"vrrp.10" : `) || !strings.Contains(m, `"vrrp.11" : `) || !strings.Contains(m, `"vrrp6.10" : `) {
			t.Fatalf("halb's %s map:\n%s", fam, m)
		}
	}
	// Joining sends the reports.
	for _, g := range []struct {
		network, dev string
		group        net.IP
	}{{"udp4", "vrrp.10", net.IPv4(224, 0, 0, 18)}, {"udp6", "vrrp6.10", net.ParseIP("ff02::12")}} {
		ifi, err := net.InterfaceByName(g.dev)
		if err != nil {
			t.Fatal(err)
		}
		c, err := net.ListenMulticastUDP(g.network, ifi, &net.UDPAddr{IP: g.group})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	time.Sleep(2 * time.Second) // the joins' second reports, within a second

	if err := RemoveVMAC("vrrp.10"); err != nil {
		t.Fatal(err)
	}
	for _, fam := range []string{"ip", "ip6"} {
		if m := parents(fam); strings.Contains(m, `"vrrp.10"`) || !strings.Contains(m, `"vrrp.11" : `) {
			t.Fatalf("halb's %s map after vrrp.10 is removed:\n%s", fam, m)
		}
	}
	for _, name := range []string{"vrrp.11", "vrrp6.10", "vrrp6.10"} { // removing one again is not an error
		if err := RemoveVMAC(name); err != nil {
			t.Fatal(err)
		}
	}
	for _, fam := range []string{"ip", "ip6"} {
		if out, err := exec.Command("nft", "list", "table", fam, vmacTable).CombinedOutput(); err == nil {
			t.Fatalf("halb's %s table left:\n%s", fam, out)
		}
	}
}
