package ipvs

import (
	"context"
	"fmt"

	"halb/internal/dataplane"
)

// Watch compares, every verification period until ctx is done, the
// kernel's copies of the services halb applied (and their real servers)
// with what it applied: IPVS notifies no changes. When another process
// deleted or edited one, it forgets what it knew, so that the next
// Reconcile reads the kernel, and calls changed with what differs: the
// caller reconciles. A read that fails twice in a row is logged and tried
// again next period.
func (d *Dataplane) Watch(ctx context.Context, changed func(reason string)) error {
	t := d.clock.NewTimer(d.verifyEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C():
		}
		reason, err := d.verify()
		switch {
		case err != nil:
			d.log.Warn("ipvs: compare the kernel's services with those applied", "err", err)
		case reason != "":
			d.log.Info(reason + "; the services will be read in full")
			changed(reason)
		}
		t.Reset(d.verifyEvery)
	}
}

// verify dumps the kernel's services of those applied and compares them
// with what was applied. On a difference it forgets what was applied and
// says what differs; "" when nothing does, or nothing is known to
// compare with (the next Reconcile reads the kernel anyway).
func (d *Dataplane) verify() (string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.have == nil || d.k == nil {
		return "", nil
	}
	applied := make(map[dataplane.ServiceKey]bool, len(d.have.Services))
	for _, s := range d.have.Services {
		applied[s.Key] = true
	}
	keep := func(k dataplane.ServiceKey) bool { return applied[k] }
	kernel, err := d.dump(keep)
	if err != nil {
		// A service deleted between the list and its real servers' dump
		// fails it: the second look sees it gone.
		if kernel, err = d.dump(keep); err != nil {
			return "", err
		}
	}
	diff := dataplane.Compute(kernel, *d.have)
	if diff.Empty() {
		return "", nil
	}
	d.have, d.daemons = nil, nil
	return describeDrift(diff), nil
}

// describeDrift names the first difference between the kernel (the diff's
// have) and what halb applied (its want), and counts the others.
func describeDrift(diff dataplane.Diff) string {
	var first string
	switch {
	case len(diff.Services) > 0:
		c := diff.Services[0]
		if c.Op == dataplane.Add {
			first = fmt.Sprintf("ipvs service %s deleted by another process", c.Want.Key)
		} else {
			first = fmt.Sprintf("ipvs service %s changed by another process", c.Have.Key)
		}
	case len(diff.Reals) > 0:
		c := diff.Reals[0]
		switch c.Op {
		case dataplane.Add:
			first = fmt.Sprintf("real %s of ipvs service %s deleted by another process", c.Want.AddrPort(), c.Service)
		case dataplane.Update:
			first = fmt.Sprintf("real %s of ipvs service %s changed by another process", c.Want.AddrPort(), c.Service)
		default:
			first = fmt.Sprintf("real %s added to ipvs service %s by another process", c.Have.AddrPort(), c.Service)
		}
	}
	if n := len(diff.Services) + len(diff.Reals) - 1; n > 0 {
		first += fmt.Sprintf(" (and %d more differences)", n)
	}
	return first
}
