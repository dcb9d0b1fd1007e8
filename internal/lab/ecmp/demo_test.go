package ecmp

import (
	"os"
	"strings"
	"testing"

	"halb/internal/lab/labtest"
)

// TestDemo runs the ECMP demo: no long-lived connection breaks when a
// node is killed, drained or added; a killed backend breaks only its own.
func TestDemo(t *testing.T) {
	labtest.RequireRoot(t)
	labtest.RequireTool(t, "ip", "bird", "nginx", "nft")
	var out strings.Builder
	steps, err := Demo(t.Context(), DemoOptions{Options: Options{Prefix: "halbt", Halb: labtest.HalbBinary(t), Dir: t.TempDir()},
		Out: &out})
	t.Logf("demo:\n%s", out.String())
	if err != nil {
		for _, d := range Dirs() {
			if b, rerr := os.ReadFile(t.TempDir() + "/" + d + "/halb.log"); rerr == nil {
				t.Logf("%s:\n%s", d, b)
			}
		}
		t.Fatal(err)
	}
	if len(steps) != 5 {
		t.Fatalf("%d steps, want 5", len(steps))
	}
	for _, s := range steps[:4] {
		if s.LongLivedKept != s.LongLivedAt || s.LongLivedAt == 0 {
			t.Errorf("%s: %d of %d long-lived connections kept, want all", s.Name, s.LongLivedKept, s.LongLivedAt)
		}
	}
	if s := steps[4]; s.LongLivedKept >= s.LongLivedAt {
		t.Errorf("%s: %d of %d long-lived connections kept: the killed backend's should break", s.Name, s.LongLivedKept, s.LongLivedAt)
	}
}

// TestBench: with halb's nodes every established connection survives a
// node's crash, drain and addition and a backend's addition, and those
// not on a removed backend survive its removal; the baseline's nodes,
// which do not agree on a flow's backend, lose some.
func TestBench(t *testing.T) {
	labtest.RequireRoot(t)
	labtest.RequireTool(t, "ip", "bird", "nginx", "nft")
	var out strings.Builder
	rows, err := Bench(t.Context(), BenchOptions{Options: Options{Prefix: "halbt", Halb: labtest.HalbBinary(t), Dir: t.TempDir()},
		Out: &out, Conns: 200})
	t.Logf("bench:\n%s", out.String())
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 10 {
		t.Fatalf("%d rows, want 10", len(rows))
	}
	lost := 0
	for _, r := range rows[:5] {
		if r.Survived != r.Eligible {
			t.Errorf("%s with halb: %d of %d connections survived, want all", r.Event, r.Survived, r.Eligible)
		}
	}
	for _, r := range rows[5:] {
		lost += r.Eligible - r.Survived
	}
	if lost == 0 {
		t.Error("the baseline lost no connection: the bench shows no difference")
	}
}
