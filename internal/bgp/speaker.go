// Package bgp announces a node's VIPs to its routers over BGP, so that N
// active nodes share them by the routers' ECMP. It embeds gobgp as a
// library: Speaker keeps the sessions (hold time, TCP MD5, multihop, BFD)
// and the announced host routes; Decide is the pure rule for which VIPs
// the node may announce.
package bgp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	api "github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	gobgp "github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"github.com/osrg/gobgp/v4/pkg/server"

	"halb/internal/config"
)

// Reconnect timing. By default gobgp waits 30 s (idle hold) after it
// resets a session itself, as BFD makes it do, which turned a 0.6 s stall
// of a router into half a minute without a route; idle holds after other
// drops are handled by followSessions. gobgp's timers have one-second
// resolution and its connect retry is at least 2 s.
const (
	idleHoldAfterReset = 1 // seconds
	connectRetry       = 2 // seconds
)

// Config is a speaker's configuration.
type Config struct {
	ASN uint32
	// RouterID; invalid: the local address of the route to the first peer.
	RouterID netip.Addr
	// ListenPort is the TCP port routers may connect to (0: 179; -1: none).
	ListenPort int32
	Peers      []Peer
}

// Peer is one BGP neighbour.
type Peer struct {
	Address  netip.Addr
	ASN      uint32
	Port     uint16 // 0: 179
	HoldTime time.Duration
	// Password is the TCP MD5 signature key ("" = none).
	Password string
	Multihop bool
	// BFD, when set, resets the session as soon as the peer is silent for
	// Interval × Multiplier.
	BFD *BFD
}

// BFD is a peer's BFD timing.
type BFD struct {
	Interval   time.Duration
	Multiplier int
}

// Attrs are the path attributes of an announced route.
type Attrs struct {
	Communities []uint32
	MED         uint32
}

func (a Attrs) equal(b Attrs) bool {
	return a.MED == b.MED && slices.Equal(a.Communities, b.Communities)
}

// FromConfig turns the bgp section of a halb configuration into a speaker
// configuration, reading the peers' password files.
func FromConfig(c config.BGP) (Config, error) {
	out := Config{ASN: c.ASN, RouterID: c.RouterID}
	for _, p := range c.Peers {
		peer := Peer{Address: p.Address, ASN: p.ASN, Port: p.Port, HoldTime: p.HoldTime.D(), Multihop: p.Multihop}
		if p.PasswordFile != "" {
			b, err := os.ReadFile(p.PasswordFile)
			if err != nil {
				return Config{}, fmt.Errorf("bgp peer %s: reading password: %w", p.Address, err)
			}
			peer.Password = strings.TrimRight(string(b), "\r\n")
		}
		if p.BFD != nil {
			peer.BFD = &BFD{Interval: p.BFD.Interval.D(), Multiplier: p.BFD.Multiplier}
		}
		out.Peers = append(out.Peers, peer)
	}
	return out, nil
}

// State is a BGP session's state (RFC 4271 §8).
type State string

// Session states.
const (
	StateIdle        State = "idle"
	StateConnect     State = "connect"
	StateActive      State = "active"
	StateOpenSent    State = "opensent"
	StateOpenConfirm State = "openconfirm"
	StateEstablished State = "established"
)

// PeerStatus is what the speaker knows about one session.
type PeerStatus struct {
	Address netip.Addr
	ASN     uint32
	State   State
	// Since is when the session was last established (zero when it is not).
	Since time.Time
	// LastError says why the session last went down ("" if it never did).
	LastError string
}

// Event is a session's change of state.
type Event struct {
	PeerStatus
	Time time.Time
}

// Speaker keeps BGP sessions with the configured peers and announces host
// routes to them. Its methods are safe for concurrent use.
type Speaker struct {
	cfg     Config
	log     *slog.Logger
	onEvent func(Event)

	mu     sync.Mutex        // guards srv, routes, cancel, done
	srv    *server.BgpServer // nil unless running
	routes map[netip.Prefix]*route
	cancel context.CancelFunc
	done   chan struct{}

	// pmu guards peers apart from mu: gobgp reports sessions from its own
	// goroutines, which may be busy with a call made under mu.
	pmu   sync.Mutex
	peers map[netip.Addr]*PeerStatus
	// emu makes onEvent calls one at a time, in order.
	emu sync.Mutex
	// kick wakes followSessions.
	kick chan struct{}
}

type route struct {
	attrs Attrs
	id    uuid.UUID // gobgp's id of the path while running
}

