package daemon

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"

	"halb/internal/api"
	"halb/internal/bgp"
	"halb/internal/config"
	"halb/internal/engine"
	"halb/internal/metrics"
)

// BGP announces the VIPs of the bgp section's announce lists to the
// routers, while the node can serve them; they are on the loopback while
// it runs.
var BGP = bgpKind(bgp.LinkLoopback{})

// bgpKind is BGP with the VIPs kept on lo.
func bgpKind(lo bgp.Loopback) AnnouncerKind {
	return AnnouncerKind{
		Name:       "BGP",
		Key:        "bgp",
		Configured: func(cfg *config.Config) bool { return cfg.BGP.Enabled() },
		New: func(cfg *config.Config, log *slog.Logger, m *metrics.Metrics) (engine.Announcer, error) {
			n, err := bgp.NewNode(cfg, log.With("subsystem", "bgp"), lo)
			if err != nil {
				return nil, err
			}
			m.AddBGPSource(bgpState{n})
			return bgpAnnouncer{n}, nil
		},
	}
}

// bgpAnnouncer tells the BGP node what the engine found the node serves.
type bgpAnnouncer struct{ *bgp.Node }

// Serving hands the engine's view to the node's Decide.
func (a bgpAnnouncer) Serving(s engine.Serving) { a.Node.Serving(readiness(s)) }

func readiness(s engine.Serving) bgp.Readiness {
	r := bgp.Readiness{Programmed: s.Programmed, Services: map[netip.Addr][]bgp.ServiceQuorum{}}
	for vip, svcs := range s.VIPs {
		for _, svc := range svcs {
			r.Services[vip] = append(r.Services[vip], bgp.ServiceQuorum{Name: svc.Name, Quorum: svc.Quorum, Pending: !svc.Checked})
		}
	}
	return r
}

// bgpNode finds the BGP node among the announcers (nil: none).
func bgpNode(a engine.Announcer) *bgp.Node {
	switch a := a.(type) {
	case bgpAnnouncer:
		return a.Node
	case announcers:
		for _, x := range a {
			if n := bgpNode(x); n != nil {
				return n
			}
		}
	}
	return nil
}

// bgpStatus is the status document's bgp object.
func bgpStatus(n *bgp.Node) *api.BGP {
	peers, vips := n.Status()
	out := &api.BGP{Draining: n.Draining(), Sessions: []api.BGPSession{}, Announced: []api.BGPVIP{}}
	for _, p := range peers {
		out.Sessions = append(out.Sessions, api.BGPSession{Peer: p.Address.String(), ASN: p.ASN, State: string(p.State),
			Since: p.Since, LastError: p.LastError})
	}
	for _, v := range vips {
		out.Announced = append(out.Announced, api.BGPVIP{VIP: v.VIP.String(), Announced: v.Announced, Reason: string(v.Reason)})
	}
	return out
}

// errNoBGP answers a drain on a node without BGP.
var errNoBGP = errors.New("this node announces no VIP over BGP (no bgp section): there is nothing to drain")

// drain withdraws every route (start) and reports the progress: what is
// still announced and, with IPVS, the connections still forwarded.
func (d *Daemon) drain(ctx context.Context, start bool) (api.Drain, error) {
	if d.bgp == nil {
		return api.Drain{}, errNoBGP
	}
	if start {
		d.bgp.Drain()
	}
	_, vips := d.bgp.Status()
	out := api.Drain{Withdrawn: []string{}, Announced: []string{}, ActiveConnections: -1}
	for _, v := range vips {
		if v.Announced {
			out.Announced = append(out.Announced, v.VIP.String())
		} else {
			out.Withdrawn = append(out.Withdrawn, v.VIP.String())
		}
	}
	if d.dp.Name == "ipvs" && d.dp.Counters != nil {
		cs, err := d.dp.Counters.Counters(ctx)
		if err != nil {
			return out, err
		}
		out.ActiveConnections = 0
		for _, s := range cs {
			for _, r := range s.Reals {
				out.ActiveConnections += int64(r.ActiveConns)
			}
		}
	}
	return out, nil
}
