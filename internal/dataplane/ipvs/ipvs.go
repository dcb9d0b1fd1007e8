// Package ipvs is the IPVS data plane: it programs the kernel's IP Virtual
// Server over generic netlink, reconciling what the kernel has with the
// desired state and applying only the difference, and runs the kernel's
// connection-sync daemons.
//
// Ownership: the virtual services halb created are recorded in its state
// directory. Reconcile deletes only those; a service it did not create is
// left alone unless the desired state names its key (address or mark),
// which takes it over. The sync daemons are managed once the desired state
// has asked for them.
//
// After the first Reconcile has read the kernel, later ones compute the
// difference against what was applied (so a one-server change costs one
// netlink request); a failed request makes the next Reconcile read the
// kernel again, and so does a change by another process that Watch finds
// (IPVS sends no notifications: Watch compares the kernel with what was
// applied every few seconds). The requests of a difference go in batches, many to a
// sendmsg, each failing one named; the first read dumps the real servers
// of several services at once.
package ipvs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	cfipvs "github.com/cloudflare/ipvs"

	"halb/internal/clock"
	"halb/internal/dataplane"
)

// Dataplane is the IPVS data plane. Its methods are safe for concurrent
// use.
type Dataplane struct {
	log      *slog.Logger
	stateDir string
	procSys  string
	attempts int
	backoff  time.Duration
	sleep    func(context.Context, time.Duration) error
	dial     func() (kernel, error)
	netns    int
	sloppy   bool
	clock    clock.Clock
	// verifyEvery is how often Watch compares the kernel with have.
	verifyEvery time.Duration

	mu    sync.Mutex
	k     *counting
	owned owned
	have  *dataplane.State // what the kernel has, of what halb manages; nil: read it
	// bufs hold the normalized states; bufs[applied] is have's memory
	// when have is a state that was applied.
	bufs    [2]stateBuffer
	applied int
	// ownedExact is set when owned lists exactly the services of have.
	ownedExact bool
	daemons    []Daemon // running sync daemons, when have is set
	sysctl     map[string]string
	// changes is what the last successful Reconcile changed in the kernel.
	changes int
}

// Option configures a Dataplane.
type Option func(*Dataplane)

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option { return func(d *Dataplane) { d.log = l } }

// WithStateDir sets the directory where the record of what halb created
// is kept (default /var/lib/halb).
func WithStateDir(dir string) Option { return func(d *Dataplane) { d.stateDir = dir } }

// WithRetry sets how often a failing netlink request is tried, and the
// first wait between tries (doubled each time). Default: 3 tries, 20 ms.
func WithRetry(attempts int, backoff time.Duration) Option {
	return func(d *Dataplane) { d.attempts, d.backoff = max(attempts, 1), backoff }
}

// WithSleep replaces the wait between retries (tests use a fake clock).
func WithSleep(sleep func(context.Context, time.Duration) error) Option {
	return func(d *Dataplane) { d.sleep = sleep }
}

// WithProcSys sets where sysctls are written (default /proc/sys); the
// empty string disables sysctl management.
func WithProcSys(dir string) Option { return func(d *Dataplane) { d.procSys = dir } }

// WithSloppy sets net.ipv4.vs.sloppy_tcp and sloppy_sctp to 1, so a
// packet of a flow that started on another node creates a connection
// entry here: for nodes that share VIPs behind a router's ECMP, where a
// flow may move between nodes mid-stream. Together with the mh
// scheduler (flag mh-port) every node then picks the same real server.
func WithSloppy(on bool) Option { return func(d *Dataplane) { d.sloppy = on } }

// WithVerifyEvery sets how often Watch compares the kernel's services
// with those applied (default 5 s; IPVS notifies no changes).
func WithVerifyEvery(every time.Duration) Option { return func(d *Dataplane) { d.verifyEvery = every } }

// WithClock sets the clock of Watch's period (tests use a fake one).
func WithClock(c clock.Clock) Option { return func(d *Dataplane) { d.clock = c } }

