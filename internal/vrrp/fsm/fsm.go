// Package fsm is the VRRP state machine of RFC 5798 (with keepalived's
// FAULT state and sync groups) as pure functions of events and time:
// Step and StepGroup return the next machine and the actions to perform,
// and perform nothing themselves.
package fsm

import (
	"fmt"
	"net/netip"
	"time"

	"halb/internal/vrrp/packet"
)

// State is a VRRP instance's state.
type State int

// States of RFC 5798, plus FAULT (an interface or tracked object is down).
const (
	Init State = iota
	Backup
	Master
	Fault
)

// States lists every state, in order.
var States = [...]State{Init, Backup, Master, Fault}

var stateNames = [...]string{Init: "INIT", Backup: "BACKUP", Master: "MASTER", Fault: "FAULT"}

// String returns the state's name as events, status, metrics and notify
// programs show it: INIT, BACKUP, MASTER or FAULT (keepalived's words).
func (s State) String() string {
	if s < 0 || int(s) >= len(stateNames) {
		return stateNames[Init]
	}
	return stateNames[s]
}

// Params are the fixed settings of one instance's state machine.
type Params struct {
	Version  int
	Priority int // configured, 1..255
	Interval time.Duration
	Preempt  bool
	// PreemptDelay: after start-up (or leaving FAULT), a backup does not
	// preempt a lower-priority master before this long.
	PreemptDelay time.Duration
	// Self is this node's address in the instance (the advert source):
	// reported as master, and compared for the tie-break.
	Self netip.Addr
}

// Machine is one instance's protocol state. It is a value: Step returns
// the next one.
type Machine struct {
	Params
	State State
	// Effective is the advertised priority after tracking weights.
	Effective int
	// MasterInterval is the master's advert interval (learnt in v3).
	MasterInterval time.Duration
	// Master is the current master's address, invalid when unknown;
	// MasterPriority is its advertised priority.
	Master         netip.Addr
	MasterPriority int
	// Since is when State was entered; Reason says why.
	Since  time.Time
	Reason string

	// advertAt (master) and downAt (backup) are the timers; zero is off.
	advertAt, downAt time.Time
	// downWhy says why the master-down timer will run out early.
	downWhy string
	// noPreemptUntil holds off preemption after start-up.
	noPreemptUntil time.Time
	faults         int
}

// Event is what happens to a machine; exactly one field is set.
type Event struct {
	Start bool // the instance starts (or leaves FAULT)
	Stop  bool // the instance stops: priority 0 and VIPs released
	Tick  bool // time passed: timers are checked against now
	// Advert is an advert received from Src (already checked to belong to
	// this instance).
	Advert *packet.Advert
	Src    netip.Addr
	// Effective sets the effective priority (tracking weights changed).
	Effective int
	// Fault sets (true) or clears (false) a fault, with Why in words
	// (Why also says why a Stop happens).
	Fault *bool
	Why   string
	// Follow is the state (Master or Backup) another member of the sync
	// group moved to; the machine follows it when it can.
	Follow State
}

// Action is something the runner must do, in order.
type Action int

// Actions.
const (
	SendAdvert    Action = iota // advert with the effective priority
	SendPriority0               // advert with priority 0 (release)
	AddVIPs                     // add the VIPs and announce them (GARP/NA)
	RemoveVIPs                  // remove the VIPs, stop announcing them
	// AnnounceVIPs announces the VIPs again: a master heard a lower
	// priority master (a healed split brain), whose MAC some clients
	// may have learnt.
	AnnounceVIPs
)

func (a Action) String() string {
	return [...]string{"SendAdvert", "SendPriority0", "AddVIPs", "RemoveVIPs", "AnnounceVIPs"}[a]
}

// NewMachine returns a machine in INIT.
func NewMachine(p Params) Machine {
	return Machine{Params: p, State: Init, Effective: p.Priority, MasterInterval: p.Interval}
}

// skew is the master-down skew for the effective priority.
func (m Machine) skew() time.Duration {
	if m.Version == 2 {
		return time.Duration(256-m.Effective) * time.Second / 256
	}
	return time.Duration(256-m.Effective) * m.MasterInterval / 256
}

// MasterDown is the master-down interval: 3 × the master's interval + skew.
func (m Machine) MasterDown() time.Duration { return 3*m.MasterInterval + m.skew() }

// Deadline is when the machine next needs a Tick (zero: none).
func (m Machine) Deadline() time.Time {
	switch m.State {
	case Master:
		return m.advertAt
	case Backup:
		return m.downAt
	}
	return time.Time{}
}

// Step applies one event at time now and returns the next machine and the
// actions to perform.
func Step(m Machine, ev Event, now time.Time) (Machine, []Action) {
	switch {
	case ev.Fault != nil:
		return m.fault(*ev.Fault, ev.Why, now)
	case ev.Effective != 0:
		if m.Priority == 255 {
			return m, nil // the address owner's priority does not move
		}
		m.Effective = min(max(ev.Effective, 1), 254)
		return m, nil
	case ev.Start:
		if m.State != Init || m.faults > 0 {
			return m, nil
		}
		return m.start(now, "started")
	case ev.Stop:
		acts := []Action(nil)
		if m.State == Master {
			acts = []Action{SendPriority0, RemoveVIPs}
		}
		why := "stopped"
		if ev.Why != "" {
			why = ev.Why
		}
		m.enter(Init, now, why)
		m.Master = netip.Addr{}
		return m, acts
	case ev.Advert != nil:
		return m.advert(ev.Advert, ev.Src, now)
	case ev.Tick:
		return m.tick(now)
	case ev.Follow == Master:
		if m.State != Backup || m.Outranked(now) {
			return m, nil
		}
		return m.becomeMaster(now, ev.Why)
	case ev.Follow == Backup:
		if m.State != Master || m.Priority == 255 {
			return m, nil
		}
		m.enter(Backup, now, ev.Why)
		m.Master = netip.Addr{}
		m.downAt = now.Add(m.MasterDown())
		return m, []Action{SendPriority0, RemoveVIPs}
	}
	return m, nil
}

