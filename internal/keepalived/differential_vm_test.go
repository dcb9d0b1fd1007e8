package keepalived

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"halb/internal/config"
	"halb/internal/dataplane"
	"halb/internal/dataplane/ipvs"
	"halb/internal/engine"
	"halb/internal/lab/labtest"
	"halb/internal/lab/netns"
	"halb/internal/lab/vm"
)

// TestVM boots the IPVS VM once and runs this package's TestGuest* tests
// in it.
func TestVM(t *testing.T) {
	vm.RunTests(t, "^TestGuest")
}

// knownIPVSDifferences are the corpus files whose kernel state differs
// from keepalived's in a documented way, and why.
var knownIPVSDifferences = map[string]string{}

// TestGuestIPVSSameAsKeepalived loads each corpus configuration that has
// virtual servers and converts without errors, first with keepalived's
// checker and then with halb, in a fresh network namespace of the IPVS
// VM, and compares the kernel's IPVS tables (ipvsadm -Sn). keepalived's
// table is taken as soon as it is complete, before its first health
// checks can fail (the real servers do not exist), which is the state
// halb installs before its own checks have run.
func TestGuestIPVSSameAsKeepalived(t *testing.T) {
	vm.RequireGuest(t)
	labtest.RequireTool(t, "keepalived", "ipvsadm")
	ran := 0
	for _, f := range corpus(t) {
		if !differentialFiles[f.name] {
			continue
		}
		cfg, diags := Load(f.path, Options{ConfigID: f.id}, config.Options{Hostname: "h"})
		if cfg == nil {
			t.Errorf("%s does not load:\n%s", f.name, diags)
			continue
		}
		ran++
		t.Run(f.name, func(t *testing.T) {
			lab := labtest.NewLab(t)
			h, err := lab.AddHost("lb")
			if err != nil {
				t.Fatal(err)
			}
			routable(t, h)
			st := engine.Desired(engine.Inputs{Config: cfg}).State
			want := keepalivedIPVS(t, h, f, len(st.Services)+countReals(st))
			got := halbIPVS(t, h, cfg)
			if got != want {
				if why, ok := knownIPVSDifferences[f.name]; ok {
					t.Logf("differs, as documented (%s):\nkeepalived:\n%s\nhalb:\n%s", why, want, got)
					return
				}
				t.Errorf("IPVS differs\nkeepalived:\n%s\nhalb:\n%s\nconversion diagnostics:\n%s", want, got, diags)
			}
		})
	}
	if ran != len(differentialFiles) {
		t.Errorf("%d of the %d files compared", ran, len(differentialFiles))
	}
}

// differentialFiles are the corpus files compared on the kernel: every
// kind of virtual server (address, fwmark, group with ranges and marks),
// both families, every forwarding method, persistence, scheduler flags,
// NAT port mapping, UDP, alpha. (Each costs 10-30 s in the emulated VM.)
var differentialFiles = map[string]bool{
	"samples/keepalived.conf.virtual_server_group": true,
	"corpus/dns-nat.conf":                          true,
	"corpus/ipv6-dual.conf":                        true,
	"corpus/templated.conf":                        true,
	"examples/lb-a":                                true,
	"corpus/per-server.conf":                       true,
}

func countReals(st dataplane.State) int {
	n := 0
	for _, s := range st.Services {
		n += len(s.Reals)
	}
	return n
}

// routable makes every address routable from the namespace, which IPVS
// wants of real servers, without any of them answering.
func routable(t *testing.T, h *netns.Host) {
	t.Helper()
	for _, args := range [][]string{
		{"link", "set", "lo", "up"},
		{"link", "add", "dummy0", "type", "dummy"},
		{"link", "set", "dummy0", "up"},
		{"addr", "add", "192.0.2.254/32", "dev", "dummy0"},
		{"route", "add", "default", "dev", "dummy0"},
		{"-6", "addr", "add", "2001:db8:ffff::fe/128", "dev", "dummy0", "nodad"},
		{"-6", "route", "add", "default", "dev", "dummy0"},
	} {
		if err := h.IP(args...); err != nil {
			t.Fatal(err)
		}
	}
}

// keepalivedIPVS runs keepalived's checker on the file and returns its
// IPVS table as soon as it has lines lines (services and real servers):
// keepalived installs them all at start, before any check has run.
func keepalivedIPVS(t *testing.T, h *netns.Host, f corpusFile, lines int) string {
	t.Helper()
	dir := t.TempDir()
	path, err := filepath.Abs(f.path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := h.Command(ctx, "keepalived", "--dont-fork", "--log-console", "--check", "--use-file", path,
		"--config-id", f.id, "--pid", filepath.Join(dir, "k.pid"), "--checkers_pid", filepath.Join(dir, "c.pid"))
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("keepalived: %v", err)
	}
	// keepalived's checker child follows its parent's death; what they
	// installed goes with the namespace.
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	var table string
	// The guest has one CPU: poll gently, keepalived needs it.
	for deadline := time.Now().Add(40 * time.Second); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
		table = ipvsSave(t, h)
		if table != "" && strings.Count(table, "\n")+1 >= lines {
			return table
		}
	}
	t.Fatalf("keepalived did not install the %d IPVS lines halb derives in 40 s; it has:\n%s\nkeepalived's log:\n%s", lines, table, out.String())
	return ""
}

// halbIPVS installs what halb derives from the configuration before any
// health check has run, and returns the kernel's table.
func halbIPVS(t *testing.T, h *netns.Host, cfg *config.Config) string {
	t.Helper()
	ns, err := os.Open(filepath.Join("/run/netns", h.Name))
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	dp, err := ipvs.New(ipvs.WithNetNS(int(ns.Fd())), ipvs.WithStateDir(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	defer dp.Close()
	ev := engine.Desired(engine.Inputs{Config: cfg})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := dp.Reconcile(ctx, ev.State); err != nil {
		t.Fatalf("halb's IPVS data plane: %v", err)
	}
	return ipvsSave(t, h)
}

// ipvsSave returns "ipvsadm -Sn" and the real servers' connection
// thresholds (which -S leaves out) of "ipvsadm -Ln --thresholds", sorted
// so that order does not matter.
func ipvsSave(t *testing.T, h *netns.Host) string {
	t.Helper()
	out, err := h.Run("ipvsadm", "-Sn")
	if err != nil {
		t.Fatalf("ipvsadm -Sn: %v: %s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	thresholds, err := h.Run("ipvsadm", "-Ln", "--thresholds")
	if err != nil {
		t.Fatalf("ipvsadm -Ln --thresholds: %v: %s", err, thresholds)
	}
	for _, l := range strings.Split(string(thresholds), "\n") {
		// "-> ADDR:PORT UTHRESHOLD LTHRESHOLD ACTIVECONN INACTCONN"
		if f := strings.Fields(l); len(f) >= 4 && f[0] == "->" && f[1] != "RemoteAddress:Port" && (f[2] != "0" || f[3] != "0") {
			lines = append(lines, fmt.Sprintf("thresholds %s upper %s lower %s", f[1], f[2], f[3]))
		}
	}
	slices.Sort(lines)
	return strings.TrimSpace(strings.Join(lines, "\n"))
}
