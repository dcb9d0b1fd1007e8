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
// on that namespace's interface becomes master there, its VIP appears on
// the interface in that namespace, and nothing appears in the test's own
// namespace. The interface's name is one the test's namespace lacks, so a
// halb that stayed there would fail rather than add the VIP.
func TestRunEntersNetNamespace(t *testing.T) {
	lab := labtest.NewLab(t)
	lb, err := lab.AddHost("lb")
	if err != nil {
		t.Fatal(err)
	}
	const ifname, vip = "halbns0", " 203.0.113.151/24 "
	for _, args := range [][]string{
		{"link", "add", ifname, "type", "veth", "peer", "name", ifname + "p"},
		{"addr", "add", "203.0.113.2/24", "dev", ifname},
		{"link", "set", ifname, "up"},
		{"link", "set", ifname + "p", "up"},
	} {
		if err := lb.IP(args...); err != nil {
			t.Fatal(err)
		}
	}
	ownAddrs := func() string {
		out, err := exec.Command("ip", "-o", "addr", "show").CombinedOutput()
		if err != nil {
			t.Fatalf("ip addr show: %v: %s", err, out)
		}
		return string(out)
	}
	if strings.Contains(ownAddrs(), vip) {
		t.Fatalf("the test's own namespace already carries%s", vip)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	dir := t.TempDir()
	cfgPath, sock := filepath.Join(dir, "halb.yaml"), filepath.Join(dir, "halb.sock")
	os.WriteFile(cfgPath, []byte(fmt.Sprintf(`node: lb-ns
net_namespace: %s
vrrp:
  instances:
    - {name: v1, interface: %s, vrid: 51, priority: 100, advert_interval: 100ms, vips: [203.0.113.151/24]}
`, lb.Name, ifname)), 0o644)
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
		// SIGTERM first, so that halb releases its VIP wherever it is.
		halb.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			halb.Process.Kill()
			<-exited
		}
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "halb.log"))
			t.Logf("halb log:\n%s", b)
		}
	})

	vipOn := func(out []byte) bool { return strings.Contains(string(out), vip) }
	waitFor(t, ctx, "the VIP on "+ifname+" in "+lb.Name, func() bool {
		out, _ := lb.Run("ip", "-o", "addr", "show", "dev", ifname)
		return vipOn(out)
	})
	st, err := api.NewClient(sock).Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.VRRP) != 1 || !strings.EqualFold(st.VRRP[0].State, "master") {
		t.Errorf("status over the socket: %+v, want v1 master", st.VRRP)
	}
	if own := ownAddrs(); strings.Contains(own, vip) {
		t.Errorf("the VIP appeared in the test's own namespace:\n%s", own)
	}
	halb.Process.Signal(syscall.SIGTERM)
	<-exited
	if !halb.ProcessState.Success() {
		t.Errorf("halb after SIGTERM: %v", halb.ProcessState)
	}
	if out, _ := lb.Run("ip", "-o", "addr", "show", "dev", ifname); vipOn(out) {
		t.Errorf("the VIP stayed on %s after halb stopped:\n%s", ifname, out)
	}
}
