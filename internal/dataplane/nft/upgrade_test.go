package nft

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"halb/internal/api"
	"halb/internal/lab/labtest"
	"halb/internal/lab/netns"
)

// TestUpgradeFromPreviousRelease: the previous release's `halb run`
// programs its tables and carries clients; the new halb, started on the
// same configuration, adopts them. It writes again exactly the chains
// whose digest its version computes otherwise (none, and 0 changes, when
// the formats agree), says on its log how many changes it made, and keeps
// the pins, the direct-routing flows and the connections they carry.
func TestUpgradeFromPreviousRelease(t *testing.T) {
	prev := labtest.PreviousHalb(t)
	bin := labtest.HalbBinary(t)

	t.Run("nat with persistence", func(t *testing.T) {
		l := newNATLab(t, 3)
		cfg := writeRunConfig(t, runConfig)
		old := startHalb(t, l.lb, prev, cfg)
		old.waitReconciled(t)
		srcs := l.clients(t, 6)
		cl := newDialer(t, l.client)
		pinned := map[string]string{}
		for _, src := range srcs {
			name, err := cl.hit(src, "203.0.113.10:443")
			if err != nil {
				t.Fatal(err)
			}
			pinned[src] = name
		}
		conn, backend, err := cl.dial("", "203.0.113.10:80")
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		pins := pinCount(t, l)
		if pins != len(srcs) {
			t.Fatalf("%d pins for %d clients before the upgrade", pins, len(srcs))
		}
		cur := upgrade(t, l.lb, old, bin, cfg)
		if got := pinCount(t, l); got != pins {
			t.Errorf("%d pins after the upgrade, want %d", got, pins)
		}
		for src, name := range pinned {
			if got, err := cl.hit(src, "203.0.113.10:443"); err != nil || got != name {
				t.Errorf("client %s pinned to %s went to %q (%v) after the upgrade", src, name, got, err)
			}
		}
		if got, err := echoFrom(conn, "after the upgrade"); err != nil || got != backend {
			t.Errorf("the long-lived connection to %s after the upgrade: %q, %v", backend, got, err)
		}
		// Restarted on a configuration that moves a server to another
		// port, it names the chains it writes again the same way.
		text, err := os.ReadFile(cfg)
		if err != nil {
			t.Fatal(err)
		}
		moved := strings.Replace(string(text), "{address: 198.51.100.23, port: 80}", "{address: 198.51.100.23, port: 8080}", 1)
		if err := os.WriteFile(cfg, []byte(moved), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, s := restart(t, l.lb, cur, bin, cfg); len(s.rewritten) == 0 {
			t.Error("a restart that moves a server to another port wrote no chain again")
		}
	})

	t.Run("direct routing", func(t *testing.T) {
		lab, lb := labHost(t)
		lan, client := drLAN(t, lab)
		if _, err := lab.Connect(lb, lan, "eth0", "192.0.2.2/24", "192.0.2.9/24"); err != nil {
			t.Fatal(err)
		}
		cfg := writeRunConfig(t, drConfig+"state_dir: %[1]s\napi: {socket: %[1]s/halb.sock}\n")
		old := startHalb(t, lb, prev, cfg)
		old.waitReconciled(t)
		cl := newDialer(t, client)
		conns, on := cl.openMany(t, 8, "192.0.2.9:80")
		flows := flowCount(t, lb)
		if flows < len(conns) {
			t.Fatalf("%d flows recorded for %d connections before the upgrade", flows, len(conns))
		}
		upgrade(t, lb, old, bin, cfg)
		if got := flowCount(t, lb); got < flows {
			t.Errorf("%d flows after the upgrade, %d before", got, flows)
		}
		for i, c := range conns {
			if name, err := echoFrom(c, "after the upgrade"); err != nil || name != on[i] {
				t.Errorf("connection %d on %s after the upgrade: %q, %v", i, on[i], name, err)
			}
		}
	})
}

// upgrade stops old and starts bin on the same configuration (restart),
// and checks that the chains it wrote again are exactly those whose
// digest differs: none, and 0 changes, when the formats agree.
func upgrade(t *testing.T, h *netns.Host, old *halbProc, bin, cfg string) *halbProc {
	t.Helper()
	cur, seen := restart(t, h, old, bin, cfg)
	if !slices.Equal(seen.rewritten, seen.migrated) {
		t.Errorf("written again: %v; the chains whose digest changed: %v", seen.rewritten, seen.migrated)
	}
	changed := len(seen.migrated)+len(seen.created)+len(seen.deleted) > 0
	switch {
	case !changed && seen.changes != 0:
		t.Errorf("%d changes on adoption though every chain is as the previous release wrote it (maps or elements?); log:\n%s", seen.changes, cur.log())
	case changed && seen.changes == 0:
		t.Errorf("0 changes on adoption though chains changed: %+v", seen)
	}
	return cur
}

// seen is what a restart did to halb's tables, chains by table.
type seen struct {
	changes int // as logged
	// migrated chains have another digest; rewritten ones new handles.
	migrated, rewritten []string
	created, deleted    []string
}

// restart stops old and starts bin on cfg, and returns what it did to
// the tables, having checked that its log names the chains of its inet
// table it wrote again.
func restart(t *testing.T, h *netns.Host, old *halbProc, bin, cfg string) (*halbProc, seen) {
	t.Helper()
	reader := nsDataplane(t, h)
	before := readParts(t, h, reader)
	old.stop(t)
	cur := startHalb(t, h, bin, cfg)
	t.Cleanup(func() { cur.stop(t) })
	var s seen
	var logged []string
	s.changes, logged = cur.adoption(t)
	s.migrated, s.rewritten, s.created, s.deleted = compareParts(before, readParts(t, h, reader))
	var inTable []string // what the log names: chains of halb's inet table
	for _, name := range s.rewritten {
		if chain, ok := strings.CutPrefix(name, "inet "+DefaultTable+"/"); ok {
			inTable = append(inTable, chain)
		}
	}
	if !slices.Equal(logged, inTable) {
		t.Errorf("the log names %v written again; the kernel shows %v", logged, inTable)
	}
	t.Logf("adoption: %d changes; chains written again %v, created %v, deleted %v", s.changes, s.rewritten, s.created, s.deleted)
	return cur, s
}

// writeRunConfig writes a configuration for `halb run` whose state and
// socket are in a fresh directory (%[1]s in format).
func writeRunConfig(t *testing.T, format string) string {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "halb.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(format, dir)), 0o644); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// halbProc is `halb run` in a namespace, its log kept.
type halbProc struct {
	cmd     *exec.Cmd
	sock    string
	done    chan error
	stopped bool
	mu      sync.Mutex // guards logBuf, written as halb logs
	logBuf  strings.Builder
}

func startHalb(t *testing.T, h *netns.Host, bin, cfg string) *halbProc {
	t.Helper()
	p := &halbProc{sock: filepath.Join(filepath.Dir(cfg), "halb.sock"), done: make(chan error, 1)}
	p.cmd = h.Command(context.Background(), bin, "run", "--config", cfg, "--dataplane", "nftables")
	p.cmd.Stderr = p
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		if !p.stopped { // a test that stopped early
			_ = p.cmd.Process.Kill() // it may have exited
			<-p.done
		}
		if t.Failed() {
			t.Logf("%s's log:\n%s", filepath.Base(bin), p.log())
		}
	})
	return p
}

