package health

import (
	"container/heap"
	"context"
	"hash/fnv"
	"sync"
	"time"

	"halb/internal/config"
	"halb/internal/event"
)

// prober runs one check against one target. start begins the check and
// returns; done is called exactly once with the result, from any
// goroutine, at the latest soon after ctx (which carries the check's
// timeout) ends. A prober that is also a job runs on the connector's
// loop, which keeps its timeout: its ctx is the probe's, which ends when
// the probe is removed, and its check ends by its timeout.
type prober interface {
	start(ctx context.Context, done func(Result))
}

// blockingProber is a check written as a function that returns when done.
type blockingProber interface {
	probe(ctx context.Context) Result
}

// onGoroutine runs a blocking check on a goroutine of its own.
type onGoroutine struct{ p blockingProber }

func (g onGoroutine) start(ctx context.Context, done func(Result)) {
	go func() { done(g.p.probe(ctx)) }()
}

// probe is one scheduled check with its rise/fall state and the pool
// servers it decides.
type probe struct {
	spec    probeSpec
	prober  prober
	state   probeState
	members []*member
	servers []PoolServer // of members, for the result hook
	next    time.Time
	index   int // in the scheduler's heap, -1 when out
	running bool
	waiting bool
	ctx     context.Context
	cancel  context.CancelFunc
	// selfTimed probers (jobs) keep their own timeout.
	selfTimed bool
	// Of the check in flight: when it began and what cancels its
	// context; finish is the done function of every check.
	began       time.Time
	cancelCheck context.CancelFunc
	finish      func(Result)
}

// effectiveUp is the probe's state, or the initial state while unknown.
func (p *probe) effectiveUp(initialUp bool) bool {
	if !p.state.known {
		return initialUp
	}
	return p.state.up
}

// member is one pool server and what was last reported of it.
type member struct {
	spec    memberSpec
	probes  []*probe
	emitted bool
	up      bool
	weight  int
	ramping bool
	upSince time.Time
	since   time.Time
}

type probeResult struct {
	p *probe
	r Result
}

// scheduler owns the probes and members of a running Checker; only Run's
// goroutine touches it.
type scheduler struct {
	c        *Checker
	ctx      context.Context
	events   chan<- event.Health
	probes   map[probeKey]*probe
	members  map[memberKey]*member
	queue    probeHeap
	waiting  []*probe
	inflight int
	// Results are batched: probes append to done and poke ready, so a
	// busy scheduler wakes once for many results.
	doneMu sync.Mutex
	done   []probeResult
	spare  []probeResult // the batch taken before, reused
	ready  chan struct{}
	wg     sync.WaitGroup
	net    netEnv
}

func newScheduler(c *Checker, ctx context.Context, events chan<- event.Health) *scheduler {
	return &scheduler{
		c: c, ctx: ctx, events: events,
		probes:  map[probeKey]*probe{},
		members: map[memberKey]*member{},
		ready:   make(chan struct{}, 1),
		net:     c.net,
	}
}

// apply switches to a configuration: kept probes keep their state and
// schedule, new ones start spread over their interval, removed ones stop.
func (s *scheduler) apply(cfg *config.Config) {
	specs, mspecs := plan(cfg)
	now := s.c.clock.Now()
	s.net.scriptUser = cfg.ScriptUser
	removed, added := 0, 0
	for key, p := range s.probes {
		if _, ok := specs[key]; !ok {
			s.remove(p)
			removed++
		}
	}
	for key, spec := range specs {
		if _, ok := s.probes[key]; ok {
			continue
		}
		ctx, cancel := context.WithCancel(s.ctx)
		p := &probe{spec: spec, prober: s.c.newProber(spec, s.net), ctx: ctx, cancel: cancel,
			next: now.Add(spread(key, spec.check.Interval.D()))}
		_, p.selfTimed = p.prober.(job)
		p.finish = func(r Result) { s.finished(p, r) }
		if b, ok := p.prober.(brokenProber); ok {
			s.c.log.Warn("health check cannot run", "check", spec.name, "reason", string(b))
		}
		s.probes[key] = p
		heap.Push(&s.queue, p)
		added++
	}
	s.c.log.Info("health checks configured", "checks", len(specs), "pool_servers", len(mspecs), "added", added, "removed", removed)
	for _, p := range s.probes {
		p.members = p.members[:0]
		p.servers = p.servers[:0]
	}
	old := s.members
	s.members = make(map[memberKey]*member, len(mspecs))
	for _, ms := range mspecs {
		m := old[ms.key]
		if m == nil {
			m = &member{since: now}
		}
		m.spec = ms
		m.probes = m.probes[:0]
		for _, k := range ms.probes {
			p := s.probes[k]
			m.probes = append(m.probes, p)
			p.members = append(p.members, m)
			p.servers = append(p.servers, PoolServer{Pool: ms.key.Pool, Server: ms.server})
		}
		s.members[ms.key] = m
	}
	s.c.mu.Lock()
	for k := range s.c.servers {
		if _, ok := s.members[k]; !ok {
			delete(s.c.servers, k)
		}
	}
	s.c.mu.Unlock()
	for _, m := range s.members {
		s.evaluate(m, nil, now)
	}
}