// withKernel replaces the netlink connection (unit tests).
func withKernel(dial func() (kernel, error)) Option { return func(d *Dataplane) { d.dial = dial } }

// New returns an IPVS data plane. It reads the record of what halb
// created; it opens no netlink socket until the first Reconcile.
func New(opts ...Option) (*Dataplane, error) {
	d := &Dataplane{
		log:      slog.New(slog.DiscardHandler),
		stateDir: "/var/lib/halb",
		procSys:  "/proc/sys",
		attempts: 3,
		backoff:  20 * time.Millisecond,
		sleep:    func(ctx context.Context, w time.Duration) error { return clock.Sleep(ctx, clock.Real{}, w) },
		dial:     func() (kernel, error) { return dialKernel() },
		sysctl:   map[string]string{},
		clock:    clock.Real{},

		verifyEvery: 5 * time.Second,
	}
	for _, o := range opts {
		o(d)
	}
	var err error
	if d.owned, err = loadOwned(d.stateDir); err != nil {
		return nil, err
	}
	return d, nil
}

// Messages returns the number of netlink requests sent so far: reads
// (dumps) and writes.
func (d *Dataplane) Messages() (reads, writes int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.k == nil {
		return 0, 0
	}
	return d.k.reads.Load(), d.k.writes.Load()
}

// Close closes the netlink connection; the kernel keeps what was applied.
func (d *Dataplane) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.k == nil {
		return nil
	}
	err := d.k.Close()
	d.k = nil
	return err
}

func (d *Dataplane) connect() error {
	if d.k != nil {
		return nil
	}
	var k kernel
	err := inNetNS(d.netns, func() (err error) {
		k, err = d.dial()
		return err
	})
	if err != nil {
		return err
	}
	d.k = &counting{kernel: k}
	return nil
}

// Reconcile brings the kernel's virtual services and sync daemons to want,
// applying only the difference. A failing request is retried, then
// reported; the other changes are still applied.
func (d *Dataplane) Reconcile(ctx context.Context, want dataplane.State) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.connect(); err != nil {
		return err
	}
	next := 1 - d.applied
	w, err := normalizeState(want, &d.bufs[next])
	if err != nil {
		return fmt.Errorf("ipvs reconcile: %w", err)
	}
	if d.have == nil {
		if err := d.read(w); err != nil {
			return err
		}
	}
	diff := dataplane.Compute(*d.have, w)
	ownership := !d.ownedExact || d.owned.Sync != (want.Sync != nil) ||
		slices.ContainsFunc(diff.Services, func(c dataplane.ServiceChange) bool { return c.Op != dataplane.Update })
	if ownership {
		if err := d.recordOwned(w, want.Sync != nil); err != nil {
			return err
		}
	}
	var errs []error
	errs = append(errs, d.setSysctls(w)...)
	errs = append(errs, d.apply(ctx, diff)...)
	errs = append(errs, d.applySync(ctx, want.Sync)...)
	if len(errs) > 0 {
		d.have, d.daemons = nil, nil // read the kernel again next time
	} else {
		d.have, d.applied, d.changes = &w, next, diff.Size()
	}
	if ownership {
		if err := d.finishOwned(w, want.Sync != nil, len(errs) == 0); err != nil {
			errs = append(errs, err)
		}
	}
	d.ownedExact = len(errs) == 0
	if len(errs) > 0 {
		return fmt.Errorf("ipvs reconcile: %d of %d changes failed: %w", len(errs), diff.Size(), errors.Join(errs...))
	}
	if !diff.Empty() {
		d.log.Info("ipvs applied", "changes", diff.Size())
	}
	return nil
}

// Changes returns how many services and real servers the last successful
// Reconcile changed in the kernel: 0 after a restart that found them as
// wanted.
func (d *Dataplane) Changes() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.changes
}

