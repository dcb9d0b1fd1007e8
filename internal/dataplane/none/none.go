// Package none is the dry-run data plane: it writes nothing to the kernel
// and logs, change by change, what a real data plane would apply.
package none

import (
	"context"
	"log/slog"

	"halb/internal/dataplane"
)

// Dataplane remembers the last state it was given and logs differences.
type Dataplane struct {
	log  *slog.Logger
	have dataplane.State
}

// New returns a dry-run data plane that logs to log.
func New(log *slog.Logger) *Dataplane { return &Dataplane{log: log} }

// Reconcile logs the changes from the previous state to want.
func (d *Dataplane) Reconcile(_ context.Context, want dataplane.State) error {
	diff := dataplane.Compute(d.have, want)
	if diff.Empty() {
		return nil
	}
	lines := diff.Lines()
	d.log.Info("dry run: the data plane would apply", "changes", len(lines))
	for _, l := range lines {
		d.log.Info("dry run: " + l)
	}
	d.have = want
	return nil
}

// Close does nothing: nothing was installed.
func (d *Dataplane) Close() error { return nil }
