package nft

import "testing"

func TestSmoke(t *testing.T) {
	_, h := labHost(t)
	_, st := loadState(t, "../../../examples/site-lb-a.yaml")
	d := nsDataplane(t, h)
	reconcile(t, d, st)
	t.Log(listTable(t, h, "halb"))
	_, st = loadState(t, "../../../examples/minimal-a.yaml")
	d = nsDataplane(t, h, WithMode(LoadBalance))
	reconcile(t, d, st)
	t.Log(listTable(t, h, "halb"))
}