// normalizeState keeps what IPVS implements (services; the sync daemons
// are handled apart) in the form the kernel reports. The result is built
// in buf's memory, so that the caller may reuse want, and a state that
// follows another allocates nothing.
func normalizeState(want dataplane.State, buf *stateBuffer) (dataplane.State, error) {
	if dup, ok := duplicateKey(want.Services); ok {
		return dataplane.State{}, fmt.Errorf("service %s is wanted twice", dup)
	}
	n := 0
	for _, s := range want.Services {
		n += len(s.Reals)
	}
	svcs := slices.Grow(buf.services[:0], len(want.Services))
	reals := slices.Grow(buf.reals[:0], n)
	for _, s := range want.Services {
		ns, err := normalize(s)
		if err != nil {
			return dataplane.State{}, err
		}
		start := len(reals)
		reals = append(reals, s.Reals...)
		ns.Reals = reals[start:len(reals):len(reals)]
		for i := range ns.Reals {
			if err := normalizeTunnel(&ns.Reals[i]); err != nil {
				return dataplane.State{}, fmt.Errorf("service %s: %w", s.Key, err)
			}
		}
		svcs = append(svcs, ns)
	}
	buf.services, buf.reals = svcs, reals
	return dataplane.State{Services: svcs}, nil
}

// stateBuffer is memory for one normalized state. The data plane has two:
// one holds the state last applied, the other the next one.
type stateBuffer struct {
	services []dataplane.VirtualService
	reals    []dataplane.Real
}

// duplicateKey finds a key that two services share. Sorted input (the
// engine's) is checked without an index.
func duplicateKey(svcs []dataplane.VirtualService) (dataplane.ServiceKey, bool) {
	byKey := func(a, b dataplane.VirtualService) int { return a.Key.Compare(b.Key) }
	if slices.IsSortedFunc(svcs, byKey) {
		for i := 1; i < len(svcs); i++ {
			if svcs[i].Key == svcs[i-1].Key {
				return svcs[i].Key, true
			}
		}
		return dataplane.ServiceKey{}, false
	}
	seen := make(map[dataplane.ServiceKey]bool, len(svcs))
	for _, s := range svcs {
		if seen[s.Key] {
			return s.Key, true
		}
		seen[s.Key] = true
	}
	return dataplane.ServiceKey{}, false
}

// read loads what the kernel has of the services halb manages: those it
// created and those it now wants.
func (d *Dataplane) read(want dataplane.State) error {
	wanted := map[dataplane.ServiceKey]bool{}
	for _, s := range want.Services {
		wanted[s.Key] = true
	}
	have, err := d.dump(func(k dataplane.ServiceKey) bool { return wanted[k] || d.owned.has(k) })
	if err != nil {
		return err
	}
	daemons, err := d.k.Daemons()
	if err != nil {
		return fmt.Errorf("ipvs: %w", err)
	}
	d.have, d.daemons = &have, daemons
	return nil
}

// dump reads the kernel's services that keep selects, with their real
// servers.
func (d *Dataplane) dump(keep func(dataplane.ServiceKey) bool) (dataplane.State, error) {
	all, err := d.k.Services()
	if err != nil {
		return dataplane.State{}, fmt.Errorf("ipvs: list services: %w", err)
	}
	var svcs []cfipvs.Service
	for _, ks := range all {
		if keep(keyOf(ks.Service)) {
			svcs = append(svcs, ks.Service)
		}
	}
	dests, err := d.k.Destinations(svcs)
	if err != nil {
		return dataplane.State{}, fmt.Errorf("ipvs: %w", err)
	}
	have := dataplane.State{}
	for i, ks := range svcs {
		vs := fromKernel(ks)
		vs.Reals = make([]dataplane.Real, 0, len(dests[i]))
		for _, dst := range dests[i] {
			vs.Reals = append(vs.Reals, realFromKernel(dst.Destination))
		}
		have.Services = append(have.Services, vs)
	}
	return have, nil
}

