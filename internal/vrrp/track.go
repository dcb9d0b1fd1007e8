package vrrp

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"
	"time"

	"halb/internal/clock"
	"halb/internal/config"
	"halb/internal/event"
	"halb/internal/netif"
	"halb/internal/proc"
	"halb/internal/vrrp/fsm"
)

// Tracking: an instance's own interface and its track_interfaces put it
// in FAULT (weight 0) or move its priority (weight ≠ 0); so do its track
// scripts; and a FAULT of one member of a sync group puts the others in
// FAULT too.

const groupSource = "sync group"

// initTracking reads the current link states and script results into a
// new instance.
func (r *runner) initTracking(ins *instance) {
	names := []string{ins.cfg.Interface}
	for _, t := range ins.cfg.TrackInterface {
		names = append(names, t.Name)
	}
	for _, name := range names {
		if _, known := r.linkUp[name]; !known {
			up, err := r.net.LinkUp(name)
			if err != nil {
				r.log.Warn("tracked interface not found; counted as down", "instance", ins.cfg.Name, "interface", name, "err", err)
			}
			r.linkUp[name] = up
		}
	}
	r.track(ins, r.clock.Now())
}

// track recomputes an instance's faults and weights from the link and
// script states, stepping the machine when they changed.
func (r *runner) track(ins *instance, now time.Time) {
	faults := map[string]string{}
	weights := map[string]int{}
	in := ins.cfg
	if !r.linkUp[in.Interface] && !in.IgnoreInterfaceDown {
		faults["interface "+in.Interface] = fmt.Sprintf("interface %s down", in.Interface)
	}
	for _, t := range in.TrackInterface {
		r.apply1(faults, weights, "interface "+t.Name, t.Weight, r.linkUp[t.Name], fmt.Sprintf("tracked interface %s down", t.Name))
	}
	for _, t := range in.TrackScripts {
		sr := r.scripts[t.Name]
		if sr == nil {
			continue
		}
		w := t.Weight
		if w == 0 {
			w = sr.cfg.Weight
		}
		r.apply1(faults, weights, "script "+t.Name, w, sr.up, fmt.Sprintf("tracking script %s failing", t.Name))
	}
	r.trackProcesses(ins, faults, weights)
	if why, ok := ins.faults[groupSource]; ok {
		faults[groupSource] = why
	}
	r.setFaults(ins, faults, now)
	if ins.group != "" {
		r.syncGroups()
	}
	if !reflect.DeepEqual(weights, ins.weights) {
		ins.weights = weights
		r.step(ins, fsm.Event{Effective: r.effective(ins)}, now)
		if ins.group != "" {
			// The group's priority may have moved with this member's.
			for _, o := range r.members(ins.group) {
				if o != ins {
					r.step(o, fsm.Event{Effective: r.effective(o)}, now)
				}
			}
		}
	}
}

func (r *runner) apply1(faults map[string]string, weights map[string]int, src string, w int, up bool, why string) {
	switch {
	case w == 0 && !up:
		faults[src] = why
	case w > 0 && up:
		weights[src] = w
	case w < 0 && !up:
		weights[src] = w
	}
}

// setFaults steps the machine into or out of FAULT as the set of fault
// reasons becomes non-empty or empty.
func (r *runner) setFaults(ins *instance, faults map[string]string, now time.Time) {
	was, is := len(ins.faults) > 0, len(faults) > 0
	old := ins.faults
	ins.faults = faults
	switch {
	case is && !was:
		on := true
		r.step(ins, fsm.Event{Fault: &on, Why: faultWhy(faults)}, now)
	case was && !is:
		off := false
		why := "recovered"
		for src := range old {
			why = strings.TrimSuffix(src, " down") + " recovered"
		}
		r.step(ins, fsm.Event{Fault: &off, Why: why}, now)
	}
}

func faultWhy(faults map[string]string) string {
	var w []string
	for _, v := range faults {
		w = append(w, v)
	}
	sort.Strings(w)
	return strings.Join(w, ", ")
}

