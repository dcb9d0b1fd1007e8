package notify

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"halb/internal/config"
	"halb/internal/event"
	"halb/internal/proc"
	"halb/internal/vrrp/fsm"
)

// Hook runs the notify program once per event, with keepalived-compatible
// arguments for VRRP transitions and the event as JSON on stdin.
type Hook struct {
	path    string
	user    proc.User
	timeout time.Duration
}

// NewHook returns a hook running path as the named user (looked up now).
func NewHook(path, userName string, timeout time.Duration) (*Hook, error) {
	u, err := proc.LookupUser(userName)
	if err != nil {
		return nil, fmt.Errorf("notify exec: %w", err)
	}
	return &Hook{path: path, user: u, timeout: timeout}, nil
}

// Name identifies the hook in logs and metrics.
func (h *Hook) Name() string { return "exec " + h.path }

// Run runs the program with args and stdin, killing it and its children
// when the timeout passes.
func (h *Hook) Run(ctx context.Context, args []string, stdin []byte) error {
	r := proc.Run(ctx, proc.Cmd{Path: h.path, Args: args, User: h.user, Env: []string{"LANG=C.UTF-8"},
		Stdin: stdin, Timeout: h.timeout, OutputLimit: 200})
	if r.TimedOut {
		return fmt.Errorf("%s %s: killed after %s", h.path, strings.Join(args, " "), h.timeout)
	}
	if r.Err != nil {
		msg := strings.TrimSpace(string(r.Output))
		if r.Truncated {
			msg += "…"
		}
		return fmt.Errorf("%s %s: %w: %s", h.path, strings.Join(args, " "), r.Err, msg)
	}
	return nil
}

// keepalivedState maps a VRRP state to the word keepalived passes to its
// notify scripts (it says STOP where halb's instance returns to INIT).
func keepalivedState(s string) string {
	if s == fsm.Init.String() {
		return "STOP"
	}
	return s
}

// hookArgs gives the hook's argument lists for one event: VRRP
// transitions as keepalived passes them ("INSTANCE name STATE priority",
// then "GROUP name STATE 0" when a sync group has moved as a whole), other
// events as "HEALTH pool server UP|DOWN", "QUORUM pool UP|DOWN",
// "RELOAD file APPLIED|REFUSED" and "DATAPLANE ERROR|RESTORED".
func hookArgs(r event.Record, groups *groupStates) [][]string {
	switch {
	case r.VRRP != nil:
		v := r.VRRP
		out := [][]string{{"INSTANCE", v.Instance, keepalivedState(v.New), strconv.Itoa(v.EffectivePriority)}}
		for _, g := range groups.update(v.Instance, v.New) {
			out = append(out, []string{"GROUP", g, keepalivedState(v.New), "0"})
		}
		return out
	case r.Health != nil:
		return [][]string{{"HEALTH", r.Health.Pool, serverName(r.Health.Addr, r.Health.Port), upDown(r.Health.Up)}}
	case r.Quorum != nil:
		return [][]string{{"QUORUM", r.Quorum.Pool, upDown(r.Quorum.Up)}}
	case r.Reload != nil:
		st := "APPLIED"
		if !r.Reload.Applied {
			st = "REFUSED"
		}
		return [][]string{{"RELOAD", r.Reload.File, st}}
	case r.Dataplane != nil:
		return [][]string{{"DATAPLANE", "ERROR"}}
	case r.Restored != nil:
		return [][]string{{"DATAPLANE", "RESTORED"}}
	}
	return nil
}

// groupStates follows the sync groups' members to tell when a group has
// moved to a state as a whole.
type groupStates struct {
	groups  []config.SyncGroup
	members map[string]string // instance → state
	last    map[string]string // group → state last announced
}

func newGroupStates(groups []config.SyncGroup) *groupStates {
	return &groupStates{groups: groups, members: map[string]string{}, last: map[string]string{}}
}

// update records an instance's state and returns the groups that now
// have all members in that state for the first time.
func (g *groupStates) update(instance, state string) []string {
	g.members[instance] = state
	var out []string
	for _, sg := range g.groups {
		if !slices.Contains(sg.Instances, instance) || g.last[sg.Name] == state {
			continue
		}
		all := true
		for _, m := range sg.Instances {
			all = all && g.members[m] == state
		}
		if all {
			g.last[sg.Name] = state
			out = append(out, sg.Name)
		}
	}
	return out
}