// apply performs a diff in three batches of requests: new and changed
// services, then real servers, then deletions of services.
func (d *Dataplane) apply(ctx context.Context, diff dataplane.Diff) []error {
	var reqs []request
	var svcs []dataplane.ServiceChange
	for _, c := range diff.Services {
		switch c.Op {
		case dataplane.Add:
			reqs = append(reqs, request{cmd: cmdNewService, svc: toKernel(c.Want)})
		case dataplane.Update:
			reqs = append(reqs, request{cmd: cmdSetService, svc: toKernel(c.Want)})
		default:
			continue
		}
		svcs = append(svcs, c)
	}
	errs := d.batch(ctx, reqs, func(i int) string {
		if svcs[i].Op == dataplane.Add {
			return fmt.Sprintf("add service %s", svcs[i].Want.Key)
		}
		return fmt.Sprintf("update service %s", svcs[i].Want.Key)
	})
	failed := map[dataplane.ServiceKey]bool{}
	var out []error
	for i, err := range errs {
		if err != nil {
			out = append(out, err)
			if svcs[i].Op == dataplane.Add {
				failed[svcs[i].Want.Key] = true
			}
		}
	}

	reqs = reqs[:0]
	var reals []dataplane.RealChange
	for _, c := range diff.Reals {
		if failed[c.Service] {
			continue // its service is missing: already reported
		}
		svc := toKernel(dataplane.VirtualService{Key: c.Service})
		switch c.Op {
		case dataplane.Add:
			reqs = append(reqs, request{cmd: cmdNewDest, svc: svc, dest: realToKernel(c.Want)})
		case dataplane.Update:
			reqs = append(reqs, request{cmd: cmdSetDest, svc: svc, dest: realToKernel(c.Want)})
		case dataplane.Delete:
			reqs = append(reqs, request{cmd: cmdDelDest, svc: svc, dest: realToKernel(c.Have)})
		default:
			continue
		}
		reals = append(reals, c)
	}
	out = appendErrs(out, d.batch(ctx, reqs, func(i int) string {
		switch c := reals[i]; c.Op {
		case dataplane.Add:
			return fmt.Sprintf("add real %s to %s", c.Want.AddrPort(), c.Service)
		case dataplane.Update:
			return fmt.Sprintf("update real %s of %s", c.Want.AddrPort(), c.Service)
		default:
			return fmt.Sprintf("remove real %s from %s", c.Have.AddrPort(), c.Service)
		}
	}))

	reqs, svcs = reqs[:0], svcs[:0]
	for _, c := range diff.Services {
		if c.Op == dataplane.Delete {
			reqs = append(reqs, request{cmd: cmdDelService, svc: toKernel(c.Have)})
			svcs = append(svcs, c)
		}
	}
	return appendErrs(out, d.batch(ctx, reqs, func(i int) string {
		return fmt.Sprintf("remove service %s", svcs[i].Have.Key)
	}))
}

func appendErrs(out, errs []error) []error {
	for _, err := range errs {
		if err != nil {
			out = append(out, err)
		}
	}
	return out
}

// batch sends requests in batches and retries each failing one with a
// doubling backoff, the failures of a round in one batch again. It returns
// each request's error, named by what (rendered only for a failure).
func (d *Dataplane) batch(ctx context.Context, reqs []request, what func(int) string) []error {
	if len(reqs) == 0 {
		return nil
	}
	errs := d.k.Apply(reqs)
	wait := d.backoff
	for range d.attempts - 1 {
		var again []int
		for i, err := range errs {
			if err != nil {
				again = append(again, i)
			}
		}
		if len(again) == 0 {
			break
		}
		for _, i := range again {
			d.log.Warn("ipvs request failed, retrying", "op", what(i), "err", errs[i], "wait", wait)
		}
		if serr := d.sleep(ctx, wait); serr != nil {
			for _, i := range again {
				errs[i] = fmt.Errorf("%w (then %w)", errs[i], serr)
			}
			break
		}
		retry := make([]request, len(again))
		for j, i := range again {
			retry[j] = reqs[i]
		}
		for j, err := range d.k.Apply(retry) {
			errs[again[j]] = err
		}
		wait *= 2
	}
	for i, err := range errs {
		if err != nil {
			errs[i] = fmt.Errorf("%s: %w", what(i), err)
		}
	}
	return errs
}

