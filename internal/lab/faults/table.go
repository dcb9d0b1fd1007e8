package faults

import (
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// Result is one row of the matrix as run.
type Result struct {
	Fault, Promise, Keepalived string
	// Known, when set, says why halb cannot keep the promise yet: a row
	// not kept is then reported but is no broken promise.
	Known    string
	Measured string
	Kept     bool
	// Err is a failure to run the row (inject, measure or restore).
	Err error
	// Left lists what the row left behind after its restore.
	Left []string
	// NotRun, when set, says why the row could not run on this machine;
	// that breaks no promise here (CI, which has what rows need, fails it).
	NotRun string
}

// Verdict is the "kept?" cell.
func (r Result) Verdict() string {
	switch {
	case r.Err != nil:
		return "ERROR"
	case len(r.Left) > 0:
		return "NO (left behind)"
	case r.NotRun != "":
		return "not run"
	case r.Kept:
		return "yes"
	case r.Known != "":
		return "known, not yet kept"
	}
	return "NO"
}

// Broken reports whether the row breaks a promise: it failed to run, left
// something behind, or was not kept without a known reason.
func (r Result) Broken() bool {
	return r.Err != nil || len(r.Left) > 0 || (!r.Kept && r.Known == "" && r.NotRun == "")
}

// Broken returns the results that break a promise.
func Broken(results []Result) []Result {
	var out []Result
	for _, r := range results {
		if r.Broken() {
			out = append(out, r)
		}
	}
	return out
}

// measured is the "measured" cell: what was measured, then why the row
// could not run and what it left behind.
func (r Result) measured() string {
	parts := []string{}
	if r.Measured != "" {
		parts = append(parts, r.Measured)
	}
	if r.NotRun != "" {
		parts = append(parts, "not run: "+r.NotRun)
	}
	if r.Err != nil {
		parts = append(parts, "error: "+r.Err.Error())
	}
	if len(r.Left) > 0 {
		parts = append(parts, "left behind: "+strings.Join(r.Left, "; "))
	}
	return strings.Join(parts, "; ")
}

// WriteTable writes the results as a markdown table, its columns padded so
// that it reads in a terminal too, then the reasons of the rows known not
// to be kept yet.
func WriteTable(w io.Writer, results []Result) error {
	rows := [][]string{{"fault", "halb's promise", "measured", "kept?", "keepalived"}}
	for _, r := range results {
		rows = append(rows, []string{escape(r.Fault), escape(r.Promise), escape(r.measured()), r.Verdict(), escape(r.Keepalived)})
	}
	width := make([]int, len(rows[0]))
	for _, row := range rows {
		for i, cell := range row {
			width[i] = max(width[i], utf8.RuneCountInString(cell))
		}
	}
	var b strings.Builder
	line := func(cells []string) {
		b.WriteString("|")
		for i, cell := range cells {
			fmt.Fprintf(&b, " %s%s |", cell, strings.Repeat(" ", width[i]-utf8.RuneCountInString(cell)))
		}
		b.WriteString("\n")
	}
	line(rows[0])
	rule := make([]string, len(width))
	for i, n := range width {
		rule[i] = strings.Repeat("-", n)
	}
	line(rule)
	for _, row := range rows[1:] {
		line(row)
	}
	var known []string
	for _, r := range results {
		if r.Known != "" && !r.Kept {
			known = append(known, fmt.Sprintf("* %s: %s", r.Fault, r.Known))
		}
	}
	if len(known) > 0 {
		b.WriteString("\nKnown, not yet kept:\n" + strings.Join(known, "\n") + "\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// escape makes text safe in a markdown table cell.
func escape(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "|", `\|`), "\n", " ")
}
