package fsm

import (
	"slices"
	"testing"
	"time"

	"halb/internal/vrrp/packet"
)

func startGroup(t *testing.T, ms []Machine, at ...time.Duration) {
	t.Helper()
	for k := range ms {
		StepGroup("web", []string{"vi10", "vi11"}, ms, k, Event{Start: true}, t0.Add(at[k]))
	}
}

// TestGroupFollowsMaster: when one member's master-down timer runs out,
// the other member becomes MASTER with it, at once.
func TestGroupFollowsMaster(t *testing.T) {
	ms := []Machine{NewMachine(params(150, "192.0.2.1")), NewMachine(params(150, "192.0.2.1"))}
	startGroup(t, ms, 0, time.Second)
	at := ms[0].Deadline()
	acts := StepGroup("web", []string{"vi10", "vi11"}, ms, 0, Event{Tick: true}, at)
	must(t, ms[0], Master)
	must(t, ms[1], Master)
	if ms[1].Reason != "sync group web: vi10 went MASTER" || !slices.Equal(acts[1], []Action{SendAdvert, AddVIPs}) {
		t.Fatalf("follower: reason %q actions %v", ms[1].Reason, acts[1])
	}
}

// TestGroupOutrankedDoesNotFollow: a member that is the backup of a
// better live master stays BACKUP when another member becomes MASTER.
func TestGroupOutrankedDoesNotFollow(t *testing.T) {
	ms := []Machine{NewMachine(params(150, "192.0.2.1")), NewMachine(params(150, "192.0.2.1"))}
	startGroup(t, ms, 0, 0)
	names := []string{"vi10", "vi11"}
	StepGroup("web", names, ms, 1, Event{Advert: adv(200, time.Second), Src: addr("192.0.2.2")}, t0)
	if !ms[1].Outranked(t0) || ms[0].Outranked(t0) {
		t.Fatalf("outranked: %v %v", ms[0].Outranked(t0), ms[1].Outranked(t0))
	}
	StepGroup("web", names, ms, 0, Event{Tick: true}, ms[0].Deadline())
	must(t, ms[0], Master)
	must(t, ms[1], Backup)
}

// TestGroupFollowsBackup: a master member that hears a better master goes
// BACKUP and the other master member leaves with priority 0.
func TestGroupFollowsBackup(t *testing.T) {
	ms := []Machine{NewMachine(params(150, "192.0.2.1")), NewMachine(params(150, "192.0.2.1"))}
	startGroup(t, ms, 0, 0)
	names := []string{"vi10", "vi11"}
	StepGroup("web", names, ms, 0, Event{Tick: true}, ms[0].Deadline())
	must(t, ms[1], Master)
	acts := StepGroup("web", names, ms, 0, Event{Advert: adv(200, time.Second), Src: addr("192.0.2.2")}, t0.Add(5*time.Second))
	must(t, ms[0], Backup)
	must(t, ms[1], Backup)
	if !slices.Equal(acts[1], []Action{SendPriority0, RemoveVIPs}) || ms[1].Reason != "sync group web: vi10 went BACKUP" {
		t.Fatalf("follower: reason %q actions %v", ms[1].Reason, acts[1])
	}
}

// groupSim is two nodes on one link, each running a sync group of the
// same members (member k has the same VRID on both), in virtual time.
type groupSim struct {
	nodes   [2][]Machine
	now     time.Time
	inbox   []groupMsg
	changes int
}

type groupMsg struct {
	at        time.Time
	to, index int
	a         *packet.Advert
	src       int
}

func (s *groupSim) step(n, k int, ev Event) {
	before := []State{s.nodes[n][0].State, s.nodes[n][1].State}
	acts := StepGroup("web", []string{"vi10", "vi11"}, s.nodes[n], k, ev, s.now)
	for j, as := range acts {
		if s.nodes[n][j].State != before[j] {
			s.changes++
		}
		for _, a := range as {
			prio := s.nodes[n][j].Effective
			if a == SendPriority0 {
				prio = 0
			} else if a != SendAdvert {
				continue
			}
			s.inbox = append(s.inbox, groupMsg{s.now.Add(time.Millisecond), 1 - n, j, adv(prio, time.Second), n})
		}
	}
}

