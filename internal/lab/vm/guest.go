package vm

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"halb/internal/lab/labtest"
)

// InGuest reports whether the process runs inside the VM.
func InGuest() bool { return os.Getenv("HALB_VM_GUEST") == "1" }

// RequireGuest skips a test outside the VM: such tests run inside it,
// reported by the package's TestVM (see RunTests), which fails when the
// VM cannot boot.
func RequireGuest(t testing.TB) {
	t.Helper()
	if !InGuest() {
		t.Skip("runs inside the IPVS VM, as a subtest of TestVM")
	}
}

// RunTests boots the VM once and runs there the calling package's own test
// binary, restricted to the tests matching pattern (those call
// RequireGuest). Each guest test becomes a subtest of t with its output.
// env is added to the guest's environment, after the host's strictness
// (labtest.StrictEnv): in CI, a guest test that skips fails here, and so
// does a guest test that finds a tool missing. HALB_VM_RUN replaces pattern
// (to run fewer tests while developing). With HALB_VM_KEEP set, the run
// directory (where guest tests may leave files) is kept and logged.
func RunTests(t *testing.T, pattern string, env ...string) *Result {
	t.Helper()
	requireHost(t)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	img, err := Prepare(ctx)
	if err != nil {
		t.Fatalf("the IPVS VM cannot be prepared: %v", err)
	}
	if p := os.Getenv("HALB_VM_RUN"); p != "" {
		pattern = p
	}
	args := []string{os.Args[0], "-test.run", pattern, "-test.v", "-test.count=1", "-test.timeout=12m"}
	env = append(labtest.StrictEnv(), env...)
	res, err := Run(ctx, img, Spec{Command: args, Env: env, Timeout: 14 * time.Minute})
	if res != nil {
		if os.Getenv("HALB_VM_KEEP") != "" {
			t.Logf("guest run directory kept: %s", res.RunDir)
		} else {
			t.Cleanup(func() { os.RemoveAll(res.RunDir) })
		}
	}
	if err != nil {
		if res != nil {
			t.Logf("guest output:\n%s", res.Output)
		}
		t.Fatalf("the IPVS VM failed: %v", err)
	}
	t.Logf("VM run took %s", res.Elapsed.Round(time.Millisecond))
	if len(res.Preload) > 0 {
		t.Logf("guest module loading:\n%s", res.Preload)
	}
	tests := parseTestOutput(res.Output)
	if len(tests) == 0 {
		t.Fatalf("no guest test ran (exit %d):\n%s", res.ExitCode, res.Output)
	}
	failed := false
	strict := labtest.Strict()
	for _, gt := range tests {
		t.Run(gt.name, func(t *testing.T) {
			switch verdict(gt.result, strict) {
			case pass:
				t.Logf("in the VM:\n%s", gt.output)
			case skip:
				t.Skipf("skipped in the VM:\n%s", gt.output)
			default:
				failed = true
				why := gt.result
				if why == "SKIP" {
					why = "skipped, and CI allows no skip"
				}
				t.Errorf("failed in the VM (%s):\n%s", why, gt.output)
			}
		})
	}
	if res.ExitCode != 0 && !failed {
		t.Errorf("the guest test binary exited %d:\n%s", res.ExitCode, res.Output)
	}
	return res
}

// requireHost stops the test unless the VM can be booted from here.
func requireHost(t *testing.T) {
	t.Helper()
	if InGuest() {
		t.Skip("already inside the VM")
	}
	labtest.RequireRoot(t)
	labtest.RequireTool(t, "qemu-system-x86_64", "cpio", "busybox", "depmod", "apt-get")
}

type outcome int

const (
	pass outcome = iota
	skip
	fail
)

// verdict is how the host reports a guest test's result: a skip is a
// failure when strict (in CI), and anything but PASS or SKIP fails.
func verdict(result string, strict bool) outcome {
	switch {
	case result == "PASS":
		return pass
	case result == "SKIP" && !strict:
		return skip
	}
	return fail
}

type guestTest struct {
	name, result string
	output       []byte
}

// parseTestOutput splits `-test.v` output into top-level tests. A test
// that started but never ended (a crash, a timeout) is reported with
// result "DID NOT FINISH".
func parseTestOutput(out []byte) []guestTest {
	var tests []guestTest
	cur := -1
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if name, ok := strings.CutPrefix(line, "=== RUN   "); ok && !strings.Contains(name, "/") {
			tests = append(tests, guestTest{name: name, result: "DID NOT FINISH"})
			cur = len(tests) - 1
			continue
		}
		for _, r := range []string{"PASS", "FAIL", "SKIP"} {
			if rest, ok := strings.CutPrefix(line, "--- "+r+": "); ok && cur >= 0 {
				if name, _, _ := strings.Cut(rest, " "); name == tests[cur].name {
					tests[cur].result = r
				}
			}
		}
		if cur >= 0 {
			tests[cur].output = append(append(tests[cur].output, line...), '\n')
		}
	}
	return tests
}