// New returns a speaker for cfg logging to log; it neither dials nor
// starts goroutines before Run. onEvent, if not nil, is called (from one goroutine at a time,
// and it must not block) on every session state change.
func New(cfg Config, log *slog.Logger, onEvent func(Event)) (*Speaker, error) {
	if cfg.ASN == 0 {
		return nil, errors.New("bgp: no local AS number")
	}
	if len(cfg.Peers) == 0 {
		return nil, errors.New("bgp: no peers")
	}
	s := &Speaker{cfg: cfg, log: log, onEvent: onEvent, routes: map[netip.Prefix]*route{}, peers: map[netip.Addr]*PeerStatus{}, kick: make(chan struct{}, 1)}
	for _, p := range cfg.Peers {
		if !p.Address.IsValid() {
			return nil, errors.New("bgp: a peer without an address")
		}
		s.peers[p.Address] = &PeerStatus{Address: p.Address, ASN: p.ASN, State: StateIdle}
	}
	return s, nil
}

// Run starts the sessions and keeps them until ctx ends or Close is
// called; then it closes them (the routers withdraw the node's routes at
// once) and returns.
func (s *Speaker) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s.mu.Lock()
	if s.done != nil {
		s.mu.Unlock()
		return errors.New("bgp: Run called twice")
	}
	s.cancel, s.done = cancel, make(chan struct{})
	s.mu.Unlock()
	defer close(s.done)

	rid := s.cfg.RouterID
	if !rid.IsValid() {
		var err error
		if rid, err = localAddrTowards(s.cfg.Peers[0].Address); err != nil {
			return fmt.Errorf("bgp: choosing the router id: %w", err)
		}
	}
	lvl := &slog.LevelVar{}
	lvl.Set(slog.LevelInfo)
	tap := &notificationTap{next: s.log.Handler(), onNotification: s.notification}
	srv := server.NewBgpServer(server.LoggerOption(slog.New(tap).With("component", "gobgp"), lvl))
	go srv.Serve()
	defer srv.Stop()
	if err := srv.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{
		Asn: s.cfg.ASN, RouterId: rid.String(), ListenPort: s.cfg.ListenPort,
	}}); err != nil {
		return fmt.Errorf("bgp: starting: %w", err)
	}
	if err := rejectLearnedRoutes(ctx, srv); err != nil {
		return err
	}
	if err := srv.WatchEvent(ctx, server.WatchEventMessageCallbacks{OnPeerUpdate: s.peerUpdate}, server.WatchPeer()); err != nil {
		return fmt.Errorf("bgp: watching sessions: %w", err)
	}
	for _, p := range s.cfg.Peers {
		if err := srv.AddPeer(ctx, &api.AddPeerRequest{Peer: apiPeer(p, false)}); err != nil {
			return fmt.Errorf("bgp: adding peer %s: %w", p.Address, err)
		}
	}
	s.mu.Lock()
	s.srv = srv
	var err error
	for pfx, r := range s.routes {
		err = errors.Join(err, s.addPath(pfx, r))
	}
	s.mu.Unlock()
	if err != nil {
		return err
	}
	s.log.Info("bgp speaker started", "asn", s.cfg.ASN, "router_id", rid, "peers", len(s.cfg.Peers))
	s.followSessions(ctx, srv)
	s.mu.Lock()
	s.srv = nil
	for _, r := range s.routes {
		r.id = uuid.UUID{}
	}
	s.mu.Unlock()
	return nil
}

// followSessions acts on the sessions' changes of state until ctx ends.
//
// A session that went down is re-created at once: gobgp otherwise waits a
// fixed 5 s (idle hold) before it dials again after any drop it did not
// cause itself, so that a router's restart or a thawed node would stay
// out of the ECMP set for 7 s instead of 2 s.
//
// BFD runs with each peer that has it while, and only while, the session
// is established, as routers do: a BFD session that outlives a reset
// would, with stale state, reset the next session as it comes up.
func (s *Speaker) followSessions(ctx context.Context, srv *server.BgpServer) {
	up := map[netip.Addr]bool{}  // established when last seen
	bfd := map[netip.Addr]bool{} // BFD on
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.kick:
		}
		for _, p := range s.cfg.Peers {
			s.pmu.Lock()
			established := s.peers[p.Address].State == StateEstablished
			s.pmu.Unlock()
			wasUp := up[p.Address]
			up[p.Address] = established
			switch {
			case wasUp && !established:
				err := srv.DeletePeer(ctx, &api.DeletePeerRequest{Address: p.Address.String()})
				if err == nil {
					err = srv.AddPeer(ctx, &api.AddPeerRequest{Peer: apiPeer(p, false)})
				}
				if err != nil {
					s.log.Error("bgp: re-creating a session", "peer", p.Address, "error", err)
				}
				bfd[p.Address] = false
			case established && p.BFD != nil && !bfd[p.Address]:
				if _, err := srv.UpdatePeer(ctx, &api.UpdatePeerRequest{Peer: apiPeer(p, true)}); err != nil {
					s.log.Error("bgp: starting BFD", "peer", p.Address, "error", err)
					continue
				}
				bfd[p.Address] = true
			}
		}
	}
}

