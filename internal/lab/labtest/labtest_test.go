package labtest

import (
	"slices"
	"testing"
)

// stopRecorder records how a helper stopped the test instead of stopping.
type stopRecorder struct {
	testing.TB
	failed, skipped bool
}

func (r *stopRecorder) Helper()               {}
func (r *stopRecorder) Fatal(...any)          { r.failed = true }
func (r *stopRecorder) Skip(...any)           { r.skipped = true }
func (r *stopRecorder) Fatalf(string, ...any) { r.failed = true }
func (r *stopRecorder) Skipf(string, ...any)  { r.skipped = true }

func TestRequireToolFailsInCI(t *testing.T) {
	for _, tc := range []struct {
		ci            string
		failed, skips bool
	}{
		{"true", true, false},
		{"1", true, false},
		{"", false, true},
		{"false", false, true},
	} {
		t.Setenv("CI", tc.ci)
		r := &stopRecorder{TB: t}
		RequireTool(r, "sh", "halb-no-such-tool")
		if r.failed != tc.failed || r.skipped != tc.skips {
			t.Errorf("CI=%q: failed=%v skipped=%v, want failed=%v skipped=%v", tc.ci, r.failed, r.skipped, tc.failed, tc.skips)
		}
	}
	t.Setenv("CI", "true")
	r := &stopRecorder{TB: t}
	RequireTool(r, "sh")
	if r.failed || r.skipped {
		t.Errorf("an installed tool stopped the test: failed=%v skipped=%v", r.failed, r.skipped)
	}
}

func TestMissingFailsInCI(t *testing.T) {
	t.Setenv("CI", "true")
	r := &stopRecorder{TB: t}
	missing(r, "needs root")
	if !r.failed || r.skipped {
		t.Errorf("CI=true: failed=%v skipped=%v, want a failure", r.failed, r.skipped)
	}
}

func TestStrictEnv(t *testing.T) {
	t.Setenv("CI", "true")
	if got := StrictEnv(); !slices.Contains(got, "CI=true") {
		t.Errorf("StrictEnv() = %q, want CI=true", got)
	}
}
