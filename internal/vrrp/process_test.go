package vrrp

import (
	"os"
	"testing"
	"time"

	"halb/internal/config"
	"halb/internal/vrrp/fsm"
)

func TestProcessMatches(t *testing.T) {
	nginx := process{comm: "nginx", argv: []string{"/usr/sbin/nginx", "-g", "daemon off;"}}
	long := process{comm: "haproxy-wrapper", argv: []string{"/usr/local/bin/haproxy-wrapper-2", "-f", "x"}}
	for _, tc := range []struct {
		spec config.Process
		p    process
		want bool
	}{
		{config.Process{Command: "nginx"}, nginx, true},
		{config.Process{Command: "nginx", Args: "-g daemon"}, nginx, true},
		{config.Process{Command: "nginx", Args: "-c"}, nginx, false},
		{config.Process{Command: "/usr/sbin/nginx", FullCommand: true}, nginx, true},
		{config.Process{Command: "nginx", FullCommand: true}, nginx, false},
		{config.Process{Command: "haproxy-wrapper-2"}, long, true},
		{config.Process{Command: "haproxy-wrapper-3"}, long, false},
		{config.Process{Command: "sshd"}, nginx, false},
	} {
		if got := matches(tc.spec, tc.p); got != tc.want {
			t.Errorf("matches(%+v, %+v) = %v, want %v", tc.spec, tc.p, got, tc.want)
		}
	}
}

// TestScanProc finds this test process in /proc.
func TestScanProc(t *testing.T) {
	list, err := scanProc("/proc")
	if err != nil {
		t.Fatal(err)
	}
	self, _ := os.Executable()
	for _, p := range list {
		if len(p.argv) > 0 && p.argv[0] == os.Args[0] || len(p.argv) > 0 && p.argv[0] == self {
			return
		}
	}
	t.Errorf("this process (%s) is not among %d", os.Args[0], len(list))
}

// TestRunnerTrackProcess: an instance tracking a process with weight 0
// is in FAULT while fewer than its quorum run, checked every interval.
func TestRunnerTrackProcess(t *testing.T) {
	running := 2
	tr := newTestRunner(t, oneInstance+`      track_processes: [web]
  processes:
    - {name: web, command: nginx, quorum: 2, interval: 500ms}
`, "eth0")
	tr.scanProcs = func() ([]process, error) {
		var out []process
		for range running {
			out = append(out, process{comm: "nginx"})
		}
		return out, nil
	}
	tr.syncProcesses(tr.cfg)
	tr.advance(4 * time.Second)
	if tr.state("vi") != fsm.Master {
		t.Fatalf("%s, want MASTER", tr.state("vi"))
	}
	running = 1
	tr.advance(400 * time.Millisecond)
	if tr.state("vi") != fsm.Master {
		t.Fatalf("%s before the next scan, want MASTER", tr.state("vi"))
	}
	tr.advance(200 * time.Millisecond)
	if tr.state("vi") != fsm.Fault || tr.lastEvent(t).Reason != "tracked process web: 1 running, quorum 2" {
		t.Fatalf("%s (%q), want FAULT for the process", tr.state("vi"), tr.lastEvent(t).Reason)
	}
	running = 3
	tr.advance(500 * time.Millisecond)
	if tr.state("vi") != fsm.Backup {
		t.Errorf("%s after the processes came back, want BACKUP", tr.state("vi"))
	}
}
