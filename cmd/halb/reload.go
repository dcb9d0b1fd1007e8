package main

import (
	"fmt"
	"net"
	"reflect"
	"slices"

	"halb/internal/config"
	"halb/internal/notify"
)

// prepareReload readies what a new configuration changes around the
// engine — a notifier for a changed notify section, a listener on a
// changed api.metrics — without applying it. It refuses settings that
// only a restart applies. apply swaps the new parts in: events from then
// on go to the new notifiers, while the old ones still send what they had
// queued; the old listener closes once the new one serves.
func (o *ops) prepareReload(next *config.Config) (apply func(), errs []string) {
	o.mu.Lock()
	cur := o.cfg
	o.mu.Unlock()
	errs = restartNeeded(cur, next)
	renotify := notifyChanged(cur, next)
	var n *notify.Notifier
	if renotify {
		var err error
		if n, err = o.newNotifier(next); err != nil {
			errs = append(errs, fmt.Sprintf("notify: %v", err))
		}
	}
	move := cur.API.Metrics != next.API.Metrics
	var ln net.Listener
	if move && next.API.Metrics != "" && len(errs) == 0 {
		var err error
		if ln, err = net.Listen("tcp", next.API.Metrics); err != nil {
			errs = append(errs, fmt.Sprintf("api.metrics: %v (still serving on %q)", err, cur.API.Metrics))
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return func() {
		o.mu.Lock()
		if o.closed {
			o.mu.Unlock()
			if ln != nil {
				ln.Close()
			}
			return
		}
		o.cfg = next
		var stopOld func()
		if renotify {
			stopOld = o.stopNote
			o.notifier, o.stopNote = n, o.runNotifier(n)
			o.retiring.Add(1)
		}
		old := o.srv
		if move {
			o.srv = o.serve(ln)
		}
		o.mu.Unlock()
		if renotify {
			o.log.Info("reload: notifiers replaced; the old ones send what they had queued", "notifiers", notifierNames(n))
			go func() {
				defer o.retiring.Done()
				stopOld()
			}()
		}
		if move {
			shutdown(old)
			o.log.Info("reload: metrics listener moved", "from", cur.API.Metrics, "to", next.API.Metrics)
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
// socket is bound once; VRRP runs only if instances were configured at
// start.
func restartNeeded(cur, next *config.Config) []string {
	var out []string
	if cur.Dataplane != next.Dataplane {
		out = append(out, fmt.Sprintf("dataplane: changed from %s to %s; restart halb to apply it", cur.Dataplane, next.Dataplane))
	}
	if cur.API.Socket != next.API.Socket {
		out = append(out, fmt.Sprintf("api.socket: changed from %s to %s; restart halb to apply it", cur.API.Socket, next.API.Socket))
	}
	if len(cur.VRRP.Instances) == 0 && len(next.VRRP.Instances) > 0 {
		out = append(out, "vrrp.instances: this node started without VRRP; restart halb to start it")
	}
	if !reflect.DeepEqual(cur.NFTables, next.NFTables) {
		out = append(out, "nftables: changed; restart halb to apply it")
	}
	if cur.StateDir != next.StateDir {
		out = append(out, "state_dir: changed; restart halb to apply it")
	}
	return out
}

func notifierNames(n *notify.Notifier) []string {
	if n == nil {
		return nil
	}
	var out []string
	for _, s := range n.Stats() {
		out = append(out, s.Name)
	}
	return slices.DeleteFunc(out, func(s string) bool { return s == "intake" })
}
