package vrrp

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"halb/internal/lab/labtest"
)

// TestLabTrackProcess: the master tracks a process (found in /proc by
// name); when it ends, the master goes to FAULT and the backup takes the
// VIP; when it runs again, the master takes the VIP back.
func TestLabTrackProcess(t *testing.T) {
	labtest.RequireRoot(t)
	name := fmt.Sprintf("halbtrk%d", os.Getpid()%100000)
	prog := filepath.Join(t.TempDir(), name)
	if err := os.Symlink("/bin/sleep", prog); err != nil {
		t.Fatal(err)
	}
	run := func() *exec.Cmd {
		cmd := exec.CommandContext(context.Background(), prog, "1000")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		return cmd
	}
	p := newPair(t)
	const vip = "192.0.2.100"
	iv := 100 * time.Millisecond
	track := fmt.Sprintf("      track_processes: [web]\n  processes:\n    - {name: web, command: %s, interval: 200ms}\n", name)
	cmd := run()
	startHelper(t, p.a, halbConf("a", 10, 150, track, vip+"/24"))
	startHelper(t, p.b, halbConf("b", 10, 100, "", vip+"/24"))
	waitVIP(t, vip, generous(masterDown(iv, 100)), p.a, p.a, p.b)

	cmd.Process.Kill()
	cmd.Wait()
	took := waitVIP(t, vip, 200*time.Millisecond+generous(iv), p.b, p.a, p.b)
	t.Logf("the tracked process ended: VIP moved in %s", took)
	run()
	waitVIP(t, vip, 200*time.Millisecond+generous(masterDown(iv, 150)), p.a, p.a, p.b)
}
