package nft

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"halb/internal/lab/labtest"
)

const runConfig = `
node: lb
state_dir: %[1]s
services:
  - {name: web, protocol: tcp, vips: [203.0.113.10], ports: [80], mark: none, forward: nat, pool: web}
  - {name: tls, protocol: tcp, vips: [203.0.113.10], ports: [443], mark: shared, forward: nat, pool: web,
     persistence: {timeout: 60s}}
pools:
  web:
    check: {type: tcp, port: 80, interval: 300ms, timeout: 200ms, rise: 1, fall: 1}
    servers:
      - {address: 198.51.100.21, port: 80}
      - {address: 198.51.100.22, port: 80}
      - {address: 198.51.100.23, port: 80}
api: {socket: %[1]s/halb.sock}
`

// TestHalbRunBalances runs the real daemon with dataplane auto (on a
// kernel without IPVS: nftables) in the LB namespace: it balances, marks,
// stops sending new connections to a server whose health check fails and
// takes it back when it recovers, and on SIGTERM exits leaving its table
// in place (remove_on_shutdown is off).
func TestHalbRunBalances(t *testing.T) {
	bin := labtest.HalbBinary(t)
	l := newNATLab(t, 3)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "halb.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(runConfig, dir)), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := l.lb.Command(ctx, bin, "run", "--config", cfg, "--dataplane", "auto")
	var logs strings.Builder
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if t.Failed() {
			out, _ := l.lb.Run("nft", "list", "ruleset")
			t.Logf("halb log:\n%s\nruleset:\n%s", logs.String(), out)
		}
	}()
	waitFor(t, 10*time.Second, "halb's table", func() bool {
		out, err := l.lb.Run("nft", "list", "chain", "inet", DefaultTable, "balance")
		return err == nil && strings.Contains(string(out), "vmap")
	})
	cl := newDialer(t, l.client)
	// spread opens n connections and counts them by backend ("error" for
	// those that failed).
	spread := func(n int, port string) map[string]int {
		count := map[string]int{}
		for range n {
			name, err := cl.hit("", "203.0.113.10:"+port)
			if err != nil {
				name = "error"
			}
			count[name]++
		}
		return count
	}
	waitFor(t, 10*time.Second, "all three servers taking connections", func() bool {
		c := spread(60, "80")
		return len(c) == 3 && c["error"] == 0
	})

	// Backend 3 stops listening on 80: until its check fails (fall 1 at a
	// 300ms interval) connections to it are refused; then it gets none.
	l.stopServer("198.51.100.23:80")
	waitFor(t, 2*(300+200)*time.Millisecond+time.Second, "198.51.100.23 taken out", func() bool {
		c := spread(10, "80")
		return c["error"] == 0 && c["198.51.100.23"] == 0
	})
	if c := spread(200, "80"); c["198.51.100.23"] > 0 || c["error"] > 0 {
		t.Errorf("after the failure, 200 new connections went %v; want none to 198.51.100.23 and no error", c)
	}
	// The persistent mark service keeps the client on one server, on port 80.
	if c := spread(20, "443"); len(c) != 1 || c["error"] > 0 {
		t.Errorf("one client's connections to the persistent service went to %v, want one server", c)
	}
	l.restartServer(t, "198.51.100.23:80")
	waitFor(t, 2*(300+200)*time.Millisecond+time.Second, "198.51.100.23 back", func() bool { return spread(30, "80")["198.51.100.23"] > 0 })

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("halb run did not exit cleanly on SIGTERM: %v", err)
	}
	if out, err := l.lb.Run("nft", "list", "table", "inet", DefaultTable); err != nil {
		t.Errorf("the table is gone after shutdown (remove_on_shutdown is off): %v %s", err, out)
	}
}

func waitFor(t testing.TB, limit time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, limit)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestHalbRunRestartChangesNothing: the real daemon stopped and started
// again with the same configuration finds its table as it left it: its
// status reports 0 changes for the first reconcile, and a client pinned
// by persistence stays on its server across the restart.
func TestHalbRunRestartChangesNothing(t *testing.T) {
	bin := labtest.HalbBinary(t)
	l := newNATLab(t, 3)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "halb.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(runConfig, dir)), 0o644); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "halb.sock")
	cl := newDialer(t, l.client)
	var pinned string
	for run := range 2 {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		cmd := l.lb.Command(ctx, bin, "run", "--config", cfg, "--dataplane", "nftables")
		var logs strings.Builder
		cmd.Stderr = &logs
		if err := cmd.Start(); err != nil {
			cancel()
			t.Fatal(err)
		}
		var changes int
		waitFor(t, 15*time.Second, "a reconcile in the status", func() bool {
			out, err := l.lb.Run(bin, "status", "--json", "--socket", sock)
			if err != nil {
				return false
			}
			var st struct {
				LastReconcile struct {
					At      string `json:"at"`
					Changes int    `json:"changes"`
				} `json:"last_reconcile"`
			}
			if json.Unmarshal(out, &st) != nil || st.LastReconcile.At == "" {
				return false
			}
			changes = st.LastReconcile.Changes
			return true
		})
		if run == 1 && changes != 0 {
			t.Errorf("the restart reports %d changes, want 0; log:\n%s", changes, logs.String())
		}
		name := ""
		waitFor(t, 10*time.Second, "the persistent service answering", func() bool {
			var err error
			name, err = cl.hit("", "203.0.113.10:443")
			return err == nil
		})
		if run == 0 {
			pinned = name
		} else if name != pinned {
			t.Errorf("the client pinned to %s went to %s after the restart", pinned, name)
		}
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if err := cmd.Wait(); err != nil {
			t.Fatalf("halb run did not exit cleanly on SIGTERM: %v\n%s", err, logs.String())
		}
		cancel()
	}
}