// rejectLearnedRoutes keeps the routers' routes out of gobgp's table: the
// node only announces, and a router sending it a full table would
// otherwise cost memory for nothing. Locally originated routes have no
// neighbour and pass.
func rejectLearnedRoutes(ctx context.Context, srv *server.BgpServer) error {
	const set, policy = "routers", "announce-only"
	if err := srv.AddDefinedSet(ctx, &api.AddDefinedSetRequest{DefinedSet: &api.DefinedSet{
		DefinedType: api.DefinedType_DEFINED_TYPE_NEIGHBOR, Name: set, List: []string{"0.0.0.0/0", "::/0"},
	}}); err != nil {
		return fmt.Errorf("bgp: defining the neighbour set: %w", err)
	}
	if err := srv.AddPolicy(ctx, &api.AddPolicyRequest{Policy: &api.Policy{Name: policy, Statements: []*api.Statement{{
		Name:       "reject-learned",
		Conditions: &api.Conditions{NeighborSet: &api.MatchSet{Name: set, Type: api.MatchSet_TYPE_ANY}},
		Actions:    &api.Actions{RouteAction: api.RouteAction_ROUTE_ACTION_REJECT},
	}}}}); err != nil {
		return fmt.Errorf("bgp: adding the import policy: %w", err)
	}
	if err := srv.AddPolicyAssignment(ctx, &api.AddPolicyAssignmentRequest{Assignment: &api.PolicyAssignment{
		Name: "global", Direction: api.PolicyDirection_POLICY_DIRECTION_IMPORT,
		Policies: []*api.Policy{{Name: policy}}, DefaultAction: api.RouteAction_ROUTE_ACTION_ACCEPT,
	}}); err != nil {
		return fmt.Errorf("bgp: assigning the import policy: %w", err)
	}
	return nil
}

// Close ends Run, if it runs, and waits for it to close the sessions;
// before Run it does nothing.
func (s *Speaker) Close() error {
	s.mu.Lock()
	cancel, done := s.cancel, s.done
	s.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
	return nil
}

// Announce makes the speaker announce prefix with attrs to every peer,
// now if it runs, else from when it does. Announcing a route again with
// the same attributes changes nothing.
func (s *Speaker) Announce(prefix netip.Prefix, attrs Attrs) error {
	prefix = prefix.Masked()
	s.mu.Lock()
	defer s.mu.Unlock()
	if r, ok := s.routes[prefix]; ok {
		if r.attrs.equal(attrs) {
			return nil
		}
		if err := s.deletePath(r); err != nil {
			return err
		}
	}
	r := &route{attrs: Attrs{Communities: append([]uint32(nil), attrs.Communities...), MED: attrs.MED}}
	s.routes[prefix] = r
	return s.addPath(prefix, r)
}

// Withdraw stops announcing prefix; withdrawing a route that is not
// announced changes nothing.
func (s *Speaker) Withdraw(prefix netip.Prefix) error {
	prefix = prefix.Masked()
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.routes[prefix]
	if !ok {
		return nil
	}
	delete(s.routes, prefix)
	return s.deletePath(r)
}

// Announced returns the prefixes the speaker announces.
func (s *Speaker) Announced() []netip.Prefix {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]netip.Prefix, 0, len(s.routes))
	for p := range s.routes {
		out = append(out, p)
	}
	return out
}

// Peers returns the state of every session, in configuration order.
func (s *Speaker) Peers() []PeerStatus {
	s.pmu.Lock()
	defer s.pmu.Unlock()
	out := make([]PeerStatus, 0, len(s.cfg.Peers))
	for _, p := range s.cfg.Peers {
		out = append(out, *s.peers[p.Address])
	}
	return out
}

