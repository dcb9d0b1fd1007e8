package metrics

import (
	"context"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"halb/internal/api"
	"halb/internal/event"
)

// series lists the label values of a family's series, joined.
func series(t *testing.T, url, name string) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	for _, m := range scrape(t, url)[name].GetMetric() {
		s := ""
		for _, l := range m.GetLabel() {
			s += l.GetName() + "=" + l.GetValue() + " "
		}
		out[s] = true
	}
	return out
}

// TestRetainForgetsRemovedServers: after a reload that removes a server
// and a VRRP instance, their counter series are gone from the scrape and
// the others stay.
func TestRetainForgetsRemovedServers(t *testing.T) {
	both := api.Status{
		Services: []api.Service{{Pool: "www", Servers: []api.Server{{Address: "198.51.100.11"}, {Address: "198.51.100.12", Port: 8080}}}},
		VRRP:     []api.Instance{{Name: "web-a"}, {Name: "web-b"}},
	}
	st := both
	m := New(func(context.Context) (api.Status, error) { return st, nil })
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	for _, s := range []struct {
		addr string
		port uint16
	}{{"198.51.100.11", 0}, {"198.51.100.12", 8080}} {
		m.OnEvent(event.Record{Kind: "health", Health: &event.Health{Pool: "www", Addr: netip.MustParseAddr(s.addr), Port: s.port}})
		m.CountCheck("www", netip.AddrPortFrom(netip.MustParseAddr(s.addr), s.port).String(), "tcp", true)
	}
	for _, in := range []string{"web-a", "web-b"} {
		m.OnEvent(event.Record{Kind: "vrrp", VRRP: &event.VRRP{Instance: in, Old: "BACKUP", New: "MASTER"}})
	}
	const removed, kept = "address=198.51.100.12 pool=www port=8080 ", "address=198.51.100.11 pool=www port= "
	has := func(got map[string]bool, sub string) bool {
		for s := range got {
			if strings.Contains(s, sub) {
				return true
			}
		}
		return false
	}
	for _, f := range []string{"halb_server_transitions_total", "halb_server_checks_total"} {
		if got := series(t, srv.URL, f); !has(got, removed) || !has(got, kept) {
			t.Fatalf("%s before the reload: %v", f, got)
		}
	}
	st = api.Status{Services: []api.Service{{Pool: "www", Servers: []api.Server{{Address: "198.51.100.11"}}}}, VRRP: []api.Instance{{Name: "web-a"}}}
	m.Retain(st)
	for _, f := range []string{"halb_server_transitions_total", "halb_server_checks_total", "halb_vrrp_transitions_total"} {
		got := series(t, srv.URL, f)
		if len(got) == 0 || has(got, removed) || has(got, "web-b") {
			t.Errorf("%s after the reload: %v, want the removed server's and instance's series gone", f, got)
		}
		if f != "halb_vrrp_transitions_total" && !has(got, kept) {
			t.Errorf("%s after the reload lost the kept server: %v", f, got)
		}
	}
	// The removed server checked again (it came back) counts from zero.
	m.CountCheck("www", "198.51.100.12:8080", "tcp", true)
	if got := series(t, srv.URL, "halb_server_checks_total"); !has(got, removed) {
		t.Errorf("a server back in the configuration is not counted again: %v", got)
	}
}
