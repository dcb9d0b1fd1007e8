package nft

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestWatchRestoresTable: halb's table deleted by another process, or a
// chain of it, is noticed and, by the Reconcile the watch asks for, back
// within a second; halb's own Reconciles do not set the watch off.
func TestWatchRestoresTable(t *testing.T) {
	_, lb := labHost(t)
	d := nsDataplane(t, lb, WithMode(LoadBalance))
	st := natState(t, "", "inhibit")
	reconcile(t, d, st)
	want := listTable(t, lb, DefaultTable)

	ctx, cancel := context.WithCancel(context.Background())
	reasons := make(chan string, 16)
	done := make(chan error, 1)
	go func() { done <- d.Watch(ctx, func(r string) { reasons <- r }) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("watch: %v", err)
		}
	}()
	// The watch follows once a chain added to halb's table is answered
	// (the Reconcile then removes the chain).
	for ready := false; !ready; {
		if out, err := lb.Run("nft", "add", "chain", "inet", DefaultTable, "probe"); err != nil {
			t.Fatalf("add a chain: %v: %s", err, out)
		}
		select {
		case <-reasons:
			ready = true
		case <-time.After(time.Second):
		}
		reconcile(t, d, st)
	}
	// halb's own Reconciles and other tables' changes pass without a call.
	reconcile(t, d, natState(t, "", "inhibit", "198.51.100.21"))
	reconcile(t, d, st)
	nftApply(t, lb, "table inet other {\n chain c {\n }\n}\n")
	select {
	case r := <-reasons:
		t.Fatalf("the watch answered halb's own changes or another table's: %s", r)
	case <-time.After(500 * time.Millisecond):
	}

	chains := strings.Count(want, "chain ")
	for _, tc := range []struct{ what, cmd string }{
		{"table deleted", "delete table inet " + DefaultTable},
		{"base chain flushed", "flush chain inet " + DefaultTable + " " + chainBalance},
	} {
		from := time.Now()
		if out, err := lb.Run("nft", strings.Fields(tc.cmd)...); err != nil {
			t.Fatalf("%s: %v: %s", tc.cmd, err, out)
		}
		select {
		case r := <-reasons:
			if !strings.Contains(r, "changed by nft") {
				t.Errorf("%s: reason %q", tc.what, r)
			}
			reconcile(t, d, st)
		case <-time.After(3 * time.Second):
			t.Fatalf("%s: the watch did not answer in 3 s", tc.what)
		}
		took := time.Since(from)
		got := listTable(t, lb, DefaultTable)
		if got != want {
			t.Errorf("%s: table after the watch's reconcile (%d chains, want %d):\n%s\nwant:\n%s", tc.what, strings.Count(got, "chain "), chains, got, want)
		}
		if took > time.Second {
			t.Errorf("%s: back after %v, want within 1 s", tc.what, took)
		}
		t.Logf("%s: back after %v", tc.what, took)
	}
}
