package ipvs

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"halb/internal/api"
	"halb/internal/lab/vm"
)

// restoreWithin is how soon halb must put back what was changed by hand:
// its verification period, and time for the reconcile.
const restoreWithin = 5*time.Second + 3*time.Second

// TestGuestHalbRestoresByHand runs halb on the seed's site; an IPVS
// service deleted by hand (ipvsadm -D) and a real server's weight edited
// by hand (ipvsadm -e) are each put back within the verification period,
// and recorded as dataplane_restored events; the established connections
// through IPVS go on answering.
func TestGuestHalbRestoresByHand(t *testing.T) {
	vm.RequireGuest(t)
	bin := os.Getenv("HALB_BINARY")
	if bin == "" {
		t.Fatal("HALB_BINARY is not set (TestVM sets it)")
	}
	l := newDRLab(t, 1)
	lb := l.lbs[0]
	dir, conf := halbSite(t)
	h := startHalb(t, lb, bin, conf, dir)
	waitProgrammed(t, lb)
	saved := ipvsadm(t, lb, "-Sn")
	conns := make(map[string]net.Conn)
	for _, a := range longLived {
		conns[a] = l.connect(t, a)
	}
	mark := regexp.MustCompile(`(?m)^-A -f (\d+) `).FindStringSubmatch(saved)
	if mark == nil {
		t.Fatalf("no firewall-mark service in\n%s", saved)
	}
	for _, tc := range []struct {
		name string
		cmd  []string
	}{
		{"service deleted", []string{"-D", "-f", mark[1]}},
		{"weight edited", []string{"-e", "-f", mark[1], "-r", "198.51.100.11:0", "-g", "-w", "5"}},
	} {
		ipvsadm(t, lb, tc.cmd...)
		if ipvsadm(t, lb, "-Sn") == saved {
			t.Fatalf("%s: ipvsadm %v changed nothing", tc.name, tc.cmd)
		}
		start := time.Now()
		for ipvsadm(t, lb, "-Sn") != saved {
			if time.Since(start) > restoreWithin {
				t.Fatalf("%s: not restored after %s:\n%s\nhalb said:\n%s", tc.name, restoreWithin, ipvsadm(t, lb, "-Sn"), h.out.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Logf("%s (ipvsadm %s): restored after %.2f s", tc.name, strings.Join(tc.cmd, " "), time.Since(start).Seconds())
	}
	for a, c := range conns {
		stillAnswers(t, c, a)
	}

	restored := events(t, dir, "dataplane_restored")
	t.Logf("events: %q", restored)
	want := []string{"ipvs service fwmark " + mark[1] + " ipv4 deleted by another process",
		"real 198.51.100.11:0 of ipvs service fwmark " + mark[1] + " ipv4 changed by another process"}
	if len(restored) != len(want) {
		t.Fatalf("%d dataplane_restored events, want %d", len(restored), len(want))
	}
	for i, w := range want {
		if !strings.Contains(restored[i], w) {
			t.Errorf("event %d: %q, want it to name %q", i, restored[i], w)
		}
	}
	h.stop(t)
}

// TestGuestHalbReloadStorm: twenty SIGHUPs in a row while connections are
// established through IPVS change nothing in the kernel: the services,
// their counters and the connection entries stay, and the connections go
// on answering.
func TestGuestHalbReloadStorm(t *testing.T) {
	vm.RequireGuest(t)
	bin := os.Getenv("HALB_BINARY")
	if bin == "" {
		t.Fatal("HALB_BINARY is not set (TestVM sets it)")
	}
	l := newDRLab(t, 1)
	lb := l.lbs[0]
	dir, conf := halbSite(t)
	h := startHalb(t, lb, bin, conf, dir)
	waitProgrammed(t, lb)
	conns := make(map[string]net.Conn)
	for _, a := range longLived {
		conns[a] = l.connect(t, a)
	}
	reader, err := New(WithNetNS(nsFD(t, lb)), WithStateDir(t.TempDir()), WithProcSys(""))
	must(t, err)
	defer reader.Close()
	time.Sleep(2500 * time.Millisecond) // the kernel folds its counters every 2 s
	saved, counts, entries := ipvsadm(t, lb, "-Sn"), stateCounts(t, reader), connEntries(t, reader)

	for range 20 {
		must(t, h.cmd.Process.Signal(syscall.SIGHUP))
		time.Sleep(50 * time.Millisecond)
	}
	// Signals that come during a reload make one more reload.
	waitFor(t, "the reloads", func() bool { return len(events(t, dir, "reload")) >= 2 })
	time.Sleep(time.Second) // the last reload's reconcile
	t.Logf("20 SIGHUPs made %d reloads", len(events(t, dir, "reload")))
	if after := ipvsadm(t, lb, "-Sn"); after != saved {
		t.Errorf("the reloads changed the kernel:\nbefore\n%s\nafter\n%s\nhalb said:\n%s", saved, after, h.out.String())
	}
	for k, c := range stateCounts(t, reader) {
		if c < counts[k] {
			t.Errorf("%s counted %d connections before the reloads, %d after: recreated", k, counts[k], c)
		}
	}
	after := connEntries(t, reader)
	for _, c := range entries {
		if !found(after, c.Client) {
			t.Errorf("connection entry from %s is gone after the reloads", c.Client)
		}
	}
	for a, c := range conns {
		stillAnswers(t, c, a)
	}
	h.stop(t)
}

// events returns the summaries of halb's events of a kind.
func events(t *testing.T, dir, kind string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	evs, err := api.NewClient(filepath.Join(dir, "halb.sock")).Events(ctx, 0)
	must(t, err)
	var out []string
	for _, e := range evs {
		if e.Kind == kind {
			out = append(out, e.Summary)
		}
	}
	return out
}

func stateCounts(t *testing.T, d *Dataplane) map[string]uint64 {
	t.Helper()
	st, err := d.Status()
	must(t, err)
	counts := map[string]uint64{}
	for _, s := range st {
		counts[s.Key.String()] = s.Connections
	}
	return counts
}

func connEntries(t *testing.T, d *Dataplane) []Conn {
	t.Helper()
	conns, err := d.Conns()
	must(t, err)
	return conns
}
