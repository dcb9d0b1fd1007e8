// Package notify tells people and programs what changed: events are
// grouped into messages that say what happened, why, and what the
// affected pool or instance looks like now, and are sent by mail
// (SMTP) and to webhooks, with a rate limit; a notify program runs for
// every event with keepalived-compatible arguments. Nothing here blocks
// the engine: a failing or slow notifier is logged and counted.
package notify

import (
	"context"
	"log/slog"
	"sort"
	"sync"
	"time"

	"halb/internal/api"
	"halb/internal/clock"
	"halb/internal/config"
	"halb/internal/event"
)

// Sender delivers messages somewhere (a mail relay, a webhook).
type Sender interface {
	Name() string
	Send(ctx context.Context, m Message) error
}

// StatusFunc reads the node's current status.
type StatusFunc func(ctx context.Context) (api.Status, error)

// Options configures a Notifier.
type Options struct {
	Node   string
	Status StatusFunc
	Clock  clock.Clock // default clock.Real
	Log    *slog.Logger
	// Wait and MinInterval shape the grouping (see Grouper).
	Wait, MinInterval time.Duration
	Senders           []Sender
	// Hook, when set, runs for every event.
	Hook       *Hook
	SyncGroups []config.SyncGroup
}

// Defaults of the grouping and of the notify program's timeout.
const (
	DefaultWait        = 5 * time.Second
	DefaultMinInterval = 60 * time.Second
	DefaultExecTimeout = 10 * time.Second
	// maxBatch bounds the events listed in one message.
	maxBatch = 50
	// statusTimeout bounds the status read made for a message.
	statusTimeout = 5 * time.Second
)

// Notifier receives events from the engine and notifies.
type Notifier struct {
	o      Options
	in     chan event.Record
	hookq  chan event.Record
	queues map[string]chan Message
	// seen is each server's last known health (Run's goroutine only).
	seen map[serverKey]bool

	mu    sync.Mutex
	stats map[string]*Stats
}

// Stats counts one notifier's outcomes.
type Stats struct {
	Name    string
	Sent    uint64
	Failed  uint64
	Dropped uint64
}

// intake is the name under which events dropped before grouping are
// counted.
const intake = "intake"

