// Package event defines what halb's subsystems report to the engine: VRRP
// transitions, health transitions, and the engine's own happenings. Every
// event says what changed and why, in words an operator can act on.
package event

import (
	"net/netip"
	"time"
)

// VRRP reports an instance's state change, or a change of its priority or
// master while the state stays.
type VRRP struct {
	At        time.Time
	Instance  string
	VRID      int
	Interface string
	Old, New  string // INIT, BACKUP, MASTER, FAULT
	// Priority is the configured priority, EffectivePriority the one
	// advertised after tracking weights.
	Priority          int
	EffectivePriority int
	// Master is the current master's address: this node's own when it is
	// master, the invalid Addr when unknown.
	Master netip.Addr
	// Reason says why: "master down timer expired", "higher priority 150
	// from 192.0.2.11", "priority 0 from 192.0.2.11", "interface eth0 down"…
	Reason string
	// Notice marks an event that reports something that happened to the
	// instance (said in Reason) while its state, priority and master
	// stayed: adverts of another VRRP version heard, a VIP put back.
	Notice bool `json:",omitempty"`
}

// Health reports a real server's health change in one pool.
type Health struct {
	At   time.Time
	Pool string
	Addr netip.Addr
	Port uint16 // the server's configured port (0 = the service's)
	// Check describes the check ("http :80 /healthz").
	Check string
	Up    bool
	// Weight is the effective weight while up (slow start, exec weight);
	// negative means the configured weight.
	Weight int
	// Reason is the last result in words: "HTTP 503 from
	// 198.51.100.12:80 /healthz, 3rd failure in a row".
	Reason string
	// Consecutive counts the results in a row that led to this state.
	Consecutive int
	Latency     time.Duration
}

// Quorum reports a pool losing or regaining its quorum.
type Quorum struct {
	At            time.Time
	Pool          string
	Up            bool
	HealthyWeight int
	Quorum        int
	// SorryActive says whether the sorry server now takes the traffic.
	SorryActive bool
}

// Reload reports a configuration reload, applied or refused.
type Reload struct {
	At      time.Time
	File    string
	Applied bool
	// Changes lists what the reload changed in the data plane, or, when
	// refused, the configuration errors.
	Changes []string
	Errors  []string
}

// DataplaneError reports a failed data plane update (it is retried).
type DataplaneError struct {
	At  time.Time
	Err string
}

// Record is one entry of the event stream: exactly one field is set.
type Record struct {
	Seq       uint64          `json:"seq"`
	At        time.Time       `json:"at"`
	Node      string          `json:"node"`
	Kind      string          `json:"kind"` // vrrp, health, quorum, reload, dataplane
	Summary   string          `json:"summary"`
	VRRP      *VRRP           `json:"vrrp,omitempty"`
	Health    *Health         `json:"health,omitempty"`
	Quorum    *Quorum         `json:"quorum,omitempty"`
	Reload    *Reload         `json:"reload,omitempty"`
	Dataplane *DataplaneError `json:"dataplane,omitempty"`
}
