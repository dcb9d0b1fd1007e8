package faults

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"halb/internal/lab/labtest"
)

// TestMatrix runs the whole fault matrix on one lab site and fails on a
// broken promise; rows known not to be kept yet are reported only.
func TestMatrix(t *testing.T) {
	labtest.RequireRoot(t)
	labtest.RequireTool(t, "ip", "nginx", "vsftpd", "nft", "mount")
	halb := labtest.HalbBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	var progress strings.Builder
	opts := Options{Halb: halb, Dir: t.TempDir(), Prefix: "halbt", Progress: &progress,
		Previous: func(context.Context) (string, error) { return labtest.PreviousBinary() }}
	if only := os.Getenv("HALB_FAULTS_ROWS"); only != "" {
		opts.Rows = func(fault string) bool { return strings.Contains(fault, only) }
	}
	results, err := Run(ctx, opts)
	t.Log("\n" + progress.String())
	var table strings.Builder
	if werr := WriteTable(&table, results); werr != nil {
		t.Fatal(werr)
	}
	t.Log("\n" + table.String())
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range Broken(results) {
		t.Errorf("broken promise: %s: %s (%s)", r.Fault, r.Promise, r.measured())
	}
	for _, r := range results {
		if r.NotRun != "" && labtest.Strict() {
			t.Errorf("not run in CI: %s: %s", r.Fault, r.NotRun)
		}
	}
}