func (s *groupSim) run(until time.Time) {
	for {
		next, node, member, msg := until, -1, -1, -1
		for n, ms := range s.nodes {
			for k, m := range ms {
				if d := m.Deadline(); !d.IsZero() && d.Before(next) {
					next, node, member, msg = d, n, k, -1
				}
			}
		}
		for i, m := range s.inbox {
			if m.at.Before(next) {
				next, node, msg = m.at, -1, i
			}
		}
		if node < 0 && msg < 0 {
			s.now = until
			return
		}
		s.now = next
		if msg >= 0 {
			m := s.inbox[msg]
			s.inbox = slices.Delete(s.inbox, msg, msg+1)
			s.step(m.to, m.index, Event{Advert: m.a, Src: s.nodes[m.src][m.index].Self})
			continue
		}
		s.step(node, member, Event{Tick: true})
	}
}

func (s *groupSim) states() [2][2]State {
	return [2][2]State{{s.nodes[0][0].State, s.nodes[0][1].State}, {s.nodes[1][0].State, s.nodes[1][1].State}}
}

func newGroupSim(a, b [2]int) *groupSim {
	s := &groupSim{now: t0}
	s.nodes[0] = []Machine{NewMachine(params(a[0], "192.0.2.1")), NewMachine(params(a[1], "192.0.2.1"))}
	s.nodes[1] = []Machine{NewMachine(params(b[0], "192.0.2.2")), NewMachine(params(b[1], "192.0.2.2"))}
	for n := range 2 {
		for k := range 2 {
			s.step(n, k, Event{Start: true})
		}
	}
	return s
}

// settle runs 20 intervals, wants the states, then wants no change in
// the next 100 intervals.
func (s *groupSim) settle(t *testing.T, want [2][2]State) {
	t.Helper()
	s.run(s.now.Add(20 * time.Second))
	if s.states() != want {
		t.Fatalf("states %v, want %v", s.states(), want)
	}
	s.changes = 0
	s.run(s.now.Add(100 * time.Second))
	if s.changes != 0 || s.states() != want {
		t.Fatalf("%d state changes in 100 intervals after settling; now %v", s.changes, s.states())
	}
}

// TestGroupNoFlapWithWeights: a tracking weight lowers one member of a's
// group below b's; the runner lowers the group's priority (every member
// runs with the lowest, see TestGroupPriority), b takes both members over
// and nothing flaps. The weight removed, a takes both back, again without
// flapping.
func TestGroupNoFlapWithWeights(t *testing.T) {
	s := newGroupSim([2]int{150, 150}, [2]int{100, 100})
	s.settle(t, [2][2]State{{Master, Master}, {Backup, Backup}})
	for k := range 2 {
		s.step(0, k, Event{Effective: 50})
	}
	s.settle(t, [2][2]State{{Backup, Backup}, {Master, Master}})
	for k := range 2 {
		s.step(0, k, Event{Effective: 150})
	}
	s.settle(t, [2][2]State{{Master, Master}, {Backup, Backup}})
}

// TestGroupNoFlapCrossedPriorities: a's members are configured 150 and
// 100, b's the other way round. With the group's priority (100 on both)
// the tie-break by address gives both members to b, with no flapping;
// without it each node would win one member and drag the other along.
func TestGroupNoFlapCrossedPriorities(t *testing.T) {
	s := newGroupSim([2]int{150, 100}, [2]int{100, 150})
	for n := range 2 {
		for k := range 2 {
			s.step(n, k, Event{Effective: 100})
		}
	}
	s.settle(t, [2][2]State{{Backup, Backup}, {Master, Master}})
}
