package config

import (
	"fmt"
	"iter"
	"slices"
	"sort"
	"strings"

	"halb/internal/suggest"
)

// Severity says whether a diagnostic makes a configuration unusable.
type Severity int

const (
	// Error makes the configuration invalid.
	Error Severity = iota
	// Warning is reported but the configuration is still used.
	Warning
)

// didYouMean is `; did you mean "NAME"?` for the name of known closest
// to a misspelt name, or "" when none is close.
func didYouMean(name string, known iter.Seq[string]) string {
	best := suggest.Closest(name, slices.Sorted(known))
	if best == "" {
		return ""
	}
	return fmt.Sprintf("; did you mean %q?", best)
}

// Pos is a 1-based position in a configuration file.
type Pos struct {
	Line, Col int
}

// Diagnostic is one located problem found in a configuration file.
type Diagnostic struct {
	File     string
	Pos      Pos
	Severity Severity
	Message  string
}

// String renders the diagnostic as FILE:LINE:COL: [warning: ]message.
func (d Diagnostic) String() string {
	prefix := ""
	if d.Severity == Warning {
		prefix = "warning: "
	}
	return fmt.Sprintf("%s:%d:%d: %s%s", d.File, d.Pos.Line, d.Pos.Col, prefix, d.Message)
}

// Diagnostics is the list of problems found in one or more files.
type Diagnostics []Diagnostic

// HasErrors reports whether any diagnostic is an error.
func (ds Diagnostics) HasErrors() bool {
	for _, d := range ds {
		if d.Severity == Error {
			return true
		}
	}
	return false
}

// Errors returns only the error diagnostics.
func (ds Diagnostics) Errors() Diagnostics {
	var out Diagnostics
	for _, d := range ds {
		if d.Severity == Error {
			out = append(out, d)
		}
	}
	return out
}

// Sort orders diagnostics by file, line and column, keeping the order of
// diagnostics found at the same place.
func (ds Diagnostics) Sort() {
	sort.SliceStable(ds, func(i, j int) bool {
		a, b := ds[i], ds[j]
		if a.File != b.File {
			return a.File < b.File
		}
		if a.Pos.Line != b.Pos.Line {
			return a.Pos.Line < b.Pos.Line
		}
		return a.Pos.Col < b.Pos.Col
	})
}

// String renders one diagnostic a line.
func (ds Diagnostics) String() string {
	var b strings.Builder
	for _, d := range ds {
		b.WriteString(d.String())
		b.WriteByte('\n')
	}
	return b.String()
}

// Error implements error so that a failed load can be returned as one value.
func (ds Diagnostics) Error() string {
	return strings.TrimSuffix(ds.String(), "\n")
}
