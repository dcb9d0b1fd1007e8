package daemon

import (
	"context"
	"net/netip"

	"halb/internal/api"
	"halb/internal/bgp"
	"halb/internal/dataplane/ipvs"
	"halb/internal/dataplane/nft"
	"halb/internal/health"
	"halb/internal/metrics"
	"halb/internal/vrrp"
)

// The parts report plain values of their own packages' types; these
// adapters give them to the metrics.

// ipvsCounters reads the kernel's IPVS service and destination stats.
type ipvsCounters struct{ d *ipvs.Dataplane }

func (c ipvsCounters) Counters(context.Context) ([]metrics.ServiceCounters, error) {
	st, err := c.d.Status()
	if err != nil {
		return nil, err
	}
	out := make([]metrics.ServiceCounters, 0, len(st))
	for _, s := range st {
		if !s.Managed {
			continue
		}
		sc := metrics.ServiceCounters{Key: s.Key, Connections: s.Connections, BytesIn: s.InBytes, BytesOut: s.OutBytes}
		for _, r := range s.Reals {
			sc.Reals = append(sc.Reals, metrics.RealCounters{Addr: r.Addr, Port: r.Port,
				ActiveConns: uint64(r.ActiveConns), InactiveConns: uint64(r.InactiveConns)})
		}
		out = append(out, sc)
	}
	return out, nil
}

// nftCounters reads the nftables data plane's counters.
type nftCounters struct{ d *nft.Dataplane }

func (c nftCounters) Counters(ctx context.Context) ([]metrics.ServiceCounters, error) {
	cs, err := c.d.Counters(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]metrics.ServiceCounters, 0, len(cs))
	for _, s := range cs {
		ms := metrics.ServiceCounters{Key: s.Key, Service: s.Service, Connections: s.Connections, HasPackets: true,
			PacketsIn: s.PacketsIn, PacketsOut: s.PacketsOut, BytesIn: s.BytesIn, BytesOut: s.BytesOut}
		for _, r := range s.Reals {
			ms.Reals = append(ms.Reals, metrics.RealCounters{Addr: r.Addr, Port: r.Port, Connections: r.Connections,
				PacketsIn: r.PacketsIn, PacketsOut: r.PacketsOut, BytesIn: r.BytesIn, BytesOut: r.BytesOut})
		}
		out = append(out, ms)
	}
	return out, nil
}

// vrrpCounters reads the VRRP instances' advert counters.
type vrrpCounters struct{ n *vrrp.Node }

func (c vrrpCounters) VRRPCounters() []metrics.VRRPCounters {
	cs := c.n.VRRPCounters()
	out := make([]metrics.VRRPCounters, 0, len(cs))
	for _, v := range cs {
		out = append(out, metrics.VRRPCounters{Instance: v.Instance, AdvertsSent: v.AdvertsSent,
			AdvertsReceived: v.AdvertsReceived, Rejected: v.Rejected})
	}
	return out
}

// healthResults gives the health checker's last results to the metrics.
type healthResults struct{ c *health.Checker }

func (h healthResults) CheckResults() []metrics.CheckResult {
	var out []metrics.CheckResult
	for _, s := range h.c.Status() {
		server := s.Addr
		if a, err := netip.ParseAddr(s.Addr); err == nil && s.Port != 0 {
			server = netip.AddrPortFrom(a, s.Port).String()
		}
		out = append(out, metrics.CheckResult{Pool: s.Pool, Server: server, Latency: s.Latency})
	}
	return out
}

// StatusChecks gives the health checker's last results to the status.
func (h healthResults) StatusChecks() []api.CheckResult {
	var out []api.CheckResult
	for _, s := range h.c.Status() {
		out = append(out, api.CheckResult{Pool: s.Pool, Address: s.Addr, Port: s.Port, OK: s.Last.OK,
			Reason: s.Reason, Duration: s.Latency, Consecutive: s.Consecutive})
	}
	return out
}

// notifierCounts gives the current notifiers' outcomes to the metrics.
type notifierCounts struct{ d *Daemon }

func (c notifierCounts) NotifierCounts() []metrics.NotifierCount {
	c.d.mu.Lock()
	n := c.d.notifier
	c.d.mu.Unlock()
	if n == nil {
		return nil
	}
	var out []metrics.NotifierCount
	for _, s := range n.Stats() {
		out = append(out, metrics.NotifierCount{Name: s.Name, Sent: s.Sent, Failed: s.Failed, Dropped: s.Dropped})
	}
	return out
}

// bgpState gives the BGP sessions and announced VIPs to the metrics.
type bgpState struct{ n *bgp.Node }

func (s bgpState) BGPState() ([]metrics.BGPSession, []metrics.BGPVIP) {
	peers, vips := s.n.Status()
	sessions := make([]metrics.BGPSession, 0, len(peers))
	for _, p := range peers {
		sessions = append(sessions, metrics.BGPSession{Peer: p.Address.String(), Established: p.State == bgp.StateEstablished})
	}
	out := make([]metrics.BGPVIP, 0, len(vips))
	for _, v := range vips {
		out = append(out, metrics.BGPVIP{VIP: v.VIP.String(), Announced: v.Announced})
	}
	return sessions, out
}
