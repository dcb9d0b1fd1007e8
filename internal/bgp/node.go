package bgp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"reflect"
	"slices"
	"sync"
	"time"

	"halb/internal/config"
	"halb/internal/event"
	"halb/internal/netif"
)

// Loopback holds the announced VIPs on the node, so that its data plane
// and local sockets accept their traffic.
type Loopback interface {
	Add([]netip.Prefix) error
	Remove([]netip.Prefix) error
}

// LinkLoopback is the loopback interface "lo", changed over netlink.
type LinkLoopback struct{}

// Add puts prefixes on lo.
func (LinkLoopback) Add(p []netip.Prefix) error { return netif.AddAddrs("lo", p) }

// Remove takes prefixes off lo.
func (LinkLoopback) Remove(p []netip.Prefix) error { return netif.RemoveAddrs("lo", p) }

// speaker is what a Node needs of a Speaker.
type speaker interface {
	Run(ctx context.Context) error
	Announce(netip.Prefix, Attrs) error
	Withdraw(netip.Prefix) error
	Peers() []PeerStatus
}

// Node announces a node's BGP VIPs: it keeps them on the loopback while
// it runs, keeps the sessions, and announces each VIP while Decide says
// the node can serve it. It is an announcer of the engine: Run, Reload,
// and Serving after every reconcile.
type Node struct {
	log *slog.Logger
	sp  speaker
	lo  Loopback

	// mu guards what follows; it is never held while gobgp may report.
	mu        sync.Mutex
	vips      []vipRoute // in configuration order
	drainTime time.Duration
	ready     Readiness // the last reported, without Draining and Stopping
	draining  bool
	stopping  bool
	decided   map[netip.Addr]Decision
	onLo      bool // the VIPs are on the loopback (Run runs)

	// emu guards report and sessions, apart from mu: session changes
	// come from gobgp's goroutines.
	emu      sync.Mutex
	report   func(event.Record)
	sessions map[netip.Addr]PeerStatus
}

type vipRoute struct {
	prefix netip.Prefix
	attrs  Attrs
}

// NewNode returns the announcer of cfg's bgp section, its VIPs kept on
// lo. It starts nothing before Run. The node dials its peers and listens
// for none: it binds no privileged port, and a router's own attempts are
// refused at once.
func NewNode(cfg *config.Config, log *slog.Logger, lo Loopback) (*Node, error) {
	sc, err := FromConfig(cfg.BGP)
	if err != nil {
		return nil, err
	}
	sc.ListenPort = -1
	n := newNode(nil, lo, log, cfg)
	sp, err := New(sc, log, n.sessionChanged)
	if err != nil {
		return nil, err
	}
	n.sp = sp
	return n, nil
}

func newNode(sp speaker, lo Loopback, log *slog.Logger, cfg *config.Config) *Node {
	n := &Node{log: log, sp: sp, lo: lo, decided: map[netip.Addr]Decision{}, sessions: map[netip.Addr]PeerStatus{}}
	n.configure(cfg)
	return n
}

// configure takes the announce lists and the drain time of cfg; n.mu is
// held or n is new.
func (n *Node) configure(cfg *config.Config) {
	n.vips = n.vips[:0]
	for _, a := range cfg.BGP.Announce {
		attrs := Attrs{MED: a.MED}
		for _, c := range a.Communities {
			attrs.Communities = append(attrs.Communities, uint32(c))
		}
		for _, v := range a.VIPs {
			n.vips = append(n.vips, vipRoute{prefix: netip.PrefixFrom(v, v.BitLen()), attrs: attrs})
		}
	}
	n.drainTime = cfg.BGP.DrainTime.D()
}

func (n *Node) prefixes() []netip.Prefix {
	out := make([]netip.Prefix, len(n.vips))
	for i, v := range n.vips {
		out[i] = v.prefix
	}
	return out
}

