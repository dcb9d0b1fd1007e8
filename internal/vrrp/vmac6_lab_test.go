package vrrp

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"halb/internal/event"
	"halb/internal/lab/labtest"
	"halb/internal/lab/netns"
)

// TestLabVMAC6: an IPv6 instance with a virtual MAC, halb against
// keepalived's use_vmac. halb master makes vrrp6.10 with the IPv6
// virtual router MAC 00:00:5e:00:02:0a, holds the VIP there, and its
// adverts leave from that MAC; keepalived stays backup and names halb's
// advert source as its master. With halb's priority lowered below
// keepalived's, keepalived takes over, its adverts leave from the same
// MAC, and halb names keepalived's advert source as the master it yields
// to.
func TestLabVMAC6(t *testing.T) {
	labtest.RequireRoot(t)
	labtest.RequireTool(t, "tcpdump", "keepalived")
	m := modes[1]
	const vmac = "00:00:5e:00:02:0a"
	p := newPair(t)
	c, err := p.lab.AddHost("c")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Run("sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0"); err != nil {
		t.Fatal(err)
	}
	if _, err := p.lab.Connect(c, p.sw, "eth0", "2001:db8::3/64"); err != nil {
		t.Fatal(err)
	}
	halbYAML := func(prio int) string {
		return strings.Replace(m.halbYAML(1, prio, true, ""), "      vips:", "      vmac: true\n      vips:", 1)
	}
	a := startHelper(t, p.a, halbYAML(150))
	dump := startKeepalivedDumping(t, p.b, strings.Replace(m.keepalivedConf(2, 100, true), "  interface eth0\n", "  interface eth0\n  use_vmac\n", 1))
	waitVIP(t, m.vip(), generous(masterDown(m.interval, 150)), p.a, p.a, p.b)
	holdVIP(t, m.vip(), 2*masterDown(m.interval, 100), p.a, p.a, p.b)
	out, err := p.a.Run("ip", "-o", "addr", "show", "dev", "vrrp6.10")
	if err != nil || !strings.Contains(string(out), m.vip()+"/") {
		t.Fatalf("the VIP is not on vrrp6.10: %v: %s", err, out)
	}
	halbSrc := advertSource(t, c, vmac)
	data := dump()
	t.Logf("halb's adverts come from %s %s", vmac, halbSrc)
	for _, want := range []string{"State = BACKUP", "Master router = " + halbSrc + "\n", "Master priority = 150"} {
		if !strings.Contains(data, want) {
			t.Errorf("keepalived's data lacks %q (halb's adverts come from %s):\n%s", want, halbSrc, data)
		}
	}

	// halb now advertises 50: keepalived (100, preempting) takes over.
	if err := os.WriteFile(a.confPath(), []byte(halbYAML(50)), 0o644); err != nil {
		t.Fatal(err)
	}
	a.reload(func() {})
	waitVIP(t, m.vip(), generous(masterDown(m.interval, 100)), p.b, p.a, p.b)
	ev := waitMaster(t, a, "vi", 5*time.Second)
	kSrc := advertSource(t, c, vmac)
	t.Logf("keepalived's adverts come from %s %s; halb: %s", vmac, kSrc, ev.Reason)
	if ev.Master.String() != kSrc {
		t.Errorf("halb yields to master %s (%s); keepalived's adverts come from %s", ev.Master, ev.Reason, kSrc)
	}
	if kSrc == halbSrc {
		t.Errorf("halb and keepalived advertise from the same address %s", kSrc)
	}
	if out, err := p.b.Run("ip", "-o", "link", "show", "vrrp.10"); err != nil || !strings.Contains(string(out), vmac) {
		t.Errorf("keepalived's vrrp.10 lacks %s: %v: %s", vmac, err, out)
	}
}

