package vm

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"halb/internal/lab/labtest"
)

// TestVM boots the VM once and runs this package's TestGuest* tests in it,
// as CI does (CI set on the host: TestGuestStrictInCI needs it).
func TestVM(t *testing.T) {
	requireHost(t)
	t.Setenv("CI", "true")
	res := RunTests(t, "^TestGuest")
	// A file the guest wrote to the run directory comes back.
	b, err := os.ReadFile(filepath.Join(res.RunDir, "smoke"))
	if err != nil {
		t.Fatalf("the guest's result file did not come back: %v", err)
	}
	if !strings.Contains(string(b), "IP Virtual Server") {
		t.Errorf("result file = %q, want ipvsadm's header", b)
	}
}

func TestGuestIPVSAdm(t *testing.T) {
	RequireGuest(t)
	out, err := exec.Command("ipvsadm", "-Ln").CombinedOutput()
	if err != nil {
		t.Fatalf("ipvsadm -Ln: %v: %s", err, out)
	}
	if !strings.Contains(string(out), "IP Virtual Server version") {
		t.Fatalf("ipvsadm -Ln = %q", out)
	}
	if err := os.WriteFile(filepath.Join(os.Getenv("HALB_VM_RUN_DIR"), "smoke"), out, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestGuestIPVSService(t *testing.T) {
	RequireGuest(t)
	for _, args := range [][]string{
		{"ipvsadm", "-A", "-t", "192.0.2.1:80", "-s", "mh"},
		{"ipvsadm", "-D", "-t", "192.0.2.1:80"},
	} {
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v: %s", args, err, out)
		}
	}
}

func TestGuestScratchIsWritable(t *testing.T) {
	RequireGuest(t)
	if err := os.WriteFile(filepath.Join(t.TempDir(), "x"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestGuestStrictInCI: the host's CI reaches the guest, where a missing
// tool then fails the test instead of skipping it.
func TestGuestStrictInCI(t *testing.T) {
	RequireGuest(t)
	cmd := exec.Command(os.Args[0], "-test.run", "^TestRequireMissingToolChild$", "-test.v")
	cmd.Env = append(os.Environ(), "HALB_TEST_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "--- FAIL: TestRequireMissingToolChild") ||
		!strings.Contains(string(out), "halb-no-such-tool is not installed") {
		t.Errorf("CI=%q in the guest; a missing tool ran as (err %v):\n%s", os.Getenv("CI"), err, out)
	}
}

// TestRequireMissingToolChild asks for a tool that is never installed; it
// runs only as TestGuestStrictInCI's child.
func TestRequireMissingToolChild(t *testing.T) {
	if os.Getenv("HALB_TEST_CHILD") != "1" {
		return
	}
	labtest.RequireTool(t, "halb-no-such-tool")
}

func TestVerdict(t *testing.T) {
	for _, tc := range []struct {
		result string
		strict bool
		want   outcome
	}{
		{"PASS", false, pass}, {"PASS", true, pass},
		{"SKIP", false, skip}, {"SKIP", true, fail},
		{"FAIL", false, fail}, {"DID NOT FINISH", true, fail},
	} {
		if got := verdict(tc.result, tc.strict); got != tc.want {
			t.Errorf("verdict(%q, strict=%v) = %d, want %d", tc.result, tc.strict, got, tc.want)
		}
	}
}

func TestParseTestOutput(t *testing.T) {
	out := "=== RUN   TestA\n    a_test.go:1: hello\n--- PASS: TestA (0.00s)\n=== RUN   TestB\n=== RUN   TestB/sub\n--- FAIL: TestB (1.00s)\n    --- FAIL: TestB/sub (1.00s)\n=== RUN   TestC\npanic: boom\n"
	got := parseTestOutput([]byte(out))
	want := []struct{ name, result string }{{"TestA", "PASS"}, {"TestB", "FAIL"}, {"TestC", "DID NOT FINISH"}}
	if len(got) != len(want) {
		t.Fatalf("got %d tests, want %d: %+v", len(got), len(want), got)
	}
	for i, w := range want {
		if got[i].name != w.name || got[i].result != w.result {
			t.Errorf("test %d = %s %s, want %s %s", i, got[i].name, got[i].result, w.name, w.result)
		}
	}
	if !strings.Contains(string(got[2].output), "panic: boom") {
		t.Errorf("unfinished test output = %q, want the panic", got[2].output)
	}
}
