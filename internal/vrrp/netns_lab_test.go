package vrrp

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"halb/internal/lab/labtest"
)

// TestLabNetNamespace: halb run started outside the lab, with
// net_namespace naming host a's namespace, runs its VRRP instance on
// a's eth0 (an interface only that namespace has) and is elected there.
func TestLabNetNamespace(t *testing.T) {
	labtest.RequireRoot(t)
	p := newPair(t)
	const vip = "192.0.2.100"
	iv := 100 * time.Millisecond
	dir := t.TempDir()
	conf := filepath.Join(dir, "halb.yaml")
	yaml := "net_namespace: " + p.a.Name + "\nstate_dir: " + dir + "\n" + halbConf("a", 10, 150, "", vip+"/24")
	if err := os.WriteFile(conf, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(context.Background(), labtest.HalbBinary(t), "run", "--config", conf, "--dataplane", "none",
		"--socket", filepath.Join(dir, "halb.sock"))
	n := startNode(t, p.a, cmd, conf, false)
	n.waitReady(halbReady)
	startHelper(t, p.b, halbConf("b", 10, 100, "", vip+"/24"))
	waitVIP(t, vip, generous(masterDown(iv, 100)), p.a, p.a, p.b)
}