func (p *halbProc) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logBuf.Write(b)
}

func (p *halbProc) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logBuf.String()
}

// waitReconciled waits for halb's first successful data plane update.
func (p *halbProc) waitReconciled(t *testing.T) {
	t.Helper()
	waitFor(t, 15*time.Second, "halb's first data plane update", func() bool {
		st, err := api.NewClient(p.sock).Status(context.Background())
		return err == nil && !st.LastReconcile.At.IsZero() && st.LastReconcile.Error == ""
	})
}

var adopted = regexp.MustCompile(`nftables: adopted the table found in the kernel.* changes=(\d+)(?: rewritten="?\[([^\]]*)\])?`)

// adoption waits for halb to log its adoption of the table and returns
// the changes it made and the chains it names as written again.
func (p *halbProc) adoption(t *testing.T) (int, []string) {
	t.Helper()
	var m []string
	waitFor(t, 15*time.Second, "halb's adoption of the table on its log", func() bool {
		m = adopted.FindStringSubmatch(p.log())
		return m != nil
	})
	changes, _ := strconv.Atoi(m[1]) // \d+
	return changes, strings.Fields(m[2])
}

// stop ends halb with SIGTERM, as a package upgrade does.
func (p *halbProc) stop(t *testing.T) {
	t.Helper()
	if p.stopped {
		return
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.done:
		p.stopped = true
		if err != nil {
			t.Fatalf("halb run did not exit cleanly on SIGTERM: %v\n%s", err, p.log())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("halb run still running 10 s after SIGTERM")
	}
}

// part is one chain of halb's tables as a restart may find it: the digest
// on its last rule and its rules' handles (new ones when written again).
type part struct{ digest, handles string }

// readParts reads every chain of halb's tables (inet, its counters, and
// netdev for direct routing) that the namespace holds.
func readParts(t *testing.T, h *netns.Host, d *Dataplane) map[string]part {
	t.Helper()
	out := map[string]part{}
	for _, tb := range []struct {
		family string
		nfp    byte
		name   string
	}{{"inet", unix.NFPROTO_INET, DefaultTable}, {"inet", unix.NFPROTO_INET, DefaultTable + countSuffix}, {"netdev", unix.NFPROTO_NETDEV, DefaultTable}} {
		listing, err := h.Run("nft", "-a", "-s", "-t", "list", "table", tb.family, tb.name)
		if err != nil {
			continue // not written by this configuration
		}
		digests, err := d.readDigestsOf(tb.nfp, tb.name)
		if err != nil {
			t.Fatal(err)
		}
		// Chains without a digest of their own (the direct-routing
		// plan's) are written with their table's, carried by its other
		// chains (the plan's ingress chains).
		var own []string
		for _, dg := range digests {
			if dg != "" {
				own = append(own, dg)
			}
		}
		slices.Sort(own)
		table := strings.Join(own, "")
		for chain, handles := range chainHandles(string(listing)) {
			dg := digests[chain]
			if dg == "" {
				dg = "table " + table
			}
			out[tb.family+" "+tb.name+"/"+chain] = part{dg, handles}
		}
	}
	return out
}

// chainHandles returns, per chain of an `nft -a list table` listing, the
// handles of its rules.
func chainHandles(listing string) map[string]string {
	out := map[string]string{}
	chain := ""
	for _, line := range strings.Split(listing, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 2 && f[0] == "chain":
			chain = f[1]
			out[chain] = ""
		case len(f) >= 1 && f[0] == "}":
			chain = ""
		case chain != "" && len(f) >= 2 && f[len(f)-2] == "handle":
			out[chain] += f[len(f)-1] + " "
		}
	}
	return out
}

// compareParts compares the chains of two readings: those in both whose
// digest changed and whose rules were written again, and those only
// after or only before; each sorted.
func compareParts(before, after map[string]part) (migrated, rewritten, created, deleted []string) {
	for name, b := range before {
		a, ok := after[name]
		switch {
		case !ok:
			deleted = append(deleted, name)
			continue
		case a.digest != b.digest:
			migrated = append(migrated, name)
		}
		if a.handles != b.handles {
			rewritten = append(rewritten, name)
		}
	}
	for name := range after {
		if _, ok := before[name]; !ok {
			created = append(created, name)
		}
	}
	for _, l := range [][]string{migrated, rewritten, created, deleted} {
		slices.Sort(l)
	}
	return migrated, rewritten, created, deleted
}
