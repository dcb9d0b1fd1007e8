package nft

import (
	"strings"
	"testing"
)

// TestCloseKeepsOrRemoves: Close keeps halb's tables unless told to remove
// them, and never touches a table of someone else's.
func TestCloseKeepsOrRemoves(t *testing.T) {
	lab, h := labHost(t)
	sw, err := lab.AddSwitch("sw")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lab.Connect(h, sw, "eth0", "198.51.100.2/24", "192.0.2.2/24"); err != nil {
		t.Fatal(err)
	}
	nftApply(t, h, "table inet other {\n chain c {\n  type filter hook prerouting priority 0;\n  counter\n }\n}\n")
	_, st := loadState(t, "../../../examples/site-lb-a.yaml") // DR: the netdev table too
	tables := func() string {
		out, err := h.Run("nft", "list", "tables")
		if err != nil {
			t.Fatalf("nft list tables: %v: %s", err, out)
		}
		return string(out)
	}
	keep := nsDataplane(t, h, WithMode(LoadBalance))
	reconcile(t, keep, st)
	if err := keep.Close(); err != nil {
		t.Fatal(err)
	}
	if got := tables(); !strings.Contains(got, "table inet halb") || !strings.Contains(got, "table netdev halb") {
		t.Fatalf("Close removed halb's tables without being told to:\n%s", got)
	}
	remove := nsDataplane(t, h, WithMode(LoadBalance), WithRemoveOnClose(true))
	reconcile(t, remove, st) // after a restart: nothing to change
	if err := remove.Close(); err != nil {
		t.Fatal(err)
	}
	got := tables()
	if strings.Contains(got, "halb") {
		t.Errorf("tables left after Close with remove:\n%s", got)
	}
	if !strings.Contains(got, "table inet other") {
		t.Errorf("someone else's table went away:\n%s", got)
	}
}
