package fsm

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"testing"
	"time"

	"pgregory.net/rapid"

	"halb/internal/vrrp/packet"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

func params(prio int, self string) Params {
	return Params{Version: 3, Priority: prio, Interval: time.Second, Preempt: true, Self: addr(self)}
}

func adv(prio int, interval time.Duration) *packet.Advert {
	return &packet.Advert{Version: 3, VRID: 1, Priority: uint8(prio), Interval: interval}
}

func must(t *testing.T, m Machine, want State) {
	t.Helper()
	if m.State != want {
		t.Fatalf("state %s (%s), want %s", m.State, m.Reason, want)
	}
}

func TestStartBackupThenMasterDown(t *testing.T) {
	m, acts := Step(NewMachine(params(100, "192.0.2.1")), Event{Start: true}, t0)
	must(t, m, Backup)
	if len(acts) != 0 {
		t.Fatalf("actions %v", acts)
	}
	// Master_Down = 3 × 1s + (256-100)/256 s = 3.609375 s.
	if d := m.Deadline().Sub(t0); d != 3609375*time.Microsecond {
		t.Fatalf("master down after %s", d)
	}
	m, acts = Step(m, Event{Tick: true}, t0.Add(3600*time.Millisecond))
	must(t, m, Backup)
	if len(acts) != 0 {
		t.Fatalf("actions %v before the master-down timer ran out", acts)
	}
	m, acts = Step(m, Event{Tick: true}, t0.Add(3610*time.Millisecond))
	must(t, m, Master)
	if !slices.Equal(acts, []Action{SendAdvert, AddVIPs}) || m.Reason != "master down timer expired" || m.Master != m.Self {
		t.Fatalf("actions %v reason %q master %s", acts, m.Reason, m.Master)
	}
	// The master adverts every interval.
	m, acts = Step(m, Event{Tick: true}, t0.Add(4610*time.Millisecond))
	if !slices.Equal(acts, []Action{SendAdvert}) {
		t.Fatalf("actions %v", acts)
	}
}

func TestV2SkewInSeconds(t *testing.T) {
	p := params(100, "192.0.2.1")
	p.Version, p.Interval = 2, 2*time.Second
	m, _ := Step(NewMachine(p), Event{Start: true}, t0)
	if d := m.Deadline().Sub(t0); d != 6*time.Second+156*time.Second/256 {
		t.Fatalf("v2 master down %s", d)
	}
}

func TestOwnerStartsMaster(t *testing.T) {
	m, acts := Step(NewMachine(params(255, "192.0.2.1")), Event{Start: true}, t0)
	must(t, m, Master)
	if !slices.Equal(acts, []Action{SendAdvert, AddVIPs}) {
		t.Fatalf("actions %v", acts)
	}
	// Tracking weights do not move the owner's priority.
	m, _ = Step(m, Event{Effective: 200}, t0)
	if m.Effective != 255 {
		t.Fatalf("owner effective %d", m.Effective)
	}
}

func TestV3LearnsMasterInterval(t *testing.T) {
	m, _ := Step(NewMachine(params(100, "192.0.2.1")), Event{Start: true}, t0)
	m, _ = Step(m, Event{Advert: adv(200, 100*time.Millisecond), Src: addr("192.0.2.2")}, t0)
	if m.MasterInterval != 100*time.Millisecond || m.Master != addr("192.0.2.2") {
		t.Fatalf("interval %s master %s", m.MasterInterval, m.Master)
	}
	// 3 × 0.1 s + 156/256 × 0.1 s = 0.3609375 s.
	if d := m.Deadline().Sub(t0); d != 360937500*time.Nanosecond {
		t.Fatalf("master down after %s", d)
	}
}

func TestPriorityZeroSkewOnly(t *testing.T) {
	m, _ := Step(NewMachine(params(100, "192.0.2.1")), Event{Start: true}, t0)
	m, _ = Step(m, Event{Advert: adv(200, time.Second), Src: addr("192.0.2.2")}, t0)
	m, _ = Step(m, Event{Advert: adv(0, time.Second), Src: addr("192.0.2.2")}, t0.Add(time.Second))
	if d := m.Deadline().Sub(t0.Add(time.Second)); d != 156*time.Second/256 {
		t.Fatalf("after priority 0, master down in %s, want the skew", d)
	}
	m, _ = Step(m, Event{Tick: true}, m.Deadline())
	must(t, m, Master)
	if m.Reason != "priority 0 from 192.0.2.2" {
		t.Fatalf("reason %q", m.Reason)
	}
	// A master hearing priority 0 answers at once.
	_, acts := Step(m, Event{Advert: adv(0, time.Second), Src: addr("192.0.2.3")}, m.Since)
	if !slices.Equal(acts, []Action{SendAdvert}) {
		t.Fatalf("actions %v", acts)
	}
}

