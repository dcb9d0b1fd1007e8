package main

import (
	"context"
	"fmt"
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

// TestRunEntersNetNamespace starts the real binary in the test's own
// namespace with net_namespace naming a lab namespace: the VRRP instance
// on that namespace's eth0 becomes master there, its VIP appears on eth0
// in that namespace, and nothing appears in the test's own namespace.
func TestRunEntersNetNamespace(t *testing.T) {
	lab := labtest.NewLab(t)
	sw := labtest.Switch(t, lab, "sw")
	lb := labtest.Join(t, lab, sw, "lb", "192.0.2.2/24")
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	dir := t.TempDir()
	cfgPath, sock := filepath.Join(dir, "halb.yaml"), filepath.Join(dir, "halb.sock")
	os.WriteFile(cfgPath, []byte(fmt.Sprintf(`node: lb-ns
net_namespace: %s
vrrp:
  instances:
    - {name: v1, interface: eth0, vrid: 51, priority: 100, advert_interval: 100ms, vips: [192.0.2.151/24]}
`, lb.Name)), 0o644)
	halb := exec.CommandContext(ctx, labtest.HalbBinary(t), "run", "--config", cfgPath, "--dataplane", "none", "--socket", sock)
	logf, err := os.Create(filepath.Join(dir, "halb.log"))
	if err != nil {
		t.Fatal(err)
	}
	halb.Stdout, halb.Stderr = logf, logf
	if err := halb.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { halb.Wait(); close(exited) }()
	t.Cleanup(func() {
		halb.Process.Kill()
		<-exited
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "halb.log"))
			t.Logf("halb log:\n%s", b)
		}
	})

	vipOn := func(out []byte) bool { return strings.Contains(string(out), " 192.0.2.151/24 ") }
	waitFor(t, ctx, "the VIP on eth0 in "+lb.Name, func() bool {
		out, _ := lb.Run("ip", "-o", "addr", "show", "dev", "eth0")
		return vipOn(out)
	})
	st, err := api.NewClient(sock).Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.VRRP) != 1 || !strings.EqualFold(st.VRRP[0].State, "master") {
		t.Errorf("status over the socket: %+v, want v1 master", st.VRRP)
	}
	own, err := exec.Command("ip", "-o", "addr", "show").CombinedOutput()
	if err != nil {
		t.Fatalf("ip addr show: %v: %s", err, own)
	}
	if vipOn(own) {
		t.Errorf("the VIP appeared in the test's own namespace:\n%s", own)
	}
	halb.Process.Signal(syscall.SIGTERM)
	<-exited
	if !halb.ProcessState.Success() {
		t.Errorf("halb after SIGTERM: %v", halb.ProcessState)
	}
	if out, _ := lb.Run("ip", "-o", "addr", "show", "dev", "eth0"); vipOn(out) {
		t.Errorf("the VIP stayed on eth0 after halb stopped:\n%s", out)
	}
}
