package proc

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"halb/internal/lab/labtest"
)

// self is the user the test runs as.
func self(t *testing.T) User {
	t.Helper()
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	us, err := LookupUser(u.Username)
	if err != nil {
		t.Fatal(err)
	}
	return us
}

func sh(u User, script string) Cmd {
	return Cmd{Path: "/bin/sh", Args: []string{"-c", script}, User: u, Timeout: 10 * time.Second}
}

// alive reports whether pid is a process that still runs (a killed one
// may stay a zombie until its new parent reaps it).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	_, after, _ := strings.Cut(string(b), ") ")
	return !strings.HasPrefix(after, "Z") && !strings.HasPrefix(after, "X")
}

// TestTimeoutKillsGroup: a script that forks a grandchild and waits is
// killed at its timeout, grandchild included.
func TestTimeoutKillsGroup(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pid")
	c := sh(self(t), "sleep 60 & echo $! > "+pidFile+"; wait")
	c.Timeout = 300 * time.Millisecond
	start := time.Now()
	r := Run(t.Context(), c)
	if !r.TimedOut || r.Err == nil || r.ExitCode != -1 {
		t.Fatalf("result %+v, want a timeout", r)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("run ended after %s, want about 300ms", d)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	// SIGKILL takes effect at once, but give the kernel a moment.
	for deadline := time.Now().Add(time.Second); alive(pid) && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
	}
	if alive(pid) {
		syscall.Kill(pid, syscall.SIGKILL)
		t.Errorf("grandchild %d survived the timeout", pid)
	}
}

// TestRunsAsUser: a run as nobody has nobody's uid and gid.
func TestRunsAsUser(t *testing.T) {
	labtest.RequireRoot(t)
	u, err := LookupUser("nobody")
	if err != nil {
		t.Fatal(err)
	}
	r := Run(t.Context(), sh(u, "id -u; id -g"))
	if r.Err != nil {
		t.Fatalf("%v: %s", r.Err, r.Output)
	}
	nb, _ := user.Lookup("nobody")
	if got, want := string(r.Output), nb.Uid+"\n"+nb.Gid+"\n"; got != want {
		t.Errorf("id output %q, want %q", got, want)
	}
	root, err := LookupUser("root")
	if err != nil {
		t.Fatal(err)
	}
	if r := Run(t.Context(), sh(root, "id -u")); string(r.Output) != "0\n" {
		t.Errorf("as root: %q %v", r.Output, r.Err)
	}
}

func TestLookupUser(t *testing.T) {
	if _, err := LookupUser(""); err == nil {
		t.Error("empty user name accepted")
	}
	if _, err := LookupUser("no-such-user-here"); err == nil {
		t.Error("unknown user accepted")
	}
	if os.Geteuid() != 0 {
		if _, err := LookupUser("root"); err == nil {
			t.Error("switching to root without root accepted")
		}
	}
	if r := Run(t.Context(), Cmd{Path: "id", Args: []string{"-u"}, User: Self()}); r.Err != nil || string(r.Output) != strconv.Itoa(os.Geteuid())+"\n" {
		t.Errorf("a run as halb's own user: %+v", r)
	}
	if r := Run(t.Context(), Cmd{Path: "/bin/true"}); r.Err == nil || r.ExitCode != -1 {
		t.Errorf("a run without a user: %+v", r)
	}
}