func TestMasterYields(t *testing.T) {
	m, _ := Step(NewMachine(params(150, "192.0.2.1")), Event{Start: true}, t0)
	m, _ = Step(m, Event{Tick: true}, m.Deadline())
	must(t, m, Master)
	// Lower priority: stay, answer at once, announce the VIPs again.
	m2, acts := Step(m, Event{Advert: adv(100, time.Second), Src: addr("192.0.2.9")}, m.Since)
	must(t, m2, Master)
	if !slices.Equal(acts, []Action{SendAdvert, AnnounceVIPs}) {
		t.Fatalf("actions %v", acts)
	}
	// Equal priority, lower address: stay.
	m2, _ = Step(m, Event{Advert: adv(150, time.Second), Src: addr("192.0.2.0")}, m.Since)
	must(t, m2, Master)
	// Equal priority, higher address: yield.
	m2, acts = Step(m, Event{Advert: adv(150, time.Second), Src: addr("192.0.2.2")}, m.Since)
	must(t, m2, Backup)
	if !slices.Equal(acts, []Action{RemoveVIPs}) || m2.Master != addr("192.0.2.2") {
		t.Fatalf("actions %v master %s", acts, m2.Master)
	}
	// Higher priority: yield.
	m2, _ = Step(m, Event{Advert: adv(200, time.Second), Src: addr("192.0.2.0")}, m.Since)
	must(t, m2, Backup)
	if m2.Reason != "higher priority 200 from 192.0.2.0" {
		t.Fatalf("reason %q", m2.Reason)
	}
}

// backupHearing starts a backup and feeds it adverts from a lower-priority
// master every second until until; it returns the machine.
func backupHearing(p Params, until time.Duration) Machine {
	m, _ := Step(NewMachine(p), Event{Start: true}, t0)
	for at := time.Duration(0); at <= until; at += time.Second {
		m, _ = Step(m, Event{Tick: true}, t0.Add(at))
		if m.State != Backup {
			return m
		}
		m, _ = Step(m, Event{Advert: adv(100, time.Second), Src: addr("192.0.2.2")}, t0.Add(at))
	}
	return m
}

func TestPreemptNoPreemptDelay(t *testing.T) {
	p := params(200, "192.0.2.1")
	m := backupHearing(p, 10*time.Second)
	must(t, m, Master)
	if d := m.Since.Sub(t0); d > 4*time.Second {
		t.Fatalf("preempted after %s", d)
	}
	p.Preempt = false
	m = backupHearing(p, 30*time.Second)
	must(t, m, Backup)
	p.Preempt, p.PreemptDelay = true, 10*time.Second
	m = backupHearing(p, 30*time.Second)
	must(t, m, Master)
	if d := m.Since.Sub(t0); d < 10*time.Second || d > 14*time.Second {
		t.Fatalf("preempted after %s with a 10s delay", d)
	}
}

func TestFaultAndStop(t *testing.T) {
	m, _ := Step(NewMachine(params(150, "192.0.2.1")), Event{Start: true}, t0)
	m, _ = Step(m, Event{Tick: true}, m.Deadline())
	on, off := true, false
	m, acts := Step(m, Event{Fault: &on, Why: "interface eth0 down"}, t0.Add(5*time.Second))
	must(t, m, Fault)
	if !slices.Equal(acts, []Action{SendPriority0, RemoveVIPs}) || m.Reason != "interface eth0 down" {
		t.Fatalf("actions %v reason %q", acts, m.Reason)
	}
	// Two faults need two clears.
	m, _ = Step(m, Event{Fault: &on, Why: "script chk down"}, t0.Add(5*time.Second))
	m, _ = Step(m, Event{Fault: &off, Why: "interface eth0 up"}, t0.Add(6*time.Second))
	must(t, m, Fault)
	m, _ = Step(m, Event{Tick: true}, t0.Add(60*time.Second))
	must(t, m, Fault)
	m, _ = Step(m, Event{Fault: &off, Why: "script chk up"}, t0.Add(61*time.Second))
	must(t, m, Backup)
	m, _ = Step(m, Event{Tick: true}, m.Deadline())
	must(t, m, Master)
	m, acts = Step(m, Event{Stop: true}, m.Since)
	must(t, m, Init)
	if !slices.Equal(acts, []Action{SendPriority0, RemoveVIPs}) {
		t.Fatalf("actions %v", acts)
	}
}

