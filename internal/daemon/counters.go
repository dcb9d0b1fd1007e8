package daemon

import (
	"context"
	"net/netip"

	"halb/internal/api"
	"halb/internal/dataplane"
	"halb/internal/metrics"
)

// statusWithCounters is the status with the data plane's connection
// counts, for the status socket; without counters it is the status.
func (d *Daemon) statusWithCounters(ctx context.Context) (api.Status, error) {
	st, err := d.status(ctx)
	if err != nil || d.dp.Counters == nil {
		return st, err
	}
	cs, err := d.dp.Counters.Counters(ctx)
	if err != nil {
		d.log.Warn("status without connection counts", "err", err)
		return st, nil
	}
	return withCounters(st, cs), nil
}

// withCounters sets each service's and server's connection counts from
// the data plane's counters (in st's own lists).
func withCounters(st api.Status, cs []metrics.ServiceCounters) api.Status {
	byKey := make(map[dataplane.ServiceKey]metrics.ServiceCounters, len(cs))
	for _, c := range cs {
		byKey[c.Key] = c
	}
	for i, s := range st.Services {
		c, ok := byKey[s.Key()]
		if !ok {
			continue
		}
		st.Services[i].Connections = &c.Connections
		for j, srv := range s.Servers {
			a, _ := netip.ParseAddr(srv.Address)
			for _, r := range c.Reals {
				if r.Addr != a || (r.Port != srv.Port && srv.Port != 0) {
					continue
				}
				if c.HasPackets { // the nftables data plane counts connections
					srv.Connections = &r.Connections
				} else {
					srv.ActiveConnections, srv.InactiveConnections = &r.ActiveConns, &r.InactiveConns
				}
			}
			st.Services[i].Servers[j] = srv
		}
	}
	return st
}
