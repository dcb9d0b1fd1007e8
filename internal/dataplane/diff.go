package dataplane

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Op is the kind of a change.
type Op int

// Change kinds.
const (
	Add Op = iota
	Update
	Delete
)

func (o Op) String() string { return [...]string{"+", "~", "-"}[o] }

// ServiceChange adds, updates (scheduler, flags, persistence) or deletes a
// virtual service. Reals are changed separately.
type ServiceChange struct {
	Op   Op
	Have VirtualService // for Update and Delete
	Want VirtualService // for Add and Update
}

// RealChange adds, updates (weight, forward) or deletes one real server.
type RealChange struct {
	Op      Op
	Service ServiceKey
	Have    Real
	Want    Real
}

// RuleChange adds or deletes one mark rule.
type RuleChange struct {
	Op   Op
	Rule MarkRule
}

// Diff is what must change to go from one state to another.
type Diff struct {
	Services []ServiceChange
	Reals    []RealChange
	Rules    []RuleChange
	// Sync is set when the sync daemons must change; SyncWant is the target.
	Sync     bool
	SyncWant *SyncDaemons
}

// Empty reports whether nothing changes.
func (d Diff) Empty() bool {
	return len(d.Services) == 0 && len(d.Reals) == 0 && len(d.Rules) == 0 && !d.Sync
}

// Size is the number of individual changes.
func (d Diff) Size() int {
	n := len(d.Services) + len(d.Reals) + len(d.Rules)
	if d.Sync {
		n++
	}
	return n
}

// SameAttributes reports whether two services agree on everything but their
// reals.
func SameAttributes(a, b VirtualService) bool {
	return a.Key == b.Key && a.Scheduler == b.Scheduler && slices.Equal(a.Flags, b.Flags) &&
		a.Persistence == b.Persistence && (a.Persistence == 0 || a.Netmask == b.Netmask)
}

// Compute returns the changes that turn have into want. Reals of a deleted
// service are not listed (they go with it); reals of an added one are.
//
// States in the same order (the usual case: one state and its successor)
// are compared element by element without building indexes, so a small
// change on a large state costs a walk over it and no allocations.
func Compute(have, want State) Diff {
	var d Diff
	d.Services, d.Reals = diffServices(have.Services, want.Services)
	d.Rules = diffRules(have.MarkRules, want.MarkRules)
	if !syncEqual(have.Sync, want.Sync) {
		d.Sync, d.SyncWant = true, want.Sync
	}
	return d
}

func diffServices(have, want []VirtualService) ([]ServiceChange, []RealChange) {
	var svcs []ServiceChange
	var reals []RealChange
	var haveIndex map[ServiceKey]int // built only when the orders differ
	aligned := len(have) == len(want)
	for i, w := range want {
		var h VirtualService
		ok := i < len(have) && have[i].Key == w.Key
		if ok {
			h = have[i]
		} else {
			aligned = false
			if haveIndex == nil {
				haveIndex = make(map[ServiceKey]int, len(have))
				for j, s := range have {
					haveIndex[s.Key] = j
				}
			}
			var j int
			if j, ok = haveIndex[w.Key]; ok {
				h = have[j]
			}
		}
		switch {
		case !ok:
			svcs = append(svcs, ServiceChange{Op: Add, Want: w})
		case !SameAttributes(h, w):
			svcs = append(svcs, ServiceChange{Op: Update, Have: h, Want: w})
		}
		reals = appendRealChanges(reals, w.Key, h.Reals, w.Reals)
	}
	if aligned {
		return svcs, reals // same keys in the same order: nothing to delete
	}
	wantKeys := make(map[ServiceKey]bool, len(want))
	for _, w := range want {
		wantKeys[w.Key] = true
	}
	for _, h := range have {
		if !wantKeys[h.Key] {
			svcs = append(svcs, ServiceChange{Op: Delete, Have: h})
		}
	}
	return svcs, reals
}

// appendRealChanges appends the changes that turn one service's reals from
// have into want.
func appendRealChanges(out []RealChange, key ServiceKey, have, want []Real) []RealChange {
	if sameSlice(have, want) || slices.Equal(have, want) {
		return out
	}
	h := make(map[netip.AddrPort]Real, len(have))
	for _, r := range have {
		h[r.AddrPort()] = r
	}
	w := make(map[netip.AddrPort]bool, len(want))
	for _, r := range want {
		id := r.AddrPort()
		w[id] = true
		old, ok := h[id]
		switch {
		case !ok:
			out = append(out, RealChange{Op: Add, Service: key, Want: r})
		case old != r:
			out = append(out, RealChange{Op: Update, Service: key, Have: old, Want: r})
		}
	}
	for _, r := range have {
		if !w[r.AddrPort()] {
			out = append(out, RealChange{Op: Delete, Service: key, Have: r})
		}
	}
	return out
}