func TestEffectivePriorityMovesSkew(t *testing.T) {
	m, _ := Step(NewMachine(params(100, "192.0.2.1")), Event{Start: true}, t0)
	m, _ = Step(m, Event{Effective: 50}, t0)
	m, _ = Step(m, Event{Advert: adv(200, time.Second), Src: addr("192.0.2.2")}, t0)
	if d := m.Deadline().Sub(t0); d != 3*time.Second+206*time.Second/256 {
		t.Fatalf("master down %s with effective priority 50", d)
	}
}

// sim is a set of machines on one link, run in virtual time.
type sim struct {
	nodes []Machine
	up    []bool
	now   time.Time
	inbox []delivery
	cut   func(from, to int, now time.Time) bool
}

type delivery struct {
	at       time.Time
	from, to int
	a        *packet.Advert
}

func (s *sim) apply(i int, ev Event) {
	m, acts := Step(s.nodes[i], ev, s.now)
	s.nodes[i] = m
	for _, a := range acts {
		prio := m.Effective
		switch a {
		case SendPriority0:
			prio = 0
		case SendAdvert:
		default:
			continue
		}
		for j := range s.nodes {
			if j != i && !s.cut(i, j, s.now) {
				s.inbox = append(s.inbox, delivery{s.now.Add(time.Millisecond), i, j,
					&packet.Advert{Version: m.Version, VRID: 1, Priority: uint8(prio), Interval: m.Interval}})
			}
		}
	}
}

// run advances to until, delivering adverts and timers in time order.
func (s *sim) run(t *rapid.T, until time.Time) {
	for steps := 0; ; steps++ {
		if steps > 100000 {
			t.Fatalf("advert storm: %d events before %s", steps, until.Sub(t0))
		}
		next, who, msg := until, -1, -1
		for i, m := range s.nodes {
			if d := m.Deadline(); s.up[i] && !d.IsZero() && d.Before(next) {
				next, who, msg = d, i, -1
			}
		}
		for k, d := range s.inbox {
			if d.at.Before(next) {
				next, who, msg = d.at, -1, k
			}
		}
		if who < 0 && msg < 0 {
			s.now = until
			return
		}
		s.now = next
		if msg >= 0 {
			d := s.inbox[msg]
			s.inbox = slices.Delete(s.inbox, msg, msg+1)
			if s.up[d.to] {
				s.apply(d.to, Event{Advert: d.a, Src: s.nodes[d.from].Self})
			}
			continue
		}
		s.apply(who, Event{Tick: true})
	}
}

func (s *sim) countMasters() (n int, who []string) {
	for i, m := range s.nodes {
		if s.up[i] && m.State == Master {
			n++
			who = append(who, fmt.Sprintf("%s(p%d)", m.Self, m.Effective))
		}
	}
	return n, who
}