// ReportTo sets where the node reports its events (sessions, routes).
func (n *Node) ReportTo(report func(event.Record)) {
	n.emu.Lock()
	defer n.emu.Unlock()
	n.report = report
}

func (n *Node) emit(r event.Record) {
	n.emu.Lock()
	report := n.report
	n.emu.Unlock()
	if report != nil {
		report(r)
	}
}

// Run puts the VIPs on the loopback and keeps the sessions until ctx is
// done. Then it withdraws every route, keeps the node forwarding for
// bgp.drain_time if it announced any, closes the sessions and takes the
// VIPs off the loopback. It never sends VRRP events.
func (n *Node) Run(ctx context.Context, _ chan<- event.VRRP) error {
	n.mu.Lock()
	err := n.lo.Add(n.prefixes())
	n.onLo = err == nil
	n.mu.Unlock()
	if err != nil {
		return fmt.Errorf("bgp: putting the VIPs on the loopback: %w", err)
	}
	spCtx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- n.sp.Run(spCtx) }()
	select {
	case <-ctx.Done():
		n.drainOnStop()
		cancel()
		if err = <-errc; errors.Is(err, context.Canceled) {
			err = nil // stopped while starting
		}
	case err = <-errc:
	}
	n.mu.Lock()
	n.onLo = false
	if lerr := n.lo.Remove(n.prefixes()); lerr != nil {
		err = errors.Join(err, fmt.Errorf("bgp: taking the VIPs off the loopback: %w", lerr))
	}
	n.mu.Unlock()
	return err
}

// drainOnStop withdraws every route and, if one was announced, waits the
// drain time, so that the routers move the flows before the node stops
// forwarding them.
func (n *Node) drainOnStop() {
	n.mu.Lock()
	announced := slices.ContainsFunc(n.vips, func(v vipRoute) bool { return n.decided[v.prefix.Addr()].Announce })
	n.stopping = true
	n.apply()
	wait := n.drainTime
	n.mu.Unlock()
	if !announced || wait <= 0 {
		return
	}
	n.log.Info("bgp routes withdrawn; forwarding established flows before stopping", "drain_time", wait)
	t := time.NewTimer(wait)
	defer t.Stop()
	<-t.C
}

// Reload applies a new configuration's announce lists and drain time:
// new VIPs go on the loopback, removed ones are withdrawn and taken off
// it. Changes of the sessions are refused before (RestartNeeded).
func (n *Node) Reload(cfg *config.Config) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	old := n.prefixes()
	n.configure(cfg)
	cur := n.prefixes()
	var errs []error
	for _, p := range old {
		if slices.Contains(cur, p) {
			continue
		}
		errs = append(errs, n.sp.Withdraw(p))
		if d, ok := n.decided[p.Addr()]; ok && d.Announce {
			n.routeChanged(Decision{VIP: p.Addr(), Reason: ReasonRemoved})
		}
		delete(n.decided, p.Addr())
		if n.onLo {
			errs = append(errs, n.lo.Remove([]netip.Prefix{p}))
		}
	}
	if n.onLo {
		errs = append(errs, n.lo.Add(cur))
	}
	n.apply()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("bgp: reload: %w", err)
	}
	return nil
}

// RestartNeeded lists the changes of the bgp section a running node
// cannot apply: gobgp takes its AS number and router id when it starts,
// and the speaker its peers.
func RestartNeeded(cur, next config.BGP) []string {
	var out []string
	if cur.ASN != next.ASN {
		out = append(out, fmt.Sprintf("bgp.asn: changed from %d to %d; restart halb to apply it", cur.ASN, next.ASN))
	}
	if cur.RouterID != next.RouterID {
		out = append(out, "bgp.router_id: changed; restart halb to apply it")
	}
	if !reflect.DeepEqual(cur.Peers, next.Peers) {
		out = append(out, "bgp.peers: changed; restart halb to apply it (the sessions are set up at start)")
	}
	return out
}

