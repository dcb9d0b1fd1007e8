package engine

import (
	"context"
	"testing"
)

// TestStatusOfMarkServiceWithoutVIPs: a service on an external mark with
// no VIPs (keepalived's virtual_server fwmark) is listed once per address
// family of its pool, with its mark and the servers of that family.
func TestStatusOfMarkServiceWithoutVIPs(t *testing.T) {
	cfg := loadString(t, `
node: t
services:
  - {name: fw, mark: 7, forward: dr, pool: p}
pools:
  p:
    servers:
      - {address: 198.51.100.1}
      - {address: "2001:db8::1"}
      - {address: 198.51.100.2}
`)
	eng := New(cfg, &fakeDataplane{}, "fake")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- eng.Run(ctx) }()
	defer func() { cancel(); <-done }()
	st, err := eng.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Services) != 2 {
		t.Fatalf("%d status entries, want one per family: %+v", len(st.Services), st.Services)
	}
	for i, want := range []struct{ family, servers int }{{4, 2}, {6, 1}} {
		s := st.Services[i]
		if s.Name != "fw" || s.Mark != 7 || s.VIP.IsValid() || s.Family != want.family || len(s.Servers) != want.servers {
			t.Errorf("entry %d: %+v, want family %d with %d servers", i, s, want.family, want.servers)
		}
	}
}