// TestPropertyOneMaster: whatever the priorities, preempt settings,
// start times, crashes, restarts and partitions, once the link is whole
// and nothing changes, exactly one node is master within a bounded time
// and stays so.
func TestPropertyOneMaster(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		n := rapid.IntRange(2, 4).Draw(rt, "nodes")
		version := rapid.SampledFrom([]int{2, 3}).Draw(rt, "version")
		interval := time.Second
		if version == 3 {
			interval = time.Duration(rapid.SampledFrom([]int{1, 2, 5, 10, 100}).Draw(rt, "centiseconds")) * 10 * time.Millisecond
		}
		s := &sim{now: t0}
		owner := false
		var maxDelay time.Duration
		for i := range n {
			prio := rapid.IntRange(1, 255).Draw(rt, fmt.Sprintf("prio%d", i))
			if prio == 255 {
				if owner {
					prio = 254
				}
				owner = true
			}
			p := Params{Version: version, Priority: prio, Interval: interval,
				Preempt:      rapid.Bool().Draw(rt, fmt.Sprintf("preempt%d", i)),
				PreemptDelay: time.Duration(rapid.IntRange(0, 3).Draw(rt, fmt.Sprintf("delay%d", i))) * interval,
				Self:         netip.AddrFrom4([4]byte{192, 0, 2, byte(i + 1)})}
			maxDelay = max(maxDelay, p.PreemptDelay)
			s.nodes = append(s.nodes, NewMachine(p))
			s.up = append(s.up, false)
		}
		// A script of disturbances: starts, crashes, graceful stops,
		// partitions, all within the first 20 intervals.
		type step struct {
			at   time.Duration
			node int
			what int // 0 start, 1 crash, 2 stop, 3 weight change
		}
		var script []step
		for i := range n {
			script = append(script, step{time.Duration(rapid.IntRange(0, 5).Draw(rt, fmt.Sprintf("start%d", i))) * interval, i, 0})
		}
		for k := range rapid.IntRange(0, 6).Draw(rt, "disturbances") {
			script = append(script, step{time.Duration(rapid.IntRange(0, 20).Draw(rt, fmt.Sprintf("at%d", k))) * interval,
				rapid.IntRange(0, n-1).Draw(rt, fmt.Sprintf("who%d", k)), rapid.IntRange(0, 3).Draw(rt, fmt.Sprintf("what%d", k))})
		}
		sort.SliceStable(script, func(a, b int) bool { return script[a].at < script[b].at })
		partFrom := time.Duration(rapid.IntRange(0, 20).Draw(rt, "partition from")) * interval
		partLen := time.Duration(rapid.IntRange(0, 10).Draw(rt, "partition length")) * interval
		side := rapid.IntRange(1, n-1).Draw(rt, "partition side")
		s.cut = func(from, to int, now time.Time) bool {
			d := now.Sub(t0)
			return d >= partFrom && d < partFrom+partLen && (from < side) != (to < side)
		}
		last := partFrom + partLen
		for _, st := range script {
			s.run(rt, t0.Add(st.at))
			switch st.what {
			case 0:
				if !s.up[st.node] {
					s.up[st.node] = true
					s.nodes[st.node] = NewMachine(s.nodes[st.node].Params)
					s.apply(st.node, Event{Start: true})
				}
			case 1:
				s.up[st.node] = false
			case 2:
				if s.up[st.node] {
					s.apply(st.node, Event{Stop: true})
					s.up[st.node] = false
				}
			case 3:
				s.apply(st.node, Event{Effective: rapid.IntRange(1, 254).Draw(rt, "weighted")})
			}
			last = max(last, st.at)
		}
		anyUp := slices.Contains(s.up, true)
		skew := interval
		if version == 2 {
			skew = time.Second
		}
		bound := last + maxDelay + 4*interval + skew + 2*interval
		s.run(rt, t0.Add(bound))
		for k := range 20 {
			c, who := s.countMasters()
			if anyUp && c != 1 || !anyUp && c != 0 {
				rt.Fatalf("%d masters %v at %s (+%d intervals after the bound)", c, who, s.now.Sub(t0), k)
			}
			s.run(rt, s.now.Add(interval))
		}
	})
}

// TestLowerSpeakerIsNotTheMaster: a preempting backup that hears,
// beside its master, a speaker of lower priority than both discards its
// adverts: it keeps its master, still outranked by it, and the master's
// silence alone makes it take over.
func TestLowerSpeakerIsNotTheMaster(t *testing.T) {
	m, _ := Step(NewMachine(params(100, "192.0.2.1")), Event{Start: true}, t0)
	m, _ = Step(m, Event{Advert: adv(200, time.Second), Src: addr("192.0.2.2")}, t0)
	m, _ = Step(m, Event{Advert: adv(50, time.Second), Src: addr("192.0.2.9")}, t0.Add(500*time.Millisecond))
	must(t, m, Backup)
	if m.Master != addr("192.0.2.2") || m.MasterPriority != 200 || !m.Outranked(t0.Add(time.Second)) {
		t.Fatalf("master %s priority %d, outranked %v after a lower speaker", m.Master, m.MasterPriority, m.Outranked(t0.Add(time.Second)))
	}
	if d := m.Deadline(); d != t0.Add(m.MasterDown()) {
		t.Fatalf("master down at %s, want %s: the lower speaker moved it", d, t0.Add(m.MasterDown()))
	}
	m, _ = Step(m, Event{Tick: true}, m.Deadline())
	must(t, m, Master)
}
