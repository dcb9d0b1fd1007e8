package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"reflect"
	"slices"
	"strings"
	"time"

	"halb/internal/api"
	"halb/internal/bgp"
	"halb/internal/config"
)

// RefusedError is a reload refused: the running configuration stays.
type RefusedError struct {
	// Reason says why, for the log.
	Reason string
	// Errors are the configuration's errors, or the changes only a
	// restart applies.
	Errors []string
}

func (e *RefusedError) Error() string {
	return "reload refused: " + e.Reason + ": " + strings.Join(e.Errors, "; ")
}

// Reload reads the configuration again and applies what changed: the
// engine's parts keep what did not, notifiers are replaced when their
// settings changed and the metrics listener moves. A configuration with
// errors, or one changing what only a start sets up, is refused with a
// *RefusedError and recorded as an event; nothing changes then. An error
// of another kind is a reload applied with errors.
func (d *Daemon) Reload(ctx context.Context) error {
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	d.notifySD(d.sd.Reloading())
	defer func() { d.notifySD(d.sd.Ready("reloaded; " + d.readyStatus())) }()
	next, diags := d.opts.Load()
	if next == nil {
		errs := strings.Split(strings.TrimSpace(diags.Errors().String()), "\n")
		return d.refuse(ctx, "the new configuration has errors; the running one stays", errs)
	}
	for _, dg := range diags {
		d.log.Warn("reload: " + dg.String())
	}
	d.opts.Overrides.Apply(next) // what the command line overrode stays overridden
	apply, errs := d.prepareReload(next)
	if len(errs) > 0 {
		return d.refuse(ctx, "the running configuration stays", errs)
	}
	apply()
	d.mu.Lock()
	d.refused = nil
	d.mu.Unlock()
	err := d.eng.Reload(ctx, next)
	if st, serr := d.eng.Status(ctx); serr == nil {
		d.metrics.Retain(api.FromEngine(st))
	} else {
		err = errors.Join(err, fmt.Errorf("read the status: %w", serr))
	}
	if err != nil {
		return fmt.Errorf("reload: %w", err)
	}
	return nil
}

// refuse records a refused reload as an event and returns it as an error.
func (d *Daemon) refuse(ctx context.Context, reason string, errs []string) error {
	d.mu.Lock()
	d.refused = &api.Reload{At: time.Now(), Errors: errs}
	d.mu.Unlock()
	if err := d.eng.ReloadRefused(ctx, d.opts.Path, errs); err != nil {
		d.log.Warn("the refused reload is not in the events", "err", err)
	}
	return &RefusedError{Reason: reason, Errors: errs}
}

// prepareReload readies what a new configuration changes around the
// engine — notifiers for a changed notify section, a listener on a
// changed api.metrics — without applying it. It refuses settings that
// only a restart applies. apply swaps the new parts in: events from then
// on go to the new notifiers, while the old ones still send what they had
// queued; the old listener closes once the new one serves.
func (d *Daemon) prepareReload(next *config.Config) (apply func(), errs []string) {
	cur := d.config()
	errs = restartNeeded(d.parts.Announcers, cur, next)
	renotify := notifyChanged(cur, next)
	var n Notifier
	if renotify {
		var err error
		if n, err = d.parts.Notifier(next, d.status, d.log.With("subsystem", "notify"), d.opts.Version); err != nil {
			errs = append(errs, fmt.Sprintf("notify: %v", err))
		}
	}
	move := cur.API.Metrics != next.API.Metrics
	var ln net.Listener
	if move && next.API.Metrics != "" && len(errs) == 0 {
		var err error
		if ln, err = d.parts.Listen("tcp", next.API.Metrics); err != nil {
			errs = append(errs, fmt.Sprintf("api.metrics: %v (still serving on %q)", err, cur.API.Metrics))
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return func() {
		d.mu.Lock()
		if d.closed {
			d.mu.Unlock()
			if ln != nil {
				if err := ln.Close(); err != nil {
					d.log.Warn("closing the unused metrics listener", "err", err)
				}
			}
			return
		}
		d.cfg = next
		var stopOld func()
		if renotify {
			stopOld = d.stopNote
			d.notifier, d.stopNote = n, d.runNotifier(n)
			d.retiring.Add(1)
		}
		old := d.srv
		if move {
			d.srv = d.serve(ln)
		}
		d.mu.Unlock()
		if renotify {
			d.log.Info("reload: notifiers replaced; the old ones send what they had queued", "notifiers", notifierNames(n))
			go func() {
				defer d.retiring.Done()
				stopOld()
			}()
		}
		if move {
			d.shutdown(old)
			d.log.Info("reload: metrics listener moved", "from", cur.API.Metrics, "to", next.API.Metrics)
		}
	}, nil
}

// notifyChanged tells whether the notifiers of next differ from cur's.
func notifyChanged(cur, next *config.Config) bool {
	return !reflect.DeepEqual(cur.Notify, next.Notify) || cur.Node != next.Node || cur.ScriptUser != next.ScriptUser ||
		!reflect.DeepEqual(cur.VRRP.SyncGroups, next.VRRP.SyncGroups)
}

// restartNeeded lists the changes a running halb cannot apply: the data
// plane is built once, with its table and state directory; the status
// socket is bound once; an announcer runs only if it was configured at
// start; the BGP sessions are set up once; the network namespace is entered
// once, before anything opens.
func restartNeeded(kinds []AnnouncerKind, cur, next *config.Config) []string {
	var out []string
	if cur.Dataplane != next.Dataplane {
		out = append(out, fmt.Sprintf("dataplane: changed from %s to %s; restart halb to apply it", cur.Dataplane, next.Dataplane))
	}
	if cur.API.Socket != next.API.Socket {
		out = append(out, fmt.Sprintf("api.socket: changed from %s to %s; restart halb to apply it", cur.API.Socket, next.API.Socket))
	}
	if cur.API.SocketGroup != next.API.SocketGroup {
		out = append(out, fmt.Sprintf("api.socket_group: changed from %q to %q; restart halb to apply it", cur.API.SocketGroup, next.API.SocketGroup))
	}
	out = append(out, announcersAdded(kinds, cur, next)...)
	if cur.BGP.Enabled() {
		out = append(out, bgp.RestartNeeded(cur.BGP, next.BGP)...)
	}
	if !reflect.DeepEqual(cur.NFTables, next.NFTables) {
		out = append(out, "nftables: changed; restart halb to apply it")
	}
	if cur.StateDir != next.StateDir {
		out = append(out, "state_dir: changed; restart halb to apply it")
	}
	if cur.NetNamespace != next.NetNamespace {
		out = append(out, fmt.Sprintf("net_namespace: changed from %q to %q; restart halb to apply it", cur.NetNamespace, next.NetNamespace))
	}
	return out
}

func notifierNames(n Notifier) []string {
	if n == nil {
		return nil
	}
	var out []string
	for _, s := range n.Stats() {
		out = append(out, s.Name)
	}
	return slices.DeleteFunc(out, func(s string) bool { return s == "intake" })
}
