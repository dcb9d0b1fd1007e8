package fsm

import (
	"fmt"
	"time"
)

// Sync groups: the members of a group on one node move together. When a
// member becomes MASTER the others follow, except those outranked (a
// backup of a better live master); when a member loses mastership to a
// better master, the others leave MASTER too (priority 0, so their peers
// take over at once). Every member runs with the group's priority, the
// lowest effective priority of its members (the runner sets it), so
// the members' elections agree and members whose own priorities differ
// (a tracking weight on one of them) do not take turns pulling the group
// back and forth. FAULT spreads separately, through the runner.

// StepGroup applies ev to member i of a sync group (names and ms, in the
// same order; a lone instance is a group of one) and lets the other
// members follow. It updates ms in place and returns each member's
// actions.
func StepGroup(group string, names []string, ms []Machine, i int, ev Event, now time.Time) [][]Action {
	acts := make([][]Action, len(ms))
	was := ms[i].State
	ms[i], acts[i] = Step(ms[i], ev, now)
	if to := followState(was, ms[i].State); to != Init && ev.Follow == Init {
		why := fmt.Sprintf("sync group %s: %s went %s", group, names[i], to)
		for j := range ms {
			if j != i {
				var a []Action
				ms[j], a = Step(ms[j], Event{Follow: to, Why: why}, now)
				acts[j] = append(acts[j], a...)
			}
		}
	}
	return acts
}

// followState is the state the other members follow after a member moved
// from was to is (Init: none). Leaving MASTER for FAULT or a stop is not
// followed here.
func followState(was, is State) State {
	switch {
	case was == Backup && is == Master:
		return Master
	case was == Master && is == Backup:
		return Backup
	}
	return Init
}
