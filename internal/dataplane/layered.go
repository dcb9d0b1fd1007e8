package dataplane

import (
	"context"
	"errors"
)

// Layered drives two data planes that depend on each other: Marks installs
// the firewall-mark rules and Services the virtual services that match
// those marks (nftables + IPVS). A mark rule is installed before the
// services that use it and removed only after them.
type Layered struct {
	Marks    Dataplane
	Services Dataplane
	// rules are the mark rules of the last successful update.
	rules []MarkRule
	// changes is what the last successful update changed in both layers;
	// counted is set when both count their changes.
	changes int
	counted bool
}

// Reconcile adds new mark rules, updates the services, then removes the
// mark rules no longer wanted.
func (l *Layered) Reconcile(ctx context.Context, want State) error {
	changes, counted := 0, true
	step := func(dp Dataplane, s State) error {
		if err := dp.Reconcile(ctx, s); err != nil {
			return err
		}
		n, ok := ChangesOf(dp)
		changes, counted = changes+n, counted && ok
		return nil
	}
	if err := step(l.Marks, State{MarkRules: unionRules(l.rules, want.MarkRules)}); err != nil {
		return err
	}
	services := want
	services.MarkRules = nil
	if err := step(l.Services, services); err != nil {
		return err
	}
	if err := step(l.Marks, State{MarkRules: want.MarkRules}); err != nil {
		return err
	}
	l.rules, l.changes, l.counted = want.MarkRules, changes, counted
	return nil
}

// countedChanges returns what the last successful Reconcile changed in
// both layers, and false when a layer does not count.
func (l *Layered) countedChanges() (int, bool) {
	if !l.counted {
		return 0, false
	}
	return l.changes, true
}

// Close closes both data planes.
func (l *Layered) Close() error {
	return errors.Join(l.Services.Close(), l.Marks.Close())
}

func unionRules(a, b []MarkRule) []MarkRule {
	seen := map[MarkRule]bool{}
	var out []MarkRule
	for _, r := range append(append([]MarkRule{}, a...), b...) {
		if !seen[r] {
			seen[r] = true
			out = append(out, r)
		}
	}
	return out
}
