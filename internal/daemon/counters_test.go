package daemon

import (
	"net/netip"
	"testing"

	"halb/internal/api"
	"halb/internal/dataplane"
	"halb/internal/metrics"
)

// TestWithCounters: IPVS's active and inactive counts, or the nftables
// data plane's connection count, go to the status entry of their
// service and server; an uncounted service stays without.
func TestWithCounters(t *testing.T) {
	st := api.Status{Services: []api.Service{
		{Name: "web", Protocol: "tcp", VIP: "192.0.2.9", Family: 4, Port: 80, Servers: []api.Server{{Address: "198.51.100.11"}, {Address: "198.51.100.12", Port: 8080}}},
		{Name: "ftp", Protocol: "tcp", VIP: "192.0.2.9", Family: 4, Port: 21, Mark: 0x10, Servers: []api.Server{{Address: "198.51.100.11"}}},
		{Name: "dns", Protocol: "udp", VIP: "192.0.2.9", Family: 4, Port: 53, Servers: []api.Server{{Address: "198.51.100.11"}}},
	}}
	a11, a12 := netip.MustParseAddr("198.51.100.11"), netip.MustParseAddr("198.51.100.12")
	got := withCounters(st, []metrics.ServiceCounters{
		{Key: dataplane.ServiceKey{Family: 4, Protocol: "tcp", Addr: netip.MustParseAddr("192.0.2.9"), Port: 80}, Connections: 9,
			Reals: []metrics.RealCounters{{Addr: a11, Port: 80, ActiveConns: 3, InactiveConns: 1}, {Addr: a12, Port: 8080, ActiveConns: 5}}},
		{Key: dataplane.ServiceKey{Family: 4, Mark: 0x10}, Connections: 4, HasPackets: true,
			Reals: []metrics.RealCounters{{Addr: a11, Connections: 4}}},
	})
	web, ftp, dns := got.Services[0], got.Services[1], got.Services[2]
	if web.Connections == nil || *web.Connections != 9 || *web.Servers[0].ActiveConnections != 3 || *web.Servers[0].InactiveConnections != 1 ||
		*web.Servers[1].ActiveConnections != 5 || web.Servers[0].Connections != nil {
		t.Errorf("IPVS counts: %+v", web)
	}
	if *ftp.Connections != 4 || ftp.Servers[0].Connections == nil || *ftp.Servers[0].Connections != 4 || ftp.Servers[0].ActiveConnections != nil {
		t.Errorf("nftables counts: %+v", ftp)
	}
	if dns.Connections != nil || dns.Servers[0].ActiveConnections != nil || dns.Servers[0].Connections != nil {
		t.Errorf("uncounted service: %+v", dns)
	}
}
