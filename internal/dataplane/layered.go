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
}

// Reconcile adds new mark rules, updates the services, then removes the
// mark rules no longer wanted.
func (l *Layered) Reconcile(ctx context.Context, want State) error {
	union := State{MarkRules: unionRules(l.rules, want.MarkRules)}
	if err := l.Marks.Reconcile(ctx, union); err != nil {
		return err
	}
	services := want
	services.MarkRules = nil
	if err := l.Services.Reconcile(ctx, services); err != nil {
		return err
	}
	if err := l.Marks.Reconcile(ctx, State{MarkRules: want.MarkRules}); err != nil {
		return err
	}
	l.rules = want.MarkRules
	return nil
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
