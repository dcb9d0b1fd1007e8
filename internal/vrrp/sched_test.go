package vrrp

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"halb/internal/lab/labtest"
)

// policies returns each thread's scheduling policy and priority.
func policies(t *testing.T, pid string) map[int][2]uint32 {
	t.Helper()
	tasks, err := os.ReadDir("/proc/" + pid + "/task")
	if err != nil {
		t.Fatal(err)
	}
	out := map[int][2]uint32{}
	for _, e := range tasks {
		tid, _ := strconv.Atoi(e.Name())
		if a, err := unix.SchedGetAttr(tid, 0); err == nil {
			out[tid] = [2]uint32{a.Policy, a.Priority}
		}
	}
	return out
}

// childPolicy is the scheduling policy a child process reports.
func childPolicy(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("cat", "/proc/self/sched").Output()
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^policy\s*:\s*(\d+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("no policy in /proc/self/sched:\n%s", out)
	}
	return string(m[1])
}

// TestSchedulingRealKernel sets this test process to SCHED_RR and back:
// every thread follows, children run normally, memory is locked.
func TestSchedulingRealKernel(t *testing.T) {
	labtest.RequireRoot(t)
	var s scheduling
	t.Cleanup(func() { s.set(0, false, time.Now()) })
	now := time.Now()
	if err := s.set(7, true, now); err != nil {
		t.Fatal(err)
	}
	for tid, p := range policies(t, "self") {
		if p != [2]uint32{unix.SCHED_RR, 7} {
			t.Errorf("thread %d: policy %v, want SCHED_RR 7", tid, p)
		}
	}
	if s.next != now.Add(schedRefresh) {
		t.Errorf("next refresh %v, want %v", s.next, now.Add(schedRefresh))
	}
	if p := childPolicy(t); p != "0" {
		t.Errorf("a child runs with policy %s, want 0 (SCHED_OTHER)", p)
	}
	status, _ := os.ReadFile("/proc/self/status")
	if m := regexp.MustCompile(`VmLck:\s+(\d+)`).FindSubmatch(status); m == nil || string(m[1]) == "0" {
		t.Errorf("memory not locked: %s", m)
	}
	if err := s.set(0, false, now); err != nil {
		t.Fatal(err)
	}
	for tid, p := range policies(t, "self") {
		if p[0] != unix.SCHED_NORMAL {
			t.Errorf("thread %d: policy %v after reset, want SCHED_OTHER", tid, p)
		}
	}
	if !s.next.IsZero() {
		t.Errorf("refresh still planned at %v", s.next)
	}
}

// TestLabHalbRunRealtime runs halb run with vrrp.realtime_priority and
// lock_memory: every thread of the daemon is SCHED_RR at that priority,
// its memory is locked, and its tracking script runs with normal
// scheduling.
func TestLabHalbRunRealtime(t *testing.T) {
	labtest.RequireRoot(t)
	m := modes[0]
	p := newPair(t)
	out := filepath.Join(scriptDir(t), "policy")
	yaml := strings.Replace(m.halbYAML(1, 150, true, fmt.Sprintf(`      track_scripts: [{name: chk}]
  scripts:
    - {name: chk, command: ["sh", "-c", "grep ^policy /proc/$$/sched > %s"], user: nobody, interval: 1s, timeout: 1s, rise: 1, fall: 1}
`, out)), "vrrp:\n", "vrrp:\n  realtime_priority: 5\n  lock_memory: true\n", 1)
	n, _ := startHalbRun(t, p.a, yaml)
	waitVIP(t, m.vip(), generous(masterDown(m.interval, 150)), p.a, p.a)
	pid := strconv.Itoa(n.cmd.Process.Pid)
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, _ := os.ReadFile(out)
		pol := policies(t, pid)
		rr := 0
		for _, p := range pol {
			if p == [2]uint32{unix.SCHED_RR, 5} {
				rr++
			}
		}
		if len(b) > 0 && rr == len(pol) {
			if f := strings.Fields(string(b)); len(f) != 3 || f[2] != "0" {
				t.Errorf("the tracking script ran with %q, want policy 0", b)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 5 s: %d of %d threads SCHED_RR 5 (%v), script wrote %q", rr, len(pol), pol, b)
		}
		time.Sleep(100 * time.Millisecond)
	}
	status, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		t.Fatal(err)
	}
	if m := regexp.MustCompile(`VmLck:\s+(\d+)`).FindSubmatch(status); m == nil || string(m[1]) == "0" {
		t.Errorf("halb's memory is not locked: %q", m)
	}
}
