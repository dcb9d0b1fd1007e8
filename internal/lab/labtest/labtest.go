// Package labtest gives tests what they need to run against the real
// kernel: a root check that fails (rather than skips) in CI, network
// namespace labs that clean up after themselves, and a built halb binary.
package labtest

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"halb/internal/lab/netns"
	"halb/internal/lab/release"
)

// strictVars are the host environment variables that say whether a
// missing privilege or tool fails the run: CI, as CI systems set it.
var strictVars = []string{"CI"}

// Strict reports whether the run must fail rather than skip: CI is set
// (to anything but "false" or "0").
func Strict() bool {
	v := os.Getenv("CI")
	return v != "" && v != "false" && v != "0"
}

// StrictEnv returns the strictVars that are set, as "K=V", for a process
// that must judge skipping as this one does (a test binary in a VM).
func StrictEnv() []string {
	var env []string
	for _, k := range strictVars {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}

// RequireRoot stops the test unless it runs as root. In CI (see Strict) a
// missing privilege or tool is a failure, never a silent skip.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	missing(t, "this test needs root (network namespaces), and CI must run it: run the test command as root")
}

// RequireTool fails (in CI) or skips the test when a program is missing.
func RequireTool(t testing.TB, names ...string) {
	t.Helper()
	for _, name := range names {
		if _, err := exec.LookPath(name); err != nil {
			missing(t, name+" is not installed; scripts/test.sh installs it")
			return
		}
	}
}

// missing stops the test for a missing requirement: a failure when Strict,
// a skip otherwise.
func missing(t testing.TB, why string) {
	t.Helper()
	if Strict() {
		t.Fatal(why)
		return
	}
	t.Skip("SKIPPED: " + why)
}

var sweepOnce sync.Once

// NewLab returns a lab that is removed when the test ends, pass or fail.
// The first call also removes the labs of test processes that died
// without cleaning up.
func NewLab(t testing.TB) *netns.Lab {
	t.Helper()
	RequireRoot(t)
	RequireTool(t, "ip")
	sweepOnce.Do(func() {
		if err := netns.RemoveOrphans("halbt"); err != nil {
			t.Logf("removing orphaned labs: %v", err)
		}
	})
	l := netns.New("halbt")
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("%v", err)
		}
	})
	return l
}

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
	buildOut  []byte
)

// HalbBinary builds cmd/halb once per test process and returns its path.
func HalbBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "halb-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "halb")
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/halb")
		cmd.Dir = moduleRoot()
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		buildOut, buildErr = cmd.CombinedOutput()
	})
	if buildErr != nil {
		t.Fatalf("building halb: %v\n%s", buildErr, buildOut)
	}
	return binPath
}

func moduleRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..")
}

// Switch adds a switch (a namespace with a bridge) to lab, failing the test
// on error.
func Switch(t testing.TB, lab *netns.Lab, name string) *netns.Host {
	t.Helper()
	sw, err := lab.AddSwitch(name)
	if err != nil {
		t.Fatal(err)
	}
	return sw
}

// Join adds a host to lab, linked to the switch sw by its eth0 with the
// given addresses, failing the test on error.
func Join(t testing.TB, lab *netns.Lab, sw *netns.Host, name string, addrs ...string) *netns.Host {
	t.Helper()
	h, err := lab.AddHost(name)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lab.Connect(h, sw, "eth0", addrs...); err != nil {
		t.Fatal(err)
	}
	return h
}

var (
	previousOnce sync.Once
	previousPath string
	previousErr  error
)

// PreviousBinary builds the previous release's halb (release.Previous)
// from the repository's git history, within 5 minutes, and returns its
// path. The binary is kept in the temporary directory for that commit,
// so that test processes build it once. Without git history the error
// wraps release.ErrNoHistory.
func PreviousBinary() (string, error) {
	previousOnce.Do(func() {
		dir := filepath.Join(os.TempDir(), "halb-previous-"+release.Previous)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			previousErr = err
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		previousPath, previousErr = release.Build(ctx, moduleRoot(), release.Previous, dir)
	})
	return previousPath, previousErr
}

// PreviousHalb returns the previous release's halb binary (PreviousBinary).
// Without git history the test is not run: a skip, or a failure in CI,
// which clones the history.
func PreviousHalb(t testing.TB) string {
	t.Helper()
	bin, err := PreviousBinary()
	if errors.Is(err, release.ErrNoHistory) {
		missing(t, err.Error())
		return ""
	}
	if err != nil {
		t.Fatalf("building the previous release: %v", err)
	}
	return bin
}
