package health

import (
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
	removed bool // by a reload; the queue drops it when it comes up
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
	rec     *serverRecord // in the checker's servers once recorded
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
	queue    probeQueue
	epoch    time.Time // the queue's times count from here
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
	s := &scheduler{
		c: c, ctx: ctx, events: events,
		probes:  map[probeKey]*probe{},
		members: map[memberKey]*member{},
		ready:   make(chan struct{}, 1),
		net:     c.net,
		epoch:   c.clock.Now(),
	}
	s.net.clock = c.clock
	return s
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
		s.queue.push(p, p.next.Sub(s.epoch))
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
	p.removed = true
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
	return max(s.queue[0].due-s.c.clock.Now().Sub(s.epoch), 0), true
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
	horizon := now.Add(batchWindow).Sub(s.epoch)
	for len(s.queue) > 0 && s.queue[0].due <= horizon {
		p := s.queue[0].p
		if p.removed {
			s.queue.pop()
			continue
		}
		interval := max(p.spec.check.Interval.D(), time.Millisecond)
		p.next = p.next.Add(interval)
		if p.next.Before(now) {
			p.next = now.Add(interval)
		}
		s.queue.fixTop(p.next.Sub(s.epoch))
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
	if p.removed {
		return // by a reload while it ran
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
	if m.rec == nil {
		m.rec = &serverRecord{}
		s.c.servers[m.spec.key] = m.rec
	}
	*m.rec = serverRecord{st, cause.state.consecutive()}
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

// probeQueue orders probes by their next check: a binary heap whose
// keys sit in the array, so that ordering touches no probe.
type probeQueue []queued

type queued struct {
	due time.Duration // since the scheduler's epoch
	p   *probe
}

func (q *probeQueue) push(p *probe, due time.Duration) {
	*q = append(*q, queued{due, p})
	h := *q
	for i := len(h) - 1; i > 0; {
		parent := (i - 1) / 2
		if h[parent].due <= h[i].due {
			break
		}
		h[parent], h[i] = h[i], h[parent]
		i = parent
	}
}

// fixTop gives the first probe a new due time.
func (q probeQueue) fixTop(due time.Duration) {
	q[0].due = due
	q.down(0)
}

func (q *probeQueue) pop() {
	h := *q
	n := len(h) - 1
	h[0] = h[n]
	h[n] = queued{}
	*q = h[:n]
	if n > 0 {
		q.down(0)
	}
}

func (q probeQueue) down(i int) {
	for {
		l := 2*i + 1
		if l >= len(q) {
			return
		}
		m := l
		if r := l + 1; r < len(q) && q[r].due < q[l].due {
			m = r
		}
		if q[i].due <= q[m].due {
			return
		}
		q[i], q[m] = q[m], q[i]
		i = m
	}
}
