// Package api serves halb's status as JSON over a unix socket and reads it
// back for the command line.
package api

import (
	"net/netip"
	"time"

	"halb/internal/dataplane"

	"halb/internal/event"
)

// Status is the document `halb status --json` prints.
type Status struct {
	// SchemaVersion is event.SchemaVersion.
	SchemaVersion int        `json:"schema_version"`
	Node          string     `json:"node"`
	Version       string     `json:"version"`
	Dataplane     string     `json:"dataplane"`
	Config        string     `json:"config"`
	Started       time.Time  `json:"started"`
	Reloaded      time.Time  `json:"reloaded"`
	VRRP          []Instance `json:"vrrp"`
	Services      []Service  `json:"services"`
	Pools         []Pool     `json:"pools"`
	// LastReconcile reports the last attempt to bring the data plane to
	// the desired state.
	LastReconcile Reconcile `json:"last_reconcile"`
	// LastReload is the outcome of the last configuration reload (the
	// start, until one).
	LastReload Reload `json:"last_reload"`
	// BGP is the BGP speaker's state; nil when the node has none.
	BGP *BGP `json:"bgp,omitempty"`
	// Sysctls are the kernel settings the data plane set, read back
	// ("net.ipv4.vs.sloppy_tcp": "1"); absent when it set none.
	Sysctls map[string]string `json:"sysctls,omitempty"`
	// Events are the most recent events, oldest first.
	Events []event.Record `json:"events"`
}

// BGP is the state of the node's BGP sessions and announced VIPs.
type BGP struct {
	// Draining: `halb drain` withdrew every route.
	Draining  bool         `json:"draining"`
	Sessions  []BGPSession `json:"sessions"`
	Announced []BGPVIP     `json:"announced"`
}

// BGPSession is one BGP session.
type BGPSession struct {
	Peer  string `json:"peer"`
	ASN   uint32 `json:"asn"`
	State string `json:"state"` // idle, connect, active, opensent, openconfirm, established
	// Since is when the session was established (absent when it is not).
	Since     time.Time `json:"since,omitzero"`
	LastError string    `json:"last_error"`
}

// BGPVIP is one VIP of the announce lists: announced or not, and why.
type BGPVIP struct {
	VIP       string `json:"vip"`
	Announced bool   `json:"announced"`
	// Reason: ready, no_quorum, health_pending, no_service,
	// not_programmed, draining, stopping.
	Reason string `json:"reason"`
}

// Instance is one VRRP instance as this node sees it.
type Instance struct {
	Name              string    `json:"name"`
	Interface         string    `json:"interface"`
	VRID              int       `json:"vrid"`
	State             string    `json:"state"`
	Priority          int       `json:"priority"`
	EffectivePriority int       `json:"effective_priority"`
	Master            string    `json:"master"`
	Since             time.Time `json:"since"`
	Reason            string    `json:"reason"`
	VIPs              []string  `json:"vips"`
}

// Service is one (service, VIP, port item) of the configuration.
type Service struct {
	Name      string   `json:"name"`
	Protocol  string   `json:"protocol"`
	VIP       string   `json:"vip"` // "" for a mark service without VIPs
	Family    int      `json:"family"`
	Port      uint16   `json:"port"`
	PortEnd   uint16   `json:"port_end,omitempty"`
	Mark      uint32   `json:"mark"`
	Scheduler string   `json:"scheduler"`
	Forward   string   `json:"forward"`
	Pool      string   `json:"pool"`
	Servers   []Server `json:"servers"`
	// Connections counts the connections the data plane has scheduled
	// (absent without kernel counters: halb status shows them, the
	// document other readers get does not).
	Connections *uint64 `json:"connections,omitempty"`
}

// Key is the data plane's key of the service entry.
func (s Service) Key() dataplane.ServiceKey {
	if s.Mark != 0 {
		return dataplane.ServiceKey{Family: s.Family, Mark: s.Mark}
	}
	a, _ := netip.ParseAddr(s.VIP)
	return dataplane.ServiceKey{Family: s.Family, Protocol: s.Protocol, Addr: a, Port: s.Port}
}