// TestEnvironment: only PATH and the declared variables reach the
// program, which starts in /.
func TestEnvironment(t *testing.T) {
	t.Setenv("HALB_PROC_SECRET", "leaked")
	c := sh(self(t), "env | sort; pwd")
	c.Env = []string{"HALB_CHECK_PORT=80"}
	r := Run(t.Context(), c)
	if r.Err != nil {
		t.Fatalf("%v: %s", r.Err, r.Output)
	}
	out := string(r.Output)
	if strings.Contains(out, "HALB_PROC_SECRET") {
		t.Errorf("the test's environment leaked:\n%s", out)
	}
	for _, want := range []string{"HALB_CHECK_PORT=80\n", "PATH=" + Path + "\n", "\n/\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// TestOutputAndExit: output is kept up to the limit; a non-zero exit is
// an error with its code; stdin reaches the program.
func TestOutputAndExit(t *testing.T) {
	u := self(t)
	c := sh(u, "head -c 10000 /dev/zero | tr '\\0' x; echo oops >&2; exit 3")
	c.OutputLimit = 100
	r := Run(t.Context(), c)
	var ee *exec.ExitError
	if r.ExitCode != 3 || r.Err == nil || !errors.As(r.Err, &ee) || r.TimedOut {
		t.Errorf("result %+v, want exit status 3", r)
	}
	if len(r.Output) != 100 || !r.Truncated || strings.Trim(string(r.Output), "x") != "" {
		t.Errorf("output %d bytes (truncated %v) %q, want 100 x", len(r.Output), r.Truncated, r.Output)
	}
	c = sh(u, "cat; echo err >&2")
	c.Stdin = []byte("in\n")
	if r := Run(t.Context(), c); r.Err != nil || string(r.Output) != "in\nerr\n" || r.Truncated || r.ExitCode != 0 {
		t.Errorf("stdin run: %+v", r)
	}
	if r := Run(t.Context(), Cmd{Path: "/no/such/program", User: u}); r.Err == nil || r.ExitCode != -1 {
		t.Errorf("missing program: %+v", r)
	}
	// A name without a slash is looked up in the fixed PATH, not halb's.
	t.Setenv("PATH", "/nonexistent")
	if r := Run(t.Context(), Cmd{Path: "echo", Args: []string{"hi"}, User: u}); r.Err != nil || string(r.Output) != "hi\n" {
		t.Errorf("echo by name: %+v", r)
	}
	if r := Run(t.Context(), Cmd{Path: "no-such-program-here", User: u}); r.Err == nil || !strings.Contains(r.Err.Error(), "not found in /usr/local/sbin:") {
		t.Errorf("unknown program by name: %+v", r)
	}
}

// TestStartHook: the caller's start function wraps the process start.
func TestStartHook(t *testing.T) {
	called := false
	c := sh(self(t), "exit 0")
	c.Start = func(start func() error) error { called = true; return start() }
	if r := Run(t.Context(), c); r.Err != nil || !called {
		t.Errorf("result %+v, hook called %v", r, called)
	}
	c.Start = func(func() error) error { return errors.New("no namespace") }
	if r := Run(t.Context(), c); r.Err == nil || !strings.Contains(r.Err.Error(), "no namespace") {
		t.Errorf("failing hook: %+v", r)
	}
}

// TestQueueFlood: with both workers of a queue busy, 10,000 more
// submissions fill its eight places, the rest are dropped and counted,
// and the goroutines stay bounded.
func TestQueueFlood(t *testing.T) {
	u := self(t)
	q := NewQueue(2, 8)
	before := runtime.NumGoroutine()
	release, started := make(chan struct{}), make(chan struct{}, 10)
	ran := make(chan Result, 10)
	c := sh(u, "exit 0")
	// Every run waits for the release once it has a worker.
	c.Start = func(start func() error) error { started <- struct{}{}; <-release; return start() }
	done := func(r Result) { ran <- r }
	for range 2 {
		if !q.Submit(context.Background(), c, done) {
			t.Fatal("an idle queue refused a run")
		}
	}
	<-started
	<-started
	accepted, peak := 2, 0
	for range 10000 {
		if q.Submit(context.Background(), c, done) {
			accepted++
		}
		peak = max(peak, runtime.NumGoroutine())
	}
	if accepted != 10 || q.Dropped() != 10002-10 {
		t.Errorf("accepted %d, dropped %d; want 10 and 9992", accepted, q.Dropped())
	}
	if peak > before+2 {
		t.Errorf("goroutines grew from %d to %d", before, peak)
	}
	close(release)
	for range accepted {
		select {
		case r := <-ran:
			if r.Err != nil {
				t.Errorf("queued run: %v", r.Err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("queued runs did not finish")
		}
	}
	// Idle workers leave.
	for deadline := time.Now().Add(2 * time.Second); runtime.NumGoroutine() > before+2 && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
	}
	if n := runtime.NumGoroutine(); n > before+2 {
		t.Errorf("%d goroutines after the queue drained, %d before", n, before)
	}
}