// New returns a notifier; it starts nothing: call Run.
func New(o Options) *Notifier {
	if o.Clock == nil {
		o.Clock = clock.Real{}
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	n := &Notifier{o: o, in: make(chan event.Record, 1024), hookq: make(chan event.Record, 256),
		queues: map[string]chan Message{}, seen: map[serverKey]bool{}, stats: map[string]*Stats{intake: {Name: intake}}}
	for _, s := range o.Senders {
		n.queues[s.Name()] = make(chan Message, 8)
		n.stats[s.Name()] = &Stats{Name: s.Name()}
	}
	if o.Hook != nil {
		n.stats[o.Hook.Name()] = &Stats{Name: o.Hook.Name()}
	}
	return n
}

// FromConfig builds the notifier cfg asks for, or nil when cfg has no
// notify section.
func FromConfig(cfg *config.Config, status StatusFunc, log *slog.Logger, version string) (*Notifier, error) {
	nc := cfg.Notify
	o := Options{Node: cfg.Node, Status: status, Log: log, SyncGroups: cfg.VRRP.SyncGroups,
		Wait: or(nc.GroupWait.D(), DefaultWait), MinInterval: or(nc.MinInterval.D(), DefaultMinInterval)}
	if nc.SMTP != nil {
		o.Senders = append(o.Senders, NewMailer(*nc.SMTP, cfg.Node))
	}
	for _, w := range nc.Webhooks {
		retries := w.Retries
		if retries == 0 {
			retries = 3
		} else if retries < 0 {
			retries = 0
		}
		o.Senders = append(o.Senders, NewWebhook(w.URL, w.Timeout.D(), retries, time.Second, clock.Real{}, "halb/"+version))
	}
	if nc.Exec != "" {
		u := nc.ExecUser
		if u == "" {
			u = cfg.ScriptUser
		}
		h, err := NewHook(nc.Exec, u, or(nc.ExecTimeout.D(), DefaultExecTimeout))
		if err != nil {
			return nil, err
		}
		o.Hook = h
	}
	if len(o.Senders) == 0 && o.Hook == nil {
		return nil, nil
	}
	return New(o), nil
}

func or(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// Sink takes an event; it never blocks (it is called on the engine
// goroutine). Events that find the queue full are counted as dropped.
func (n *Notifier) Sink(r event.Record) {
	select {
	case n.in <- r:
	default:
		n.count(intake, func(s *Stats) { s.Dropped++ })
	}
}

// Stats returns each notifier's counts, sorted by name.
func (n *Notifier) Stats() []Stats {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]Stats, 0, len(n.stats))
	for _, s := range n.stats {
		out = append(out, *s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func (n *Notifier) count(name string, f func(*Stats)) {
	n.mu.Lock()
	f(n.stats[name])
	n.mu.Unlock()
}

// Run groups events and sends messages until ctx is done; then it sends
// what is pending (bounded by a short grace period) and returns.
func (n *Notifier) Run(ctx context.Context) {
	var wg sync.WaitGroup
	sendCtx, cancelSends := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelSends()
	for _, s := range n.o.Senders {
		q := n.queues[s.Name()]
		wg.Go(func() { n.deliver(sendCtx, s, q) })
	}
	if n.o.Hook != nil {
		wg.Go(func() { n.runHook(sendCtx) })
	}
	g := &Grouper{Wait: n.o.Wait, MinInterval: n.o.MinInterval, Max: maxBatch}
	for {
		var due <-chan time.Time
		if at, ok := g.Due(); ok {
			due = n.o.Clock.After(at.Sub(n.o.Clock.Now()))
		}
		select {
		case r := <-n.in:
			n.take(g, r)
		case <-due:
			if b, ok := g.Take(n.o.Clock.Now()); ok {
				n.dispatch(ctx, b)
			}
		case <-ctx.Done():
			// The last events (the instances released on shutdown)
			// still go out, without waiting for the window.
			for len(n.in) > 0 {
				n.take(g, <-n.in)
			}
			if b, ok := g.Flush(n.o.Clock.Now()); ok {
				// The engine has stopped: no status to read.
				n.send(Compose(n.o.Node, b, api.Status{}, n.o.Clock.Now()))
			}
			for _, q := range n.queues {
				close(q)
			}
			close(n.hookq)
			done := make(chan struct{})
			go func() { wg.Wait(); close(done) }()
			select {
			case <-done:
			case <-n.o.Clock.After(10 * time.Second):
				cancelSends()
				<-done
			}
			return
		}
	}
}

func (n *Notifier) take(g *Grouper, r event.Record) {
	if n.notable(r) {
		g.Add(r, n.o.Clock.Now())
	}
	if n.o.Hook == nil {
		return
	}
	select {
	case n.hookq <- r:
	default:
		n.count(n.o.Hook.Name(), func(s *Stats) { s.Dropped++ })
	}
}

// notable tells whether an event deserves a message: a server's first
// health result confirming it up (halb starting) does not.
func (n *Notifier) notable(r event.Record) bool {
	h := r.Health
	if h == nil {
		return true
	}
	k := serverKey{h.Pool, h.Addr, h.Port}
	_, seen := n.seen[k]
	n.seen[k] = h.Up
	return seen || !h.Up
}

// dispatch composes the batch's message and queues it for every sender.
func (n *Notifier) dispatch(ctx context.Context, b Batch) {
	n.send(Compose(n.o.Node, b, n.status(ctx), n.o.Clock.Now()))
}

// send queues m for every sender; a busy sender's copy is dropped.
func (n *Notifier) send(m Message) {
	for _, s := range n.o.Senders {
		select {
		case n.queues[s.Name()] <- m:
		default:
			n.count(s.Name(), func(st *Stats) { st.Dropped++ })
			n.o.Log.Warn("notification dropped: the notifier is still busy with earlier ones", "notifier", s.Name(), "subject", m.Subject)
		}
	}
}

func (n *Notifier) status(ctx context.Context) api.Status {
	if n.o.Status == nil {
		return api.Status{}
	}
	ctx, cancel := context.WithTimeout(ctx, statusTimeout)
	defer cancel()
	st, err := n.o.Status(ctx)
	if err != nil {
		n.o.Log.Warn("notification without current state: status unavailable", "err", err)
		return api.Status{}
	}
	return st
}

func (n *Notifier) deliver(ctx context.Context, s Sender, q <-chan Message) {
	for m := range q {
		if err := s.Send(ctx, m); err != nil {
			n.count(s.Name(), func(st *Stats) { st.Failed++ })
			n.o.Log.Error("notification failed", "notifier", s.Name(), "subject", m.Subject, "err", err)
			continue
		}
		n.count(s.Name(), func(st *Stats) { st.Sent++ })
		n.o.Log.Info("notification sent", "notifier", s.Name(), "subject", m.Subject)
	}
}

// HookInput is the JSON a notify program reads on stdin.
type HookInput struct {
	// SchemaVersion is event.SchemaVersion.
	SchemaVersion int           `json:"schema_version"`
	Args          []string      `json:"args"`
	Event         event.Record  `json:"event"`
	Instance      *api.Instance `json:"instance,omitempty"`
	Pool          *PoolState    `json:"pool,omitempty"`
}

func (n *Notifier) runHook(ctx context.Context) {
	groups := newGroupStates(n.o.SyncGroups)
	h := n.o.Hook
	for r := range n.hookq {
		st := n.status(ctx)
		in := HookInput{SchemaVersion: event.SchemaVersion, Event: r}
		switch {
		case r.VRRP != nil:
			for _, i := range st.VRRP {
				if i.Name == r.VRRP.Instance {
					in.Instance = &i
				}
			}
		case r.Health != nil || r.Quorum != nil:
			if p, ok := poolStates(st)[affectedPools([]event.Record{r})[0]]; ok {
				in.Pool = &p
			}
		}
		for _, args := range hookArgs(r, groups) {
			in.Args = args
			stdin, _ := event.Marshal(in)
			if err := h.Run(ctx, args, stdin); err != nil {
				n.count(h.Name(), func(s *Stats) { s.Failed++ })
				n.o.Log.Error("notify program failed", "err", err)
				continue
			}
			n.count(h.Name(), func(s *Stats) { s.Sent++ })
		}
	}
}