// addPath hands the route to gobgp when it runs; s.mu is held.
func (s *Speaker) addPath(prefix netip.Prefix, r *route) error {
	if s.srv == nil {
		return nil
	}
	path, err := apiPath(prefix, r.attrs)
	if err != nil {
		return fmt.Errorf("bgp: announcing %s: %w", prefix, err)
	}
	res, err := s.srv.AddPath(apiutil.AddPathRequest{Paths: []*apiutil.Path{path}})
	if err == nil && len(res) == 1 {
		err, r.id = res[0].Error, res[0].UUID
	}
	if err != nil {
		return fmt.Errorf("bgp: announcing %s: %w", prefix, err)
	}
	return nil
}

// deletePath withdraws the route from gobgp when it runs; s.mu is held.
func (s *Speaker) deletePath(r *route) error {
	if s.srv == nil || r.id == (uuid.UUID{}) {
		return nil
	}
	if err := s.srv.DeletePath(apiutil.DeletePathRequest{UUIDs: []uuid.UUID{r.id}}); err != nil {
		return fmt.Errorf("bgp: withdrawing: %w", err)
	}
	r.id = uuid.UUID{}
	return nil
}

// peerUpdate records a session's change of state and reports it.
func (s *Speaker) peerUpdate(ev *apiutil.WatchEventMessage_PeerEvent, at time.Time) {
	if ev.Type != apiutil.PEER_EVENT_STATE {
		return
	}
	st := ev.Peer.State
	s.update(st.NeighborAddress, at, func(p *PeerStatus) {
		p.State = stateOf(st.SessionState)
		if p.State != StateEstablished {
			p.Since = time.Time{}
		} else if p.Since.IsZero() {
			p.Since = at
		}
		switch st.DisconnectReason {
		case api.PeerState_DISCONNECT_REASON_NOTIFICATION_SENT, api.PeerState_DISCONNECT_REASON_NOTIFICATION_RECEIVED,
			api.PeerState_DISCONNECT_REASON_BAD_PEER_AS:
			// notification has recorded it, with more detail
		default:
			if p.State == StateIdle && st.DisconnectMessage != "" {
				p.LastError = fmt.Sprintf("peer %s (AS %d): %s", p.Address, p.ASN, st.DisconnectMessage)
			}
		}
	})
}

// notification records a NOTIFICATION sent to or received from a peer as
// the session's last error.
func (s *Speaker) notification(peer netip.Addr, sent bool, code, subcode uint8, reason string) {
	s.update(peer, time.Now(), func(p *PeerStatus) {
		p.LastError = describeNotification(*p, sent, code, subcode, reason)
	})
}

// update changes a peer's status with change, and logs and reports the
// change of state or error, if any.
func (s *Speaker) update(peer netip.Addr, at time.Time, change func(*PeerStatus)) {
	s.emu.Lock()
	defer s.emu.Unlock()
	s.pmu.Lock()
	p, ok := s.peers[peer]
	if !ok {
		s.pmu.Unlock()
		return
	}
	prev := *p
	change(p)
	e := Event{PeerStatus: *p, Time: at}
	s.pmu.Unlock()
	if prev.State == e.State && prev.LastError == e.LastError {
		return
	}
	if (prev.State == StateEstablished) != (e.State == StateEstablished) {
		select {
		case s.kick <- struct{}{}:
		default:
		}
	}
	switch {
	case e.State == StateEstablished && prev.State != StateEstablished:
		s.log.Info("bgp session established", "peer", e.Address, "asn", e.ASN)
	case prev.State == StateEstablished && e.State != StateEstablished:
		s.log.Warn("bgp session down", "peer", e.Address, "asn", e.ASN, "error", e.LastError)
	case e.LastError != prev.LastError && e.State != StateEstablished:
		s.log.Warn("bgp session failed", "peer", e.Address, "asn", e.ASN, "state", e.State, "error", e.LastError)
	}
	if s.onEvent != nil {
		s.onEvent(e)
	}
}

// describeNotification says what a NOTIFICATION means, naming the peer.
func describeNotification(p PeerStatus, sent bool, code, subcode uint8, reason string) string {
	what := gobgp.NewNotificationErrorCode(code, subcode).String()
	if reason != "" {
		what += ": " + reason
	}
	dir := "received from the router"
	if sent {
		dir = "sent to the router"
	}
	if code == gobgp.BGP_ERROR_OPEN_MESSAGE_ERROR && subcode == gobgp.BGP_ERROR_SUB_BAD_PEER_AS {
		if sent {
			return fmt.Sprintf("peer %s: its AS number is not %d as configured (notification %s: %s)", p.Address, p.ASN, dir, what)
		}
		return fmt.Sprintf("peer %s (AS %d): it does not expect this node's AS number (notification %s: %s)", p.Address, p.ASN, dir, what)
	}
	return fmt.Sprintf("peer %s (AS %d): notification %s: %s", p.Address, p.ASN, dir, what)
}