// sameSlice reports whether a and b are the same memory: a state and its
// successor share the reals of the services that did not change.
func sameSlice(a, b []Real) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

func diffRules(have, want []MarkRule) []RuleChange {
	if slices.Equal(have, want) {
		return nil
	}
	var out []RuleChange
	haveRules := make(map[MarkRule]bool, len(have))
	for _, r := range have {
		haveRules[r] = true
	}
	wantRules := make(map[MarkRule]bool, len(want))
	for _, r := range want {
		wantRules[r] = true
		if !haveRules[r] {
			out = append(out, RuleChange{Op: Add, Rule: r})
		}
	}
	for _, r := range have {
		if !wantRules[r] {
			out = append(out, RuleChange{Op: Delete, Rule: r})
		}
	}
	return out
}

func syncEqual(a, b *SyncDaemons) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

// Lines renders the diff for people, one change a line.
func (d Diff) Lines() []string {
	var out []string
	for _, r := range d.Rules {
		if r.Op == Add {
			out = append(out, "+ "+ruleString(r.Rule))
		}
	}
	for _, c := range d.Services {
		switch c.Op {
		case Add:
			out = append(out, "+ service "+serviceString(c.Want))
		case Update:
			out = append(out, fmt.Sprintf("~ service %s (was %s)", serviceString(c.Want), serviceString(c.Have)))
		case Delete:
			out = append(out, "- service "+c.Have.Key.String())
		}
	}
	for _, c := range d.Reals {
		switch c.Op {
		case Add:
			out = append(out, fmt.Sprintf("+ real %s -> %s weight %d %s", c.Service, c.Want.AddrPort(), c.Want.Weight, forwardString(c.Want)))
		case Update:
			out = append(out, fmt.Sprintf("~ real %s -> %s weight %d %s (was weight %d %s)", c.Service, c.Want.AddrPort(),
				c.Want.Weight, forwardString(c.Want), c.Have.Weight, forwardString(c.Have)))
		case Delete:
			out = append(out, fmt.Sprintf("- real %s -> %s", c.Service, c.Have.AddrPort()))
		}
	}
	for _, r := range d.Rules {
		if r.Op == Delete {
			out = append(out, "- "+ruleString(r.Rule))
		}
	}
	if d.Sync {
		if d.SyncWant == nil {
			out = append(out, "- sync daemons")
		} else {
			out = append(out, fmt.Sprintf("~ sync daemons master=%t backup=%t on %s id %d", d.SyncWant.Master, d.SyncWant.Backup, d.SyncWant.Interface, d.SyncWant.SyncID))
		}
	}
	return out
}

// forwardString is "dr", "nat", or "tun" with its tunnel when it is not
// plain ipip ("tun gue:6080 csum").
func forwardString(r Real) string {
	if r.Tunnel.Type <= IPIP && r.Tunnel.Checksum <= NoChecksum {
		return r.Forward
	}
	return r.Forward + " " + r.Tunnel.String()
}

func ruleString(r MarkRule) string {
	ports := fmt.Sprint(r.PortLo)
	if r.PortHi != r.PortLo {
		ports = fmt.Sprintf("%d-%d", r.PortLo, r.PortHi)
	}
	return fmt.Sprintf("mark %s %s port %s -> %d (%s)", r.Protocol, r.VIP, ports, r.Mark, r.Service)
}

func serviceString(s VirtualService) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", s.Key, s.Scheduler)
	if len(s.Flags) > 0 {
		fmt.Fprintf(&b, " flags %s", strings.Join(s.Flags, ","))
	}
	if s.Persistence > 0 {
		fmt.Fprintf(&b, " persistent %s/%d", s.Persistence, s.Netmask)
	}
	fmt.Fprintf(&b, " (%s)", s.Service)
	return b.String()
}

// Render writes a whole state as text, one object a line, in canonical
// order: the form golden files and the dry-run data plane use.
func Render(s State) string {
	s.Sort()
	d := Compute(State{}, s)
	return strings.Join(d.Lines(), "\n") + "\n"
}