// spread places a new probe's first check within its interval, the same
// place for the same key, so that checks do not all start at once.
func spread(key probeKey, interval time.Duration) time.Duration {
	if interval <= 0 {
		return 0
	}
	h := fnv.New64a()
	h.Write([]byte(key))
	return time.Duration(h.Sum64() % uint64(interval))
}

func (s *scheduler) remove(p *probe) {
	p.cancel()
	if p.index >= 0 {
		heap.Remove(&s.queue, p.index)
	}
	if p.waiting {
		for i, w := range s.waiting {
			if w == p {
				s.waiting = append(s.waiting[:i], s.waiting[i+1:]...)
				break
			}
		}
	}
	delete(s.probes, p.spec.key)
}

// nextDue returns the time until the next check is due.
func (s *scheduler) nextDue() (time.Duration, bool) {
	if len(s.queue) == 0 {
		return 0, false
	}
	return max(s.queue[0].next.Sub(s.c.clock.Now()), 0), true
}

// batchWindow is how early a check may start to share a wake-up with
// others: thousands of checks spread over an interval then cost a hundred
// wake-ups a second, not thousands.
const batchWindow = 10 * time.Millisecond

// dispatchDue starts the checks that are due (within batchWindow), within
// the concurrency limit; the others wait for a slot. A check still running
// when it is due again skips that round.
func (s *scheduler) dispatchDue() {
	now := s.c.clock.Now()
	horizon := now.Add(batchWindow)
	for len(s.queue) > 0 && !s.queue[0].next.After(horizon) {
		p := s.queue[0]
		interval := max(p.spec.check.Interval.D(), time.Millisecond)
		p.next = p.next.Add(interval)
		if p.next.Before(now) {
			p.next = now.Add(interval)
		}
		heap.Fix(&s.queue, 0)
		if p.running || p.waiting {
			continue
		}
		if s.inflight < s.c.limit {
			s.start(p)
		} else {
			p.waiting = true
			s.waiting = append(s.waiting, p)
		}
	}
}

func (s *scheduler) start(p *probe) {
	s.inflight++
	p.running = true
	s.wg.Add(1)
	p.began = s.c.clock.Now()
	ctx := p.ctx
	if !p.selfTimed {
		ctx, p.cancelCheck = context.WithTimeout(p.ctx, p.spec.check.Timeout.D())
	}
	p.prober.start(ctx, p.finish)
}

// finished takes the result of p's check in flight, from any goroutine.
func (s *scheduler) finished(p *probe, r Result) {
	if p.cancelCheck != nil {
		p.cancelCheck()
		p.cancelCheck = nil
	}
	if r.Latency == 0 {
		r.Latency = s.c.clock.Now().Sub(p.began)
	}
	s.doneMu.Lock()
	s.done = append(s.done, probeResult{p: p, r: r})
	s.doneMu.Unlock()
	select {
	case s.ready <- struct{}{}:
	default:
	}
	s.wg.Done()
}

// takeResults returns the results that arrived since the last call; the
// slice is valid until the next call.
func (s *scheduler) takeResults() []probeResult {
	clear(s.spare)
	s.doneMu.Lock()
	defer s.doneMu.Unlock()
	out := s.done
	s.done, s.spare = s.spare[:0], out
	return out
}