func stateOf(s gobgp.FSMState) State {
	switch s {
	case gobgp.BGP_FSM_CONNECT:
		return StateConnect
	case gobgp.BGP_FSM_ACTIVE:
		return StateActive
	case gobgp.BGP_FSM_OPENSENT:
		return StateOpenSent
	case gobgp.BGP_FSM_OPENCONFIRM:
		return StateOpenConfirm
	case gobgp.BGP_FSM_ESTABLISHED:
		return StateEstablished
	}
	return StateIdle
}

// apiPeer is gobgp's form of a peer: one address family (the peer's),
// the hold time with keepalives at a third of it, short reconnect timers,
// and BFD when configured and bfd is true.
func apiPeer(p Peer, bfd bool) *api.Peer {
	family := &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}
	if p.Address.Is6() {
		family.Afi = api.Family_AFI_IP6
	}
	hold := uint64(p.HoldTime / time.Second)
	out := &api.Peer{
		Conf: &api.PeerConf{NeighborAddress: p.Address.String(), PeerAsn: p.ASN, AuthPassword: p.Password},
		Timers: &api.Timers{Config: &api.TimersConfig{
			HoldTime: hold, KeepaliveInterval: max(hold/3, 1),
			ConnectRetry: connectRetry, IdleHoldTimeAfterReset: idleHoldAfterReset,
		}},
		Transport: &api.Transport{RemotePort: uint32(p.Port)},
		AfiSafis:  []*api.AfiSafi{{Config: &api.AfiSafiConfig{Family: family, Enabled: true}}},
	}
	if p.Multihop {
		out.EbgpMultihop = &api.EbgpMultihop{Enabled: true, MultihopTtl: 255}
	}
	if b := p.BFD; b != nil && bfd {
		us := uint32(b.Interval / time.Microsecond)
		out.Bfd = &api.BfdPeerConfig{Enabled: true, DesiredMinimumTxInterval: us, RequiredMinimumReceive: us, DetectionMultiplier: uint32(b.Multiplier)}
	}
	return out
}

// apiPath is a locally originated route to prefix. Its next hop is left
// unspecified, which gobgp replaces with the session's local address: the
// node's own address on the interface towards each peer.
func apiPath(prefix netip.Prefix, a Attrs) (*apiutil.Path, error) {
	nlri, err := gobgp.NewIPAddrPrefix(prefix)
	if err != nil {
		return nil, err
	}
	attrs := []gobgp.PathAttributeInterface{gobgp.NewPathAttributeOrigin(gobgp.BGP_ORIGIN_ATTR_TYPE_IGP)}
	family := gobgp.RF_IPv4_UC
	if prefix.Addr().Is4() {
		nh, err := gobgp.NewPathAttributeNextHop(netip.IPv4Unspecified())
		if err != nil {
			return nil, err
		}
		attrs = append(attrs, nh)
	} else {
		mp, err := gobgp.NewPathAttributeMpReachNLRI(gobgp.RF_IPv6_UC, []gobgp.PathNLRI{{NLRI: nlri}}, netip.IPv6Unspecified())
		if err != nil {
			return nil, err
		}
		attrs = append(attrs, mp)
		family = gobgp.RF_IPv6_UC
	}
	attrs = append(attrs, gobgp.NewPathAttributeMultiExitDisc(a.MED))
	if len(a.Communities) > 0 {
		attrs = append(attrs, gobgp.NewPathAttributeCommunities(a.Communities))
	}
	return &apiutil.Path{Family: family, Nlri: nlri, Attrs: attrs}, nil
}

// localAddrTowards returns the source address the kernel would use to
// reach peer (a UDP "connect" sends nothing).
func localAddrTowards(peer netip.Addr) (netip.Addr, error) {
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(peer, 179)))
	if err != nil {
		return netip.Addr{}, err
	}
	defer c.Close()
	a := c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap()
	if !a.Is4() {
		return netip.Addr{}, fmt.Errorf("the address towards %s is %s, not IPv4; set bgp.router_id", peer, a)
	}
	return a, nil
}
