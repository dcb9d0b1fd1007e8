// Package api serves halb's status as JSON over a unix socket and reads it
// back for the command line.
package api

import (
	"time"

	"halb/internal/event"
)

// Status is the document `halb status --json` prints.
type Status struct {
	Node      string     `json:"node"`
	Version   string     `json:"version"`
	Dataplane string     `json:"dataplane"`
	Config    string     `json:"config"`
	Started   time.Time  `json:"started"`
	Reloaded  time.Time  `json:"reloaded"`
	VRRP      []Instance `json:"vrrp"`
	Services  []Service  `json:"services"`
	Pools     []Pool     `json:"pools"`
	// LastReconcile reports the last attempt to bring the data plane to
	// the desired state.
	LastReconcile Reconcile `json:"last_reconcile"`
	// BGP is the BGP speaker's state; nil when the node has none.
	BGP *BGP `json:"bgp,omitempty"`
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
}

// Pool is the quorum state of one pool.
type Pool struct {
	Name          string `json:"name"`
	Quorum        int    `json:"quorum"`
	HealthyWeight int    `json:"healthy_weight"`
	QuorumUp      bool   `json:"quorum_up"`
	SorryActive   bool   `json:"sorry_active"`
}

// Reconcile is the outcome of the last data plane update.
type Reconcile struct {
	At      time.Time `json:"at,omitzero"`
	Changes int       `json:"changes"`
	Error   string    `json:"error,omitempty"`
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