// Serving takes what the node can serve after a reconcile and announces
// or withdraws each VIP accordingly.
func (n *Node) Serving(r Readiness) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.ready = r
	n.apply()
}

// Drain withdraws every route for good (until a restart); the node keeps
// forwarding what reaches it.
func (n *Node) Drain() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.draining = true
	n.apply()
}

// Draining reports whether Drain was called.
func (n *Node) Draining() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.draining
}

// apply decides each VIP and announces or withdraws it; n.mu is held.
func (n *Node) apply() {
	r := n.ready
	r.Draining, r.Stopping = n.draining, n.stopping
	vips := make([]netip.Addr, len(n.vips))
	for i, v := range n.vips {
		vips[i] = v.prefix.Addr()
	}
	for i, d := range Decide(vips, r) {
		v := n.vips[i]
		var err error
		if d.Announce {
			err = n.sp.Announce(v.prefix, v.attrs)
		} else {
			err = n.sp.Withdraw(v.prefix)
		}
		if err != nil {
			n.log.Error("bgp route", "vip", d.VIP, "announce", d.Announce, "err", err)
			continue
		}
		prev, had := n.decided[d.VIP]
		n.decided[d.VIP] = d
		if (had && prev.Announce != d.Announce) || (!had && d.Announce) {
			n.routeChanged(d)
		}
	}
}

// routeChanged logs and reports a VIP announced or withdrawn.
func (n *Node) routeChanged(d Decision) {
	summary := fmt.Sprintf("VIP %s withdrawn from the routers: %s", d.VIP, d.Reason)
	if d.Announce {
		summary = fmt.Sprintf("VIP %s announced to the routers", d.VIP)
	}
	n.log.Info(summary, "vip", d.VIP, "announced", d.Announce, "reason", d.Reason)
	now := time.Now()
	n.emit(event.Record{At: now, Kind: "bgp_route", Summary: summary,
		BGPRoute: &event.BGPRoute{At: now, VIP: d.VIP, Announced: d.Announce, Reason: string(d.Reason)}})
}

// sessionChanged reports a session's change of state or new error; the
// speaker has logged it.
func (n *Node) sessionChanged(e Event) {
	n.emu.Lock()
	prev, had := n.sessions[e.Address]
	n.sessions[e.Address] = e.PeerStatus
	n.emu.Unlock()
	up, wasUp := e.State == StateEstablished, had && prev.State == StateEstablished
	var summary string
	switch {
	case up && !wasUp:
		summary = fmt.Sprintf("BGP session with %s (AS %d) established", e.Address, e.ASN)
	case wasUp && !up:
		summary = fmt.Sprintf("BGP session with %s (AS %d) down: %s", e.Address, e.ASN, e.LastError)
	case !up && e.LastError != "" && e.LastError != prev.LastError:
		summary = fmt.Sprintf("BGP session with %s (AS %d) failed: %s", e.Address, e.ASN, e.LastError)
	default:
		return
	}
	n.emit(event.Record{At: e.Time, Kind: "bgp_session", Summary: summary,
		BGPSession: &event.BGPSession{At: e.Time, Peer: e.Address, ASN: e.ASN, State: string(e.State), Error: e.LastError}})
}

// VIPStatus is one announced VIP's state.
type VIPStatus struct {
	VIP       netip.Addr
	Announced bool
	Reason    Reason
}

// Status returns the sessions, in configuration order, and the VIPs'
// states, in configuration order.
func (n *Node) Status() ([]PeerStatus, []VIPStatus) {
	n.mu.Lock()
	vips := make([]VIPStatus, len(n.vips))
	for i, v := range n.vips {
		d, ok := n.decided[v.prefix.Addr()]
		if !ok {
			d.Reason = ReasonNotProgrammed
		}
		vips[i] = VIPStatus{VIP: v.prefix.Addr(), Announced: d.Announce, Reason: d.Reason}
	}
	n.mu.Unlock()
	return n.sp.Peers(), vips
}