// onResult folds a result into its probe and reports what changed for
// the pool servers it decides.
func (s *scheduler) onResult(res probeResult) {
	s.inflight--
	for s.inflight < s.c.limit && len(s.waiting) > 0 {
		w := s.waiting[0]
		s.waiting = s.waiting[1:]
		w.waiting = false
		s.start(w)
	}
	p := res.p
	p.running = false
	s.c.checks.Add(1)
	if !res.r.OK {
		s.c.failures.Add(1)
	}
	if s.probes[p.spec.key] != p {
		return // removed by a reload while it ran
	}
	if s.c.hook != nil {
		s.c.hook(CheckResult{Type: p.spec.check.Type, Check: p.spec.name, Result: res.r, Servers: p.servers})
	}
	ch := p.spec.check
	now := s.c.clock.Now()
	initialUp := len(p.members) == 0 || p.members[0].spec.initialUp
	p.state.observe(res.r, ch.Rise, ch.Fall, initialUp)
	for _, m := range p.members {
		s.evaluate(m, p, now)
	}
}

// evaluate folds a member's probes into its state and sends an event when
// its health or effective weight changed. cause is the probe whose result
// led here, if any.
func (s *scheduler) evaluate(m *member, cause *probe, now time.Time) {
	up, decided := true, true
	var down *probe
	for _, p := range m.probes {
		if !p.effectiveUp(m.spec.initialUp) {
			up = false
			if p.state.known && down == nil {
				down = p
			}
		}
		if !p.state.known {
			decided = false
		}
	}
	if down != nil {
		decided = true
	}
	if down != nil {
		cause = down
	} else if cause == nil && len(m.probes) > 0 {
		cause = m.probes[0]
	}
	if !decided || cause == nil {
		if cause != nil && cause.state.last.Detail != "" {
			s.record(m, cause, up)
		}
		return
	}
	weight := -1
	base := m.spec.weight
	for _, p := range m.probes {
		if w := p.state.last.Weight; p.state.last.OK && w >= 0 && (weight < 0 || w < weight) {
			weight, base = w, w
		}
	}
	if up && m.emitted && !m.up && m.spec.slowStart > 0 {
		m.ramping, m.upSince = true, now
	}
	if !up {
		m.ramping = false
	}
	if m.ramping {
		w, still := slowStartWeight(base, now.Sub(m.upSince), m.spec.slowStart)
		m.ramping = still
		if still {
			weight = w
		}
	}
	if m.emitted && m.up == up && m.weight == weight {
		s.record(m, cause, up)
		return
	}
	if !m.emitted || m.up != up {
		m.since = now
	}
	m.emitted, m.up, m.weight = true, up, weight
	s.record(m, cause, up)
	ev := event.Health{
		At: now, Pool: m.spec.key.Pool, Addr: m.spec.key.Addr, Port: m.spec.key.Port,
		Check: cause.spec.name, Up: up, Weight: weight,
		Reason: cause.state.reason(), Consecutive: cause.state.consecutive(), Latency: cause.state.last.Latency,
	}
	select {
	case s.events <- ev:
	case <-s.ctx.Done():
	}
}

// record keeps a member's last result for Status.
func (s *scheduler) record(m *member, cause *probe, up bool) {
	// The reason is put in words when Status asks.
	st := ServerStatus{
		Pool: m.spec.key.Pool, Addr: m.spec.addr, Port: m.spec.key.Port,
		Up: up, Known: m.emitted, Check: cause.spec.name, Last: cause.state.last,
		Since: m.since, Latency: cause.state.last.Latency,
	}
	if m.emitted {
		st.Up = m.up
	}
	s.c.mu.Lock()
	s.c.servers[m.spec.key] = serverRecord{st, cause.state.consecutive()}
	s.c.mu.Unlock()
}

// stop cancels every probe and waits for them to return.
func (s *scheduler) stop() {
	for _, p := range s.probes {
		p.cancel()
	}
	s.net.tcp.abort()
	s.wg.Wait()
}

// probeHeap orders probes by their next check.
type probeHeap []*probe

func (h probeHeap) Len() int           { return len(h) }
func (h probeHeap) Less(i, j int) bool { return h[i].next.Before(h[j].next) }
func (h probeHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *probeHeap) Push(x any) {
	p := x.(*probe)
	p.index = len(*h)
	*h = append(*h, p)
}
func (h *probeHeap) Pop() any {
	old := *h
	p := old[len(old)-1]
	old[len(old)-1] = nil
	p.index = -1
	*h = old[:len(old)-1]
	return p
}
