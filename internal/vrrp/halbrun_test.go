package vrrp

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"halb/internal/lab/labtest"
	"halb/internal/lab/netns"
)

// startHalbRun runs the real daemon, halb run --dataplane none, in host.
func startHalbRun(t *testing.T, host *netns.Host, yaml string) (*node, string) {
	t.Helper()
	bin := labtest.HalbBinary(t)
	dir := t.TempDir()
	conf := filepath.Join(dir, "halb.yaml")
	sock := filepath.Join(dir, "halb.sock")
	yaml = "state_dir: " + dir + "\n" + yaml
	if err := os.WriteFile(conf, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := host.Command(context.Background(), bin, "run", "--config", conf, "--dataplane", "none", "--socket", sock)
	n := startNode(t, host, cmd, conf, false)
	n.waitReady(halbReady)
	return n, sock
}

// vrrpStatus reads the vrrp section of halb status --json.
func vrrpStatus(t *testing.T, host *netns.Host, sock string) []map[string]any {
	t.Helper()
	out, err := host.Run(labtest.HalbBinary(t), "status", "--socket", sock, "--json")
	if err != nil {
		t.Fatalf("halb status: %v: %s", err, out)
	}
	var st struct {
		VRRP []map[string]any `json:"vrrp"`
	}
	if err := json.Unmarshal(out, &st); err != nil {
		t.Fatalf("status JSON: %v: %s", err, out)
	}
	return st.VRRP
}

// TestLabHalbRun runs halb run (the daemon, VRRP only) on a, with halb run
// or keepalived on b, and keepalived on a with halb run on b: election,
// status JSON, kill -9, return with preemption, SIGTERM (exit 0, priority
// 0, VIP released).
func TestLabHalbRun(t *testing.T) {
	labtest.RequireRoot(t)
	for _, m := range []mode{modes[0], modes[1], modes[2], modes[4]} {
		for _, kinds := range [][2]string{{"halb", "halb"}, {"halb", "keepalived"}, {"keepalived", "halb"}} {
			t.Run(m.name+"/"+kinds[0]+"-"+kinds[1], func(t *testing.T) {
				p := newPair(t)
				start := func(kind string, n, prio int) (*node, string) {
					host := p.a
					if n == 2 {
						host = p.b
					}
					if kind == "keepalived" {
						return startKeepalived(t, host, m.keepalivedConf(n, prio, true)), ""
					}
					return startHalbRun(t, host, m.halbYAML(n, prio, true, ""))
				}
				vip := m.vip()
				crash := generous(masterDown(m.interval, 100))
				a, aSock := start(kinds[0], 1, 150)
				b, bSock := start(kinds[1], 2, 100)
				waitVIP(t, vip, crash, p.a, p.a, p.b)
				holdVIP(t, vip, 3*m.interval, p.a, p.a, p.b)
				if aSock != "" {
					st := vrrpStatus(t, p.a, aSock)
					// The master is named by its advert source: the link-local
					// address for IPv6 multicast.
					master, _ := st[0]["master"].(string)
					if m.v6 && !m.unicast && strings.HasPrefix(master, "fe80:") {
						master = m.self(1)
					}
					if len(st) != 1 || st[0]["state"] != "MASTER" || st[0]["effective_priority"] != 150.0 || master != m.self(1) {
						t.Errorf("status of the master: %v", st)
					}
				}
				if bSock != "" {
					st := vrrpStatus(t, p.b, bSock)
					if len(st) != 1 || st[0]["state"] != "BACKUP" || st[0]["master"] != m.self(1) && !m.v6 {
						t.Errorf("status of the backup: %v", st)
					}
				}

				a.kill()
				waitVIP(t, vip, crash, p.b, p.b)
				p.a.IP("addr", "del", vip+m.plen(), "dev", "eth0")
				a, _ = start(kinds[0], 1, 150)
				waitVIP(t, vip, generous(masterDown(m.interval, 150)), p.a, p.a, p.b)

				a.term()
				if code := a.cmd.ProcessState.ExitCode(); kinds[0] == "halb" && code != 0 {
					t.Errorf("halb run exited %d on SIGTERM", code)
				}
				took := waitVIP(t, vip, generous(m.interval), p.b, p.a, p.b)
				t.Logf("SIGTERM: %s moved in %s", vip, took)
				if kinds[0] == "halb" && !strings.Contains(a.logs.String(), "VRRP transition") {
					t.Errorf("halb run logged no VRRP transition:\n%s", a.logs.String())
				}
				_ = b
			})
		}
	}
}