// effective is the configured priority plus the active tracking
// weights, lowered to the group's priority: the lowest such priority
// among the members of its sync group (address owners aside).
func (r *runner) effective(ins *instance) int {
	p := ownEffective(ins)
	if g, who := r.groupLimit(ins); who != "" && g < p {
		p = g
	}
	return p
}

func ownEffective(ins *instance) int {
	p := ins.cfg.Priority
	for _, w := range ins.weights {
		p += w
	}
	return min(max(p, 1), 254)
}

// groupLimit is the lowest own effective priority among the other
// members of ins's sync group and the member that has it (0 and "" when
// there is none).
func (r *runner) groupLimit(ins *instance) (int, string) {
	low, who := 0, ""
	if ins.group == "" {
		return low, who
	}
	for _, o := range r.members(ins.group) {
		if o == ins || o.cfg.Priority == 255 {
			continue
		}
		if p := ownEffective(o); who == "" || p < low || p == low && o.cfg.Name < who {
			low, who = p, o.cfg.Name
		}
	}
	return low, who
}

func (r *runner) weightWhy(ins *instance) string {
	var w []string
	for src, v := range ins.weights {
		w = append(w, fmt.Sprintf("%s %+d", src, v))
	}
	sort.Strings(w)
	if g, who := r.groupLimit(ins); who != "" && g < ownEffective(ins) {
		w = append(w, fmt.Sprintf("sync group %s: %s at %d", ins.group, who, g))
	}
	if len(w) == 0 {
		return "no tracking weight applies"
	}
	return strings.Join(w, ", ")
}

// link handles an interface going up or down.
func (r *runner) link(lc netif.LinkChange) {
	if was, known := r.linkUp[lc.Name]; known && was == lc.Up {
		return
	}
	r.linkUp[lc.Name] = lc.Up
	now := r.clock.Now()
	for _, ins := range r.instances {
		r.track(ins, now)
	}
}

// syncGroups puts every member of a group in FAULT while one member has a
// fault of its own.
func (r *runner) syncGroups() {
	now := r.clock.Now()
	for _, g := range r.cfg.VRRP.SyncGroups {
		var bad []string
		for _, name := range g.Instances {
			if ins := r.instances[name]; ins != nil {
				for src := range ins.faults {
					if src != groupSource {
						bad = append(bad, name)
						break
					}
				}
			}
		}
		for _, name := range g.Instances {
			ins := r.instances[name]
			if ins == nil {
				continue
			}
			faults := map[string]string{}
			for k, v := range ins.faults {
				if k != groupSource {
					faults[k] = v
				}
			}
			others := slices.DeleteFunc(slices.Clone(bad), func(s string) bool { return s == name })
			if len(others) > 0 {
				faults[groupSource] = fmt.Sprintf("sync group %s: %s in FAULT", g.Name, strings.Join(others, ", "))
			}
			if !reflect.DeepEqual(faults, ins.faults) {
				r.setFaults(ins, faults, now)
			}
		}
	}
}

// scriptRun is a running tracking script.
type scriptRun struct {
	cfg    config.Script
	stop   context.CancelFunc
	up     bool
	streak int // results in a row against the current state
}

type scriptResult struct {
	name string
	cfg  config.Script
	ok   bool
	out  string
}

// syncScripts starts the scripts cfg uses and stops those it no longer
// does; an unchanged script keeps running with its state.
func (r *runner) syncScripts(cfg *config.Config) {
	used := map[string]bool{}
	for _, in := range cfg.VRRP.Instances {
		for _, t := range in.TrackScripts {
			used[t.Name] = true
		}
	}
	want := map[string]config.Script{}
	for _, s := range cfg.VRRP.Scripts {
		if used[s.Name] {
			// The user it runs as is part of what it is: a new
			// script_user restarts it.
			if s.User == "" {
				s.User = cfg.ScriptUser
			}
			want[s.Name] = s
		}
	}
	for name, sr := range r.scripts {
		if w, ok := want[name]; !ok || !reflect.DeepEqual(w, sr.cfg) {
			sr.stop()
			delete(r.scripts, name)
		}
	}
	for name, s := range want {
		if r.scripts[name] != nil {
			continue
		}
		ctx, cancel := context.WithCancel(context.Background())
		// A script starts up (as keepalived's do) until fall failures.
		sr := &scriptRun{cfg: s, stop: cancel, up: true}
		r.scripts[name] = sr
		go runScript(ctx, r.clock, s, r.scriptRes, r.done)
	}
}

