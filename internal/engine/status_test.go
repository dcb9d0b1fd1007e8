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

// TestStatusOfServerOptions: a server's own checks, on_failure and
// connection thresholds are in its status; the others show the pool's
// on_failure and no checks of their own.
func TestStatusOfServerOptions(t *testing.T) {
	cfg := loadString(t, `
node: t
services:
  - {name: web, vips: [192.0.2.9], ports: [80], forward: nat, pool: p}
pools:
  p:
    check: {type: tcp}
    servers:
      - {address: 198.51.100.1}
      - {address: 198.51.100.2, on_failure: remove, max_connections: 100, min_connections: 80, check: {type: http, port: 8080}}
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
	a, b := st.Services[0].Servers[0], st.Services[0].Servers[1]
	if a.OnFailure != "inhibit" || len(a.Checks) != 0 || a.MaxConnections != 0 {
		t.Errorf("plain server: %+v, want the pool's inhibit and nothing of its own", a)
	}
	if b.OnFailure != "remove" || len(b.Checks) != 1 || b.Checks[0] != "http:8080" || b.MaxConnections != 100 || b.MinConnections != 80 {
		t.Errorf("server with options: %+v", b)
	}
}