// try runs one netlink request, retrying with a doubling backoff. The
// request's name (format and args) is rendered only if it fails.
func (d *Dataplane) try(ctx context.Context, f func() error, format string, args ...any) error {
	what := func() string { return fmt.Sprintf(format, args...) }
	wait := d.backoff
	var err error
	for i := range d.attempts {
		if err = f(); err == nil {
			return nil
		}
		if i == d.attempts-1 {
			break
		}
		d.log.Warn("ipvs request failed, retrying", "op", what(), "err", err, "wait", wait)
		if serr := d.sleep(ctx, wait); serr != nil {
			return fmt.Errorf("%s: %w (then %w)", what(), err, serr)
		}
		wait *= 2
	}
	return fmt.Errorf("%s: %w", what(), err)
}

// wantedDaemons lists the daemons a sync state asks for, master first.
func wantedDaemons(s *dataplane.SyncDaemons) []Daemon {
	if s == nil {
		return nil
	}
	base := Daemon{Interface: s.Interface, SyncID: s.SyncID, MaxLen: s.MaxLen,
		McastGroup: s.McastGroup, McastPort: s.McastPort, McastTTL: s.McastTTL}
	var out []Daemon
	if s.Master {
		out = append(out, base)
	}
	if s.Backup {
		b := base
		b.Backup = true
		out = append(out, b)
	}
	return out
}

// daemonMatches reports whether a running daemon is the wanted one; the
// optional settings left at zero take the kernel's defaults.
func daemonMatches(want, have Daemon) bool {
	return want.Backup == have.Backup && want.Interface == have.Interface && want.SyncID == have.SyncID &&
		(want.MaxLen == 0 || want.MaxLen == have.MaxLen) &&
		(!want.McastGroup.IsValid() || want.McastGroup == have.McastGroup) &&
		(want.McastPort == 0 || want.McastPort == have.McastPort) &&
		(want.McastTTL == 0 || want.McastTTL == have.McastTTL)
}

// applySync starts and stops sync daemons so that exactly the wanted ones
// run. Daemons are left alone until halb has been asked to manage them.
func (d *Dataplane) applySync(ctx context.Context, s *dataplane.SyncDaemons) []error {
	want := wantedDaemons(s)
	if s == nil && !d.owned.Sync {
		return nil
	}
	var errs []error
	running := slices.Clone(d.daemons)
	for _, role := range []bool{false, true} {
		wi := slices.IndexFunc(want, func(x Daemon) bool { return x.Backup == role })
		hi := slices.IndexFunc(running, func(x Daemon) bool { return x.Backup == role })
		if hi >= 0 && wi >= 0 && daemonMatches(want[wi], running[hi]) {
			continue
		}
		if hi >= 0 {
			h := running[hi]
			if err := d.try(ctx, func() error { return d.k.DelDaemon(h) }, "stop %s sync daemon", h.Role()); err != nil {
				errs = append(errs, err)
				continue
			}
			running = slices.Delete(running, hi, hi+1)
			d.log.Info("ipvs sync daemon stopped", "role", h.Role(), "interface", h.Interface, "sync_id", h.SyncID)
		}
		if wi >= 0 {
			w := want[wi]
			if err := d.try(ctx, func() error { return d.k.NewDaemon(w) }, "start %s sync daemon", w.Role()); err != nil {
				errs = append(errs, err)
				continue
			}
			running = append(running, w)
			d.log.Info("ipvs sync daemon started", "role", w.Role(), "interface", w.Interface, "sync_id", w.SyncID)
		}
	}
	d.daemons = running
	return errs
}
