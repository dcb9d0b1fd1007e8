package faults

import (
	"errors"
	"strings"
	"testing"
)

func TestVerdictsAndBrokenPromises(t *testing.T) {
	cases := []struct {
		r       Result
		verdict string
		broken  bool
	}{
		{Result{Kept: true}, "yes", false},
		{Result{}, "NO", true},
		{Result{Known: "not built yet"}, "known, not yet kept", false},
		{Result{Known: "not built yet", Kept: true}, "yes", false},
		{Result{Kept: true, Left: []string{"lb-a: 2 processes, was 1"}}, "NO (left behind)", true},
		{Result{Known: "not built yet", Left: []string{"x"}}, "NO (left behind)", true},
		{Result{Kept: true, Err: errors.New("nft: no such table")}, "ERROR", true},
		{Result{NotRun: "no git history"}, "not run", false},
		{Result{NotRun: "no git history", Left: []string{"x"}}, "NO (left behind)", true},
	}
	for _, c := range cases {
		if got := c.r.Verdict(); got != c.verdict {
			t.Errorf("%+v: verdict %q, want %q", c.r, got, c.verdict)
		}
		if got := c.r.Broken(); got != c.broken {
			t.Errorf("%+v: broken %v, want %v", c.r, got, c.broken)
		}
	}
	all := []Result{cases[0].r, cases[1].r, cases[2].r, cases[4].r}
	if b := Broken(all); len(b) != 2 || b[0].Verdict() != "NO" || len(b[1].Left) != 1 {
		t.Errorf("Broken: %+v", b)
	}
}

func TestTheTableIsMarkdownWithAlignedColumns(t *testing.T) {
	var b strings.Builder
	err := WriteTable(&b, []Result{
		{Fault: "kill -9", Promise: "master in 3.61 s", Measured: "3.02 s", Kept: true, Keepalived: "same"},
		{Fault: "a | b", Promise: "p", Measured: "m", Known: "not built yet", Keepalived: "k"},
		{Fault: "broken", Promise: "p", Err: errors.New("boom"), Left: []string{"lb-a: addresses added [x]"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(b.String(), "\n")
	if lines[0] != "| fault   | halb's promise   | measured                                            | kept?               | keepalived |" {
		t.Errorf("header %q", lines[0])
	}
	if !strings.HasPrefix(lines[1], "| ------- | ---------------- |") {
		t.Errorf("rule %q", lines[1])
	}
	for i, l := range lines[:5] {
		if len(l) != len(lines[0]) {
			t.Errorf("line %d is %d wide, the header %d: %q", i, len(l), len(lines[0]), l)
		}
	}
	if !strings.Contains(lines[3], `| a \| b  |`) {
		t.Errorf("a | in a cell is not escaped: %q", lines[3])
	}
	if !strings.Contains(lines[4], "error: boom; left behind: lb-a: addresses added [x]") || !strings.Contains(lines[4], "| ERROR ") {
		t.Errorf("the broken row: %q", lines[4])
	}
	if !strings.Contains(b.String(), "Known, not yet kept:\n* a | b: not built yet\n") {
		t.Errorf("no list of known rows:\n%s", b.String())
	}
}