// TestLabVMAC6HalbPair: two halb nodes with the IPv6 virtual MAC elect
// one master, which keeps the VIP: each node's vrrp6.10 carries the
// link-local address of its own eth0 (not one made from the shared
// virtual MAC), so the adverts leave from the virtual MAC and the
// master's own address.
func TestLabVMAC6HalbPair(t *testing.T) {
	labtest.RequireRoot(t)
	labtest.RequireTool(t, "tcpdump")
	m := modes[1]
	const vmac = "00:00:5e:00:02:0a"
	p := newPair(t)
	c, err := p.lab.AddHost("c")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.lab.Connect(c, p.sw, "eth0", "2001:db8::3/64"); err != nil {
		t.Fatal(err)
	}
	conf := func(host, prio int) string {
		return strings.Replace(m.halbYAML(host, prio, true, ""), "      vips:", "      vmac: true\n      vips:", 1)
	}
	startHelper(t, p.a, conf(1, 150))
	startHelper(t, p.b, conf(2, 100))
	waitVIP(t, m.vip(), generous(masterDown(m.interval, 150)), p.a, p.a, p.b)
	holdVIP(t, m.vip(), 4*masterDown(m.interval, 100), p.a, p.a, p.b)
	for _, h := range []*netns.Host{p.a, p.b} {
		if base, v := linkLocal(t, h, "eth0"), linkLocal(t, h, "vrrp6.10"); base != v {
			t.Errorf("%s: vrrp6.10 has link-local %s, want eth0's %s", h.Name, v, base)
		}
	}
	if src, want := advertSource(t, c, vmac), linkLocal(t, p.a, "eth0"); src != want {
		t.Errorf("adverts from %s, want the master's own %s", src, want)
	}
}

// linkLocal is the one link-local address of h's interface dev.
func linkLocal(t *testing.T, h *netns.Host, dev string) string {
	t.Helper()
	out, err := h.Run("ip", "-6", "-o", "addr", "show", "dev", dev, "scope", "link")
	ms := regexp.MustCompile(`inet6 (fe80::[0-9a-f:]+)/64`).FindAllStringSubmatch(string(out), -1)
	if err != nil || len(ms) != 1 {
		t.Fatalf("%s: link-local addresses of %s: %v: %s", h.Name, dev, err, out)
	}
	return ms[0][1]
}

// advertRE matches an IPv6 advert in tcpdump -e -nn output: source MAC,
// then source address.
var advertRE = regexp.MustCompile(`(?m)^.*?(\S+) > 33:33:00:00:00:12, ethertype IPv6 \(0x86dd\), length \d+: (\S+) > ff02::12:`)

// advertSource captures two VRRP adverts on h's eth0, requires both to
// come from the source MAC mac and one address, and returns that address.
func advertSource(t *testing.T, h *netns.Host, mac string) string {
	t.Helper()
	out, err := h.Run("timeout", "5", "tcpdump", "-i", "eth0", "-e", "-nn", "-c", "2", "ip6 proto 112")
	ms := advertRE.FindAllStringSubmatch(string(out), -1)
	if err != nil || len(ms) != 2 {
		t.Fatalf("adverts on the link: %v:\n%s", err, out)
	}
	for _, m := range ms {
		if m[1] != mac || m[2] != ms[0][2] {
			t.Fatalf("adverts from %s %s, want all from %s and one address:\n%s", m[1], m[2], mac, out)
		}
	}
	return ms[0][2]
}

// waitMaster waits for a helper node's event that the instance is backup
// to a known master.
func waitMaster(t *testing.T, n *node, instance string, within time.Duration) event.VRRP {
	t.Helper()
	deadline := time.After(within)
	for {
		select {
		case ev := <-n.events:
			if ev.Instance == instance && ev.New == "BACKUP" && ev.Master.IsValid() {
				return ev
			}
		case <-deadline:
			t.Fatalf("%s: no BACKUP event naming a master for %s within %s", n.host.Name, instance, within)
		}
	}
}

// startKeepalivedDumping runs keepalived (VRRP only) in host with the
// config, and returns a function that has it write its data dump
// (SIGUSR1) and returns the dump.
func startKeepalivedDumping(t *testing.T, host *netns.Host, conf string) func() string {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "keepalived.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := host.Command(context.Background(), "keepalived", "-n", "-l", "-D", "--vrrp", "-f", path,
		"-p", filepath.Join(dir, "k.pid"), "-r", filepath.Join(dir, "v.pid"))
	cmd.Env = append(os.Environ(), "TMPDIR="+dir)
	n := startNode(t, host, cmd, path, false)
	n.waitReady(keepalivedReady)
	data := filepath.Join(dir, "keepalived.data")
	return func() string {
		t.Helper()
		os.Remove(data)
		if err := syscall.Kill(n.cmd.Process.Pid, syscall.SIGUSR1); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			// keepalived writes the file in one go and closes it; its
			// instance list ends the dump.
			b, err := os.ReadFile(data)
			if err == nil && strings.Contains(string(b), "VRRP Instance") && strings.Contains(string(b), "Virtual Router ID") {
				return string(b)
			}
			if time.Now().After(deadline) {
				t.Fatalf("no keepalived data dump in %s within 5s: %v", data, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}
