package faults

import (
	"context"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"halb/internal/lab/labtest"
	"halb/internal/lab/vm"
)

// TestVMFaultMatrix boots the IPVS VM and runs TestGuestFaultMatrix there.
func TestVMFaultMatrix(t *testing.T) {
	vm.RunTests(t, "^TestGuestFaultMatrix$", "HALB_BINARY="+labtest.HalbBinary(t))
}

// guestRows are the rows run with the IPVS data plane: data-plane
// continuity across failover, restart and reloads, and IPVS's own
// interference.
var guestRows = regexp.MustCompile(`^(kill -9 of the master|halb restart on the master under traffic|SIGHUP storm|a VIP deleted by hand|an IPVS service deleted by hand)`)

// guestSync has both nodes send their IPVS connections to the other and
// receive the other's, so that established connections survive a
// failover (the nftables data plane needs no sync: its hashing is the
// same on both nodes).
const guestSync = `
ipvs_sync:
  instance: web-a
  interface: eth0
  sync_id: 1
  mode: both
`

// TestGuestFaultMatrix runs the matrix's data-plane rows on a site whose
// load balancers run the IPVS data plane with connection sync, and fails
// on a broken promise.
func TestGuestFaultMatrix(t *testing.T) {
	vm.RequireGuest(t)
	halb := os.Getenv("HALB_BINARY")
	if halb == "" {
		t.Fatal("HALB_BINARY is not set (TestVMFaultMatrix sets it)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	var progress strings.Builder
	results, err := Run(ctx, Options{Halb: halb, Dir: t.TempDir(), Prefix: "halbv", Dataplane: "ipvs",
		Progress: &progress, Rows: guestRows.MatchString,
		ConfigEdit: func(_ int, yaml string) string { return yaml + guestSync }})
	t.Log("\n" + progress.String())
	var table strings.Builder
	if werr := WriteTable(&table, results); werr != nil {
		t.Fatal(werr)
	}
	t.Log("\n" + table.String())
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != 5 {
		t.Errorf("%d rows ran, want 5", len(results))
	}
	for _, r := range Broken(results) {
		t.Errorf("broken promise: %s: %s (%s)", r.Fault, r.Promise, r.measured())
	}
	for _, r := range results {
		if r.NotRun != "" {
			t.Errorf("not run: %s: %s", r.Fault, r.NotRun)
		}
	}
}
