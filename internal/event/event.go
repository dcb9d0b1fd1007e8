// Package event defines what halb's subsystems report to the engine: VRRP
// transitions, health transitions, BGP sessions and routes, and the
// engine's own happenings. Every
// event says what changed and why, in words an operator can act on.
package event

import (
	"net/netip"
	"time"
)

// VRRP reports an instance's state change, or a change of its priority or
// master while the state stays.
type VRRP struct {
	At        time.Time `json:"at"`
	Instance  string    `json:"instance"`
	VRID      int       `json:"vrid"`
	Interface string    `json:"interface"`
	Old       string    `json:"old"` // INIT, BACKUP, MASTER, FAULT
	New       string    `json:"new"`
	// Priority is the configured priority, EffectivePriority the one
	// advertised after tracking weights.
	Priority          int `json:"priority"`
	EffectivePriority int `json:"effective_priority"`
	// Master is the current master's address: this node's own when it is
	// master, the invalid Addr ("" in JSON) when unknown.
	Master netip.Addr `json:"master"`
	// Reason says why: "master down timer expired", "higher priority 150
	// from 192.0.2.11", "priority 0 from 192.0.2.11", "interface eth0 down"…
	Reason string `json:"reason"`
	// Notice marks an event that reports something that happened to the
	// instance (said in Reason) while its state, priority and master
	// stayed: adverts of another VRRP version or interval heard, a VIP put
	// back.
	Notice bool `json:"notice,omitempty"`
}

// Health reports a real server's health change in one pool.
type Health struct {
	At   time.Time  `json:"at"`
	Pool string     `json:"pool"`
	Addr netip.Addr `json:"address"`
	Port uint16     `json:"port"` // the server's configured port (0 = the service's)
	// Check describes the check ("http :80 /healthz").
	Check string `json:"check"`
	Up    bool   `json:"up"`
	// Weight is the effective weight while up (slow start, exec weight);
	// negative means the configured weight.
	Weight int `json:"weight"`
	// Reason is the last result in words: "HTTP 503 from
	// 198.51.100.12:80 /healthz, 3rd failure in a row".
	Reason string `json:"reason"`
	// Consecutive counts the results in a row that led to this state.
	Consecutive int `json:"consecutive"`
	// Latency is the last check's duration; JSON has it as latency_ms.
	Latency time.Duration `json:"-"`
}

// Quorum reports a pool losing or regaining its quorum.
type Quorum struct {
	At            time.Time `json:"at"`
	Pool          string    `json:"pool"`
	Up            bool      `json:"up"`
	HealthyWeight int       `json:"healthy_weight"`
	Quorum        int       `json:"quorum"`
	// SorryActive says whether the sorry server now takes the traffic.
	SorryActive bool `json:"sorry_active"`
}

// Reload reports a configuration reload, applied or refused.
type Reload struct {
	At      time.Time `json:"at"`
	File    string    `json:"file"`
	Applied bool      `json:"applied"`
	// Changes lists what the reload changed in the data plane, or, when
	// refused, the configuration errors.
	Changes []string `json:"changes"`
	Errors  []string `json:"errors"`
}

// DataplaneError reports a failed data plane update (it is retried).
type DataplaneError struct {
	At  time.Time `json:"at"`
	Err string    `json:"error"`
}

// Restored reports halb's data plane state put back in the kernel after
// the data plane found it changed by another process (or could not tell,
// having lost notifications).
type Restored struct {
	At time.Time `json:"at"`
	// Reason is what the data plane found: "table halb changed by nft
	// (pid 4242)".
	Reason string `json:"reason"`
	// Changes is how many objects and elements were put back.
	Changes int `json:"changes"`
}

// BGPSession reports a BGP session's change of state, or a new error
// while it is down.
type BGPSession struct {
	At    time.Time  `json:"at"`
	Peer  netip.Addr `json:"peer"`
	ASN   uint32     `json:"asn"`
	State string     `json:"state"` // idle, connect, active, opensent, openconfirm, established
	// Error says why the session last went down ("" if it never did).
	Error string `json:"error,omitempty"`
}

// BGPRoute reports a VIP's route announced to the routers or withdrawn.
type BGPRoute struct {
	At        time.Time  `json:"at"`
	VIP       netip.Addr `json:"vip"`
	Announced bool       `json:"announced"`
	// Reason says why: ready, no_quorum, health_pending, no_service,
	// not_programmed, draining, stopping, removed.
	Reason string `json:"reason"`
}

// Record is one entry of the event stream: exactly one field is set.
type Record struct {
	Seq       uint64          `json:"seq"`
	At        time.Time       `json:"at"`
	Node      string          `json:"node"`
	Kind      string          `json:"kind"` // vrrp, health, quorum, reload, dataplane, dataplane_restored, bgp_session, bgp_route
	Summary   string          `json:"summary"`
	VRRP      *VRRP           `json:"vrrp,omitempty"`
	Health    *Health         `json:"health,omitempty"`
	Quorum    *Quorum         `json:"quorum,omitempty"`
	Reload    *Reload         `json:"reload,omitempty"`
	Dataplane *DataplaneError `json:"dataplane,omitempty"`
	// Restored is set for the kind dataplane_restored.
	Restored *Restored `json:"dataplane_restored,omitempty"`
	// BGPSession and BGPRoute are set for the kinds bgp_session, bgp_route.
	BGPSession *BGPSession `json:"bgp_session,omitempty"`
	BGPRoute   *BGPRoute   `json:"bgp_route,omitempty"`
}