// Server is a real server of a service, with its health.
type Server struct {
	Address         string `json:"address"`
	Port            uint16 `json:"port"`
	Weight          int    `json:"weight"`
	EffectiveWeight int    `json:"effective_weight"`
	Healthy         bool   `json:"healthy"`
	Reason          string `json:"reason"`
	// LastChange is when the health last changed (zero: never).
	LastChange time.Time `json:"last_change,omitzero"`
	// LatencyMS is the duration of the last check, in milliseconds.
	LatencyMS float64 `json:"latency_ms"`
	// OnFailure is what becomes of the server when it fails (inhibit or
	// remove), its own or the pool's.
	OnFailure string `json:"on_failure,omitempty"`
	// MaxConnections and MinConnections are its connection thresholds
	// (0: none).
	MaxConnections uint32 `json:"max_connections,omitempty"`
	MinConnections uint32 `json:"min_connections,omitempty"`
	// Checks names the checks the server runs ("http:8080") when it has
	// its own, not the pool's.
	Checks []string `json:"checks,omitempty"`
	// LastCheck is the last check's result: "ok", "failed", or "" while
	// the server has not been checked (or has no check).
	LastCheck string `json:"last_check"`
	// LastCheckMS is the last check's duration, in milliseconds.
	LastCheckMS float64 `json:"last_check_ms"`
	// Consecutive counts the last check's result in a row.
	Consecutive int `json:"consecutive"`
	// ActiveConnections and InactiveConnections are IPVS's counts now,
	// Connections the nftables data plane's count so far; each is absent
	// when the data plane does not count it.
	ActiveConnections   *uint64 `json:"active_connections,omitempty"`
	InactiveConnections *uint64 `json:"inactive_connections,omitempty"`
	Connections         *uint64 `json:"connections,omitempty"`
}

// CheckResult is the last health check of a pool's server.
type CheckResult struct {
	Pool, Address string
	Port          uint16
	OK            bool
	// Reason says what the check saw, and how many times in a row.
	Reason      string
	Duration    time.Duration
	Consecutive int
}

// WithChecks sets each server's reason, latency and last check from the
// last check results (in st's own lists): they are what a server is
// doing now, where the engine knows only its last change of health.
func (st Status) WithChecks(checks []CheckResult) Status {
	type key struct {
		pool, addr string
		port       uint16
	}
	last := make(map[key]CheckResult, len(checks))
	for _, c := range checks {
		last[key{c.Pool, c.Address, c.Port}] = c
	}
	for i, s := range st.Services {
		for j, srv := range s.Servers {
			c, ok := last[key{s.Pool, srv.Address, srv.Port}]
			if !ok {
				continue
			}
			srv.Reason, srv.Consecutive = c.Reason, c.Consecutive
			srv.LastCheck = "failed"
			if c.OK {
				srv.LastCheck = "ok"
			}
			srv.LastCheckMS = event.Millis(c.Duration)
			srv.LatencyMS = srv.LastCheckMS
			st.Services[i].Servers[j] = srv
		}
	}
	return st
}

// Pool is the quorum state of one pool.
type Pool struct {
	Name          string `json:"name"`
	Quorum        int    `json:"quorum"`
	HealthyWeight int    `json:"healthy_weight"`
	QuorumUp      bool   `json:"quorum_up"`
	SorryActive   bool   `json:"sorry_active"`
}

// Reload is the outcome of a configuration reload.
type Reload struct {
	At      time.Time `json:"at"`
	Applied bool      `json:"applied"`
	// Errors say why a refused reload was refused; the running
	// configuration stayed.
	Errors []string `json:"errors"`
}

// Reconcile is the outcome of the last data plane update.
type Reconcile struct {
	At      time.Time `json:"at,omitzero"`
	Changes int       `json:"changes"`
	Error   string    `json:"error,omitempty"`
}

// Events is the document `halb events --json` prints: recent events,
// oldest first.
type Events struct {
	// SchemaVersion is event.SchemaVersion.
	SchemaVersion int            `json:"schema_version"`
	Events        []event.Record `json:"events"`
}

// Drain is the progress of `halb drain`.
type Drain struct {
	// Withdrawn are the VIPs no longer announced; Announced those still
	// announced (empty once the drain has taken effect).
	Withdrawn []string `json:"withdrawn"`
	Announced []string `json:"announced"`
	// ActiveConnections counts the connections the node still forwards;
	// -1 when its data plane cannot tell (nftables).
	ActiveConnections int64 `json:"active_connections"`
}