// Outranked reports whether the machine is a backup of a live master it
// accepts on its own merits: one of higher or equal priority, or any
// master while it may not preempt.
func (m Machine) Outranked(now time.Time) bool {
	if m.State != Backup || !m.Master.IsValid() || m.downWhy != "" {
		return false
	}
	return !m.Preempt || m.MasterPriority >= m.Effective || now.Before(m.noPreemptUntil)
}

func (m *Machine) enter(s State, now time.Time, why string) {
	m.State, m.Since, m.Reason = s, now, why
	m.advertAt, m.downAt, m.downWhy = time.Time{}, time.Time{}, ""
}

func (m Machine) start(now time.Time, why string) (Machine, []Action) {
	m.noPreemptUntil = now.Add(m.PreemptDelay)
	if m.Priority == 255 {
		return m.becomeMaster(now, why+", address owner (priority 255)")
	}
	m.enter(Backup, now, why)
	m.MasterInterval = m.Interval
	m.Master = netip.Addr{}
	m.downAt = now.Add(m.MasterDown())
	return m, nil
}

func (m Machine) becomeMaster(now time.Time, why string) (Machine, []Action) {
	m.enter(Master, now, why)
	m.Master = m.Self
	m.advertAt = now.Add(m.Interval)
	return m, []Action{SendAdvert, AddVIPs}
}

func (m Machine) becomeBackup(a *packet.Advert, src netip.Addr, now time.Time, why string) (Machine, []Action) {
	m.enter(Backup, now, why)
	m.learn(a, src)
	m.downAt = now.Add(m.MasterDown())
	return m, []Action{RemoveVIPs}
}

func (m *Machine) learn(a *packet.Advert, src netip.Addr) {
	if m.Version == 3 {
		m.MasterInterval = a.Interval
	}
	m.Master, m.MasterPriority = src, int(a.Priority)
}

func (m Machine) fault(on bool, why string, now time.Time) (Machine, []Action) {
	if on {
		m.faults++
		if m.faults > 1 && m.State == Fault {
			return m, nil
		}
		var acts []Action
		if m.State == Master {
			acts = []Action{SendPriority0, RemoveVIPs}
		}
		m.enter(Fault, now, why)
		m.Master = netip.Addr{}
		return m, acts
	}
	if m.faults == 0 {
		return m, nil
	}
	m.faults--
	if m.faults > 0 || m.State != Fault {
		return m, nil
	}
	return m.start(now, why)
}

func (m Machine) advert(a *packet.Advert, src netip.Addr, now time.Time) (Machine, []Action) {
	switch m.State {
	case Backup:
		if a.Priority == 0 {
			// The master is leaving: take over after the skew alone.
			m.downAt = now.Add(m.skew())
			m.downWhy = fmt.Sprintf("priority 0 from %s", src)
			return m, nil
		}
		lower := int(a.Priority) < m.Effective
		if m.Preempt && lower && !now.Before(m.noPreemptUntil) {
			if m.Master.IsValid() && m.Master != src && int(a.Priority) < m.MasterPriority {
				// A third speaker, below the master this node hears:
				// discarded, not taken for the master.
				return m, nil
			}
			// Discard: the master-down timer runs out and this node preempts.
			m.Master, m.MasterPriority = src, int(a.Priority)
			m.downWhy = fmt.Sprintf("preempting lower priority %d from %s", a.Priority, src)
			return m, nil
		}
		m.learn(a, src)
		m.downAt = now.Add(m.MasterDown())
		m.downWhy = ""
		return m, nil
	case Master:
		if a.Priority == 0 {
			m.advertAt = now.Add(m.Interval)
			return m, []Action{SendAdvert}
		}
		p := int(a.Priority)
		if p > m.Effective || (p == m.Effective && addrGreater(src, m.Self)) {
			why := fmt.Sprintf("higher priority %d from %s", p, src)
			if p == m.Effective {
				why = fmt.Sprintf("equal priority %d from higher address %s", p, src)
			}
			return m.becomeBackup(a, src, now, why)
		}
		// A lower priority master: answer at once so that it learns the
		// master quickly, and win its clients back (keepalived does the
		// same).
		m.advertAt = now.Add(m.Interval)
		return m, []Action{SendAdvert, AnnounceVIPs}
	}
	return m, nil
}

func (m Machine) tick(now time.Time) (Machine, []Action) {
	switch m.State {
	case Master:
		if !now.Before(m.advertAt) {
			m.advertAt = now.Add(m.Interval)
			return m, []Action{SendAdvert}
		}
	case Backup:
		if !now.Before(m.downAt) {
			why := "master down timer expired"
			if m.downWhy != "" {
				why = m.downWhy
			}
			return m.becomeMaster(now, why)
		}
	}
	return m, nil
}

// addrGreater compares addresses as unsigned integers (the tie-break).
func addrGreater(a, b netip.Addr) bool { return a.Compare(b) > 0 }
