package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"halb/internal/api"
	"halb/internal/lab/labtest"
)

func runCLI(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := dispatch(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestValidateExamples(t *testing.T) {
	files, _ := filepath.Glob("../../examples/*.yaml")
	if len(files) < 4 {
		t.Fatalf("want the example configs, found %v", files)
	}
	code, _, stderr := runCLI(append([]string{"validate"}, files...)...)
	if code != 0 {
		t.Fatalf("halb validate examples: exit %d\n%s", code, stderr)
	}
}

func TestValidateReportsEveryMistake(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte(`node: lb-a
vrrp:
  instances:
    - name: web-a
      interface: eth0
      vrid: 300
      priority: 150
      vips: [192.0.2.9/24, 2001:db8::9/64]
services:
  - name: http
    vips: [192.0.2.9]
    ports: [80, "8000-8100"]
    scheduler: fastest
    pool: web
    persistance: {timeout: 300s}
`), 0o644)
	code, _, stderr := runCLI("validate", bad)
	if code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	want := []string{
		bad + ":6:13: vrrp.instances[0].vrid: 300 is not from 1 to 255",
		bad + ":8:28: vrrp.instances[0].vips[1]: 2001:db8::9/64 mixes IPv4 and IPv6",
		bad + ":12:17: services[0].ports[1]: the range 8000-8100 needs a mark",
		bad + `:13:16: services[0].scheduler: "fastest" is not one of`,
		bad + `:14:11: services[0].pool: no pool named "web"`,
		bad + `:15:5: services[0]: unknown key "persistance"; did you mean "persistence"?`,
	}
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	if len(lines) != len(want) {
		t.Fatalf("want %d located errors, got:\n%s", len(want), stderr)
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("line %d: got %q, want prefix %q", i+1, lines[i], w)
		}
	}
}

func TestValidateMisuse(t *testing.T) {
	if code, _, _ := runCLI("validate"); code != 2 {
		t.Fatalf("validate without files: exit %d, want 2", code)
	}
	if code, _, _ := runCLI("frobnicate"); code != 2 {
		t.Fatalf("unknown command: exit %d, want 2", code)
	}
}

func TestValidateWarningsExitZero(t *testing.T) {
	f := filepath.Join(t.TempDir(), "warn.yaml")
	os.WriteFile(f, []byte(`node: a
vrrp:
  instances: [{name: a, interface: eth0, vrid: 1, priority: 100, vips: [192.0.2.1/24]}]
services: [{name: s, vips: [192.0.2.2], ports: [80], pool: p}]
pools: {p: {servers: [{address: 198.51.100.1}]}}
`), 0o644)
	code, _, stderr := runCLI("validate", f)
	if code != 0 || !strings.Contains(stderr, f+":4:29: warning: services[0].vips[0]: no VRRP instance carries VIP 192.0.2.2") {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr)
	}
}

func TestStatusNamesTheSocketItCannotReach(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "none.sock")
	code, _, stderr := runCLI("status", "--socket", sock)
	if code != 1 || !strings.Contains(stderr, sock) {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
}

// TestRunWithoutRootDryRun runs the real binary as an unprivileged user
// with the dry-run data plane and no VRRP, reads its status over the
// socket, refuses a bad reload, applies a good one, and stops it.
func TestRunWithoutRootDryRun(t *testing.T) {
	labtest.RequireRoot(t) // to switch to an unprivileged user
	bin := labtest.HalbBinary(t)
	dir, err := os.MkdirTemp("", "halb-run-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	os.Chmod(filepath.Dir(bin), 0o755)
	if err := os.Chown(dir, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "halb.yaml")
	good := `node: lb-dry
services:
  - {name: web, vips: [203.0.113.10], ports: [80], forward: nat, pool: web}
pools:
  web:
    servers: [{address: 198.51.100.21, weight: 1}, {address: 198.51.100.22, weight: 1}]
`
	os.WriteFile(cfgPath, []byte(good), 0o644)
	sock := filepath.Join(dir, "halb.sock")
	var stderr bytes.Buffer
	cmd := exec.Command(bin, "run", "--config", cfgPath, "--dataplane", "none", "--socket", sock)
	cmd.Stderr = &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	client := api.NewClient(sock)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var st api.Status
	for {
		if st, err = client.Status(ctx); err == nil {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no status: %v\n%s", err, stderr.String())
		case err := <-exited:
			t.Fatalf("halb run exited early (%v):\n%s", err, stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	raw, _ := json.Marshal(st)
	for _, key := range []string{`"vrrp":[]`, `"node":"lb-dry"`, `"port":80`, `"mark":0`, `"healthy":true`} {
		if !strings.Contains(string(raw), key) {
			t.Errorf("status JSON lacks %s: %s", key, raw)
		}
	}
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode: %v %v", fi.Mode(), err)
	}

	// A bad configuration is refused; the running one stays.
	os.WriteFile(cfgPath, []byte(strings.Replace(good, "weight: 1}, {", "weight: -3}, {", 1)), 0o644)
	cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, ctx, "refused reload in events", func() bool {
		evs, _ := client.Events(ctx, 0)
		return len(evs) > 0 && strings.Contains(evs[len(evs)-1].Summary, "refused")
	})
	// A good one is applied.
	os.WriteFile(cfgPath, []byte(strings.Replace(good, "weight: 1}, {", "weight: 4}, {", 1)), 0o644)
	cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, ctx, "new weight in status", func() bool {
		st, err := client.Status(ctx)
		return err == nil && st.Services[0].Servers[0].Weight == 4
	})

	cmd.Process.Signal(syscall.SIGTERM)
	if err := <-exited; err != nil {
		t.Fatalf("halb run exited with %v\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "dry run: + real tcp 203.0.113.10:80 -> 198.51.100.22:80 weight 1 nat") {
		t.Errorf("the dry run did not log its plan:\n%s", stderr.String())
	}
	if !strings.Contains(stderr.String(), "weight 4 nat (was weight 1 nat)") {
		t.Errorf("the reload did not log its one change:\n%s", stderr.String())
	}
}

func waitFor(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		if ctx.Err() != nil {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestValidateConfigID: --config-id picks a keepalived.conf's @ lines,
// so that one file serves both nodes.
func TestValidateConfigID(t *testing.T) {
	f := filepath.Join(t.TempDir(), "keepalived.conf")
	os.WriteFile(f, []byte(`vrrp_instance web {
    interface eth0
    virtual_router_id 9
    @lb-a priority 150
    @lb-b priority 100
    @broken priority 300
    virtual_ipaddress {
        192.0.2.9/24
    }
}
`), 0o644)
	for _, id := range []string{"lb-a", "lb-b"} {
		if code, _, stderr := runCLI("validate", "--config-id", id, f); code != 0 || strings.Contains(stderr, "300") {
			t.Errorf("--config-id %s: exit %d, stderr:\n%s", id, code, stderr)
		}
	}
	// keepalived runs with its default priority, 100: a warning.
	code, _, stderr := runCLI("validate", "--config-id", "broken", f)
	if code != 0 || !strings.Contains(stderr, f+":6:22: warning: ") || !strings.Contains(stderr, "300") {
		t.Errorf("--config-id broken: exit %d, stderr:\n%s", code, stderr)
	}
}