// runScript runs a tracking script every interval with its timeout, as
// s.User; a user that cannot be resolved makes every run a failure.
func runScript(ctx context.Context, clock clock.Clock, s config.Script, out chan<- scriptResult, done <-chan struct{}) {
	u, uerr := proc.LookupUser(s.User)
	for {
		res := scriptResult{name: s.Name, cfg: s}
		if uerr != nil {
			res.out = uerr.Error()
		} else {
			r := proc.Run(ctx, proc.Cmd{Path: s.Command[0], Args: s.Command[1:], User: u, Timeout: s.Timeout.D()})
			if ctx.Err() != nil {
				return
			}
			res.ok, res.out = r.Err == nil, strings.TrimSpace(string(r.Output))
			if r.TimedOut {
				res.out = fmt.Sprintf("timed out after %s", s.Timeout)
			}
		}
		select {
		case out <- res:
		case <-done:
			return
		case <-ctx.Done():
			return
		}
		select {
		case <-clock.After(s.Interval.D()):
		case <-ctx.Done():
			return
		}
	}
}

// script applies one result with rise/fall counting.
func (r *runner) script(res scriptResult) {
	sr := r.scripts[res.name]
	if sr == nil || !reflect.DeepEqual(sr.cfg, res.cfg) {
		return
	}
	if res.ok == sr.up {
		sr.streak = 0
		return
	}
	sr.streak++
	need := sr.cfg.Fall
	if !sr.up {
		need = sr.cfg.Rise
	}
	if sr.streak < need {
		return
	}
	sr.up, sr.streak = res.ok, 0
	r.log.Info("tracking script changed", "script", res.name, "up", sr.up, "output", res.out)
	now := r.clock.Now()
	for _, ins := range r.instances {
		r.track(ins, now)
	}
}

// notifyTimeout bounds one run of an instance's notify executable.
const notifyTimeout = 30 * time.Second

// notify queues a run of the instance's notify executable with the
// instance name, old state, new state and reason, as its notify_user or
// script_user; it does not wait for it. Runs happen one at a time in
// order; when too many are waiting, the transition is not notified.
func (r *runner) notify(ins *instance, ev event.VRRP) {
	if ins.cfg.Notify == "" {
		return
	}
	name := ins.cfg.NotifyUser
	if name == "" {
		name = r.cfg.ScriptUser
	}
	u, err := proc.LookupUser(name)
	if err != nil {
		r.log.Warn("notify executable not run", "instance", ev.Instance, "cmd", ins.cfg.Notify, "err", err)
		return
	}
	cmd := proc.Cmd{Path: ins.cfg.Notify, Args: []string{ev.Instance, ev.Old, ev.New, ev.Reason}, User: u, Timeout: notifyTimeout}
	queued := r.notifyq.Submit(context.Background(), cmd, func(res proc.Result) {
		if res.Err != nil {
			r.log.Warn("notify executable failed", "instance", ev.Instance, "cmd", ins.cfg.Notify, "err", res.Err, "output", string(res.Output))
		}
	})
	if !queued {
		r.log.Warn("notify executable not run: too many transitions waiting", "instance", ev.Instance, "to", ev.New, "dropped", r.notifyq.Dropped())
	}
}

// members are the running instances of a sync group.
func (r *runner) members(group string) []*instance {
	var ms []*instance
	for _, ins := range r.instances {
		if ins.group == group {
			ms = append(ms, ins)
		}
	}
	return ms
}
