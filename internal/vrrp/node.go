// Package vrrp runs the Virtual Router Redundancy Protocol: it moves
// virtual IPs between nodes, interoperating with keepalived. The advert
// codec is package packet and the state machine package fsm; this package
// does their I/O (sockets, addresses, tracking, notify programs).
package vrrp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"reflect"
	"slices"
	"time"

	"halb/internal/clock"
	"halb/internal/config"
	"halb/internal/event"
	"halb/internal/netif"
	"halb/internal/proc"
	"halb/internal/vrrp/ah"
	"halb/internal/vrrp/fsm"
	"halb/internal/vrrp/packet"
)

// Net is what the runner does to interfaces (package netif).
type Net interface {
	AddAddrs(ifname string, a []netif.Address) error
	RemoveAddrs(ifname string, p []netip.Prefix) error
	Announce(ifname string, addrs []netip.Addr) error
	PrimaryAddr(ifname string, family int, vips []netip.Prefix) (netip.Addr, error)
	LinkUp(ifname string) (bool, error)
	WatchLinks(ctx context.Context, out chan<- netif.LinkChange) error
	WatchAddrs(ctx context.Context, out chan<- netif.AddrChange) error
	AddRouting(routes []netif.Route, rules []netif.Rule) error
	RemoveRouting(routes []netif.Route, rules []netif.Rule) error
	EnsureVMAC(base, name string, mac net.HardwareAddr) error
	RemoveVMAC(name string) error
	SetDropped(addrs []netip.Addr) error
}

type kernelNet struct{}

func (kernelNet) AddAddrs(i string, a []netif.Address) error   { return netif.AddAddresses(i, a) }
func (kernelNet) RemoveAddrs(i string, p []netip.Prefix) error { return netif.RemoveAddrs(i, p) }
func (kernelNet) Announce(i string, a []netip.Addr) error      { return netif.Announce(i, a) }
func (kernelNet) PrimaryAddr(i string, f int, v []netip.Prefix) (netip.Addr, error) {
	return netif.PrimaryAddr(i, f, v)
}
func (kernelNet) LinkUp(i string) (bool, error) { return netif.LinkUp(i) }
func (kernelNet) EnsureVMAC(base, name string, mac net.HardwareAddr) error {
	return netif.EnsureVMAC(base, name, mac)
}
func (kernelNet) RemoveVMAC(name string) error        { return netif.RemoveVMAC(name) }
func (kernelNet) SetDropped(addrs []netip.Addr) error { return netif.SetDropped(addrs) }
func (kernelNet) WatchLinks(ctx context.Context, out chan<- netif.LinkChange) error {
	return netif.WatchLinks(ctx, out)
}
func (kernelNet) WatchAddrs(ctx context.Context, out chan<- netif.AddrChange) error {
	return netif.WatchAddrs(ctx, out)
}

// Option configures a Node.
type Option func(*Node)

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(n *Node) { n.log = l } }

// WithClock sets the clock (default clock.Real).
func WithClock(c clock.Clock) Option { return func(n *Node) { n.clock = c } }

// Node runs every VRRP instance of a configuration. It implements the
// engine's Announcer.
type Node struct {
	cfg    *config.Config
	log    *slog.Logger
	clock  clock.Clock
	net    Net
	reload chan reloadReq
	// counters count each instance's adverts (VRRPCounters).
	counters counterSet
}

type reloadReq struct {
	cfg  *config.Config
	done chan error
}

// New returns a node for cfg; nothing starts before Run.
func New(cfg *config.Config, opts ...Option) *Node {
	n := &Node{cfg: cfg, log: slog.New(slog.DiscardHandler), clock: clock.Real{}, net: kernelNet{}, reload: make(chan reloadReq)}
	for _, o := range opts {
		o(n)
	}
	return n
}

// Reload switches to cfg: unchanged instances keep their state and VIPs,
// removed ones are released, new or changed ones (re)start.
func (n *Node) Reload(cfg *config.Config) error {
	req := reloadReq{cfg: cfg, done: make(chan error, 1)}
	select {
	case n.reload <- req:
		return <-req.done
	case <-n.clock.After(10 * time.Second):
		return errors.New("vrrp reload: the runner is not running")
	}
}

// Run runs every instance until ctx is done, then sends priority-0
// adverts for what it is master of and removes the VIPs.
func (n *Node) Run(ctx context.Context, events chan<- event.VRRP) error {
	r := &runner{
		log: n.log, clock: n.clock, net: n.net, events: events, counters: &n.counters,
		open:      openConn,
		sockets:   map[sockKey]conn{},
		instances: map[string]*instance{},
		rx:        make(chan received, 64),
		scriptRes: make(chan scriptResult, 16),
		done:      make(chan struct{}),
		scripts:   map[string]*scriptRun{},
		linkUp:    map[string]bool{},
		netq:      make(chan func(), 256),
		notifyq:   proc.NewQueue(1, notifyQueue),
		scanProcs: func() ([]process, error) { return scanProc("/proc") },
	}
	defer close(r.done)
	netDone := make(chan struct{})
	go func() {
		for f := range r.netq {
			f()
		}
		close(netDone)
	}()
	links := make(chan netif.LinkChange, 64)
	wctx, stopWatch := context.WithCancel(context.Background())
	defer stopWatch()
	watchErr := make(chan error, 1)
	go func() { watchErr <- n.net.WatchLinks(wctx, links) }()
	addrs := make(chan netif.AddrChange, 64)
	addrWatchErr := make(chan error, 1)
	go func() { addrWatchErr <- n.net.WatchAddrs(wctx, addrs) }()

	if err := r.apply(n.cfg); err != nil {
		// The other instances run; a reload may fix these.
		r.log.Error("VRRP instances not started", "err", err)
	}
	for {
		var timer <-chan time.Time
		if d := r.nextDeadline(); !d.IsZero() {
			timer = r.clock.After(max(d.Sub(r.clock.Now()), 0))
		}
		select {
		case <-ctx.Done():
			r.shutdown(netDone)
			return nil
		case req := <-n.reload:
			req.done <- r.apply(req.cfg)
		case p := <-r.rx:
			r.receive(p)
		case lc := <-links:
			r.link(lc)
		case ac := <-addrs:
			r.addrChange(ac)
		case sr := <-r.scriptRes:
			r.script(sr)
		case err := <-watchErr:
			if err != nil {
				r.log.Error("link watch stopped; interface tracking is off", "err", err)
			}
			watchErr = nil
		case err := <-addrWatchErr:
			if err != nil {
				r.log.Error("address watch stopped; VIPs removed by hand are not put back", "err", err)
			}
			addrWatchErr = nil
		case <-timer:
		}
		r.tick()
	}
}

type sockKey struct {
	ifname string
	family int
	ah     bool // IPsec AH (protocol 51) instead of VRRP (112)
}

// instance is one running VRRP instance.
type instance struct {
	cfg   config.Instance
	m     fsm.Machine
	sock  conn
	src   netip.Addr
	dsts  []netip.Addr
	peers map[netip.Addr]bool
	form  packet.Checksum
	// vipAddrs are the addresses the adverts list; sets are all the
	// VIPs by interface.
	vipAddrs []netip.Addr
	sets     []vipSet
	// rt is what the instance adds besides its VIPs while master.
	rt    routing
	group string
	cnt   *counters
	// faults are the active reasons for FAULT, by source.
	faults map[string]string
	// weights are the active tracking weights, by source.
	weights map[string]int
	// announce timers: second burst and periodic refresh (zero: off);
	// burstCount is the second burst's size.
	burstAt, refreshAt time.Time
	burstCount         int
	// reported is what the engine last heard.
	reported fsm.Machine
	// mismatchReported, versionReported and intervalReported: adverts
	// listing other addresses, of another version, with another
	// interval were reported (they are once).
	mismatchReported, versionReported, intervalReported bool
	// seq and ipID number the adverts sent under AH (ipID the IP
	// header's identification, which the ICV covers).
	seq  ah.Sequence
	ipID uint16
}

type runner struct {
	log       *slog.Logger
	clock     clock.Clock
	net       Net
	events    chan<- event.VRRP
	cfg       *config.Config
	open      func(key sockKey) (conn, error)
	sockets   map[sockKey]conn
	instances map[string]*instance
	rx        chan received
	scriptRes chan scriptResult
	done      chan struct{}
	scripts   map[string]*scriptRun
	linkUp    map[string]bool
	counters  *counterSet
	sched     scheduling
	// netq runs VIP changes and announcements in order, off the loop, so
	// that a slow kernel or a long GARP burst does not hold back the
	// adverts of other instances (which would let their backups take
	// over).
	netq chan func()
	// notifyq runs the instances' notify executables.
	notifyq *proc.Queue
	// procs are the tracked processes by name; scanProcs lists the
	// running processes.
	procs     map[string]*procState
	scanProcs func() ([]process, error)
	// noAccept holds the VIPs dropped, by instance (no_accept while
	// master); dropped is the list the kernel has.
	noAccept map[string][]netip.Addr
	dropped  []netip.Addr
	// filters are the sockets' kernel filters; drops, the datagrams
	// each had dropped when last heard of.
	filters map[conn]filterSpec
	drops   map[conn]uint32
}

// notifyQueue is how many notify runs may wait for the one running.
const notifyQueue = 64

// apply starts, keeps, restarts or stops instances to match cfg; it
// returns the instances that could not start.
func (r *runner) apply(cfg *config.Config) error {
	old := r.cfg
	r.cfg = cfg
	if err := r.sched.set(cfg.VRRP.RealtimePriority, cfg.VRRP.LockMemory, r.clock.Now()); err != nil {
		r.log.Error("VRRP scheduling not applied", "err", err)
	}
	want := map[string]config.Instance{}
	for _, in := range cfg.VRRP.Instances {
		want[in.Name] = in
	}
	for name, ins := range r.instances {
		if w, ok := want[name]; !ok || !reflect.DeepEqual(w, ins.cfg) || groupOf(old, name) != groupOf(cfg, name) ||
			old != nil && old.VRRP.Group(ins.cfg.Family()) != cfg.VRRP.Group(ins.cfg.Family()) {
			r.stop(ins, "removed or changed by reload")
			delete(r.instances, name)
		}
	}
	names := map[string]bool{}
	for name := range want {
		names[name] = true
	}
	r.counters.keep(names)
	r.syncScripts(cfg)
	r.syncProcesses(cfg)
	var errs []error
	now := r.clock.Now()
	for _, ins := range r.instances {
		r.track(ins, now) // a restarted script starts up again
	}
	for _, in := range cfg.VRRP.Instances {
		if _, ok := r.instances[in.Name]; ok {
			continue
		}
		if err := r.start(in, groupOf(cfg, in.Name)); err != nil {
			errs = append(errs, fmt.Errorf("start VRRP instance %s: %w", in.Name, err))
		}
	}
	r.closeUnusedSockets()
	r.syncFilters()
	r.setStatic(old, cfg)
	r.syncGroups()
	for _, ins := range r.instances {
		if ins.group != "" {
			r.step(ins, fsm.Event{Effective: r.effective(ins)}, now) // the group's priority
		}
	}
	return errors.Join(errs...)
}

func groupOf(cfg *config.Config, name string) string {
	if cfg == nil {
		return ""
	}
	for _, g := range cfg.VRRP.SyncGroups {
		if slices.Contains(g.Instances, name) {
			return g.Name
		}
	}
	return ""
}

func (r *runner) start(in config.Instance, group string) error {
	fam := in.Family()
	sockDev := in.Interface
	if in.VMAC {
		if err := r.net.EnsureVMAC(in.Interface, in.VMACName, netif.VirtualMAC(in.VRID, fam)); err != nil {
			return err
		}
		if !in.VMACXmitBase {
			sockDev = in.VMACName
		}
	}
	key := sockKey{sockDev, fam, usesAH(in)}
	s := r.sockets[key]
	if s == nil {
		var err error
		if s, err = r.open(key); err != nil {
			return err
		}
		r.sockets[key] = s
		go s.read(r.rx, r.done)
	}
	ins := &instance{cfg: in, sock: s, group: group, faults: map[string]string{}, weights: map[string]int{},
		peers: map[netip.Addr]bool{}, cnt: r.counters.of(in.Name)}
	ins.vipAddrs, ins.sets, ins.rt = in.AdvertisedVIPs(), vipSets(in), routingOf(in.Routes, in.Rules)
	if in.Unicast() {
		ins.dsts = in.UnicastPeers
		for _, p := range in.UnicastPeers {
			ins.peers[p] = true
		}
	} else {
		group := r.cfg.VRRP.Group(fam)
		if err := s.join(group); err != nil {
			return err
		}
		ins.dsts = []netip.Addr{group}
	}
	ins.src = in.UnicastSource
	if !ins.src.IsValid() || fam == 6 && !in.Unicast() {
		src, err := r.net.PrimaryAddr(srcDev(in, sockDev, fam), fam, in.VIPs)
		if err != nil {
			return err
		}
		ins.src = src
	}
	if in.IPv4Checksum == "message" {
		ins.form = packet.ChecksumMessage
	}
	// Stale VIPs: this node is not master of them yet.
	if in.Priority != 255 {
		sets, rt := ins.sets, ins.rt
		r.netq <- func() {
			r.removeRouting(in, rt, "removing stale routes or rules failed")
			r.removeVIPs(in, sets, "removing stale VIPs failed")
		}
	}
	ins.m = fsm.NewMachine(fsm.Params{Version: in.Version, Priority: in.Priority, Interval: in.AdvertInterval.D(),
		Preempt: in.Preempt, PreemptDelay: in.PreemptDelay.D(), Self: ins.src})
	ins.reported = ins.m
	r.instances[in.Name] = ins
	r.log.Info("VRRP instance starting", "instance", in.Name, "interface", in.Interface, "vrid", in.VRID,
		"priority", in.Priority, "version", in.Version, "source", ins.src, "unicast", in.Unicast())
	now := r.clock.Now()
	r.initTracking(ins)
	r.step(ins, fsm.Event{Effective: r.effective(ins)}, now)
	r.step(ins, fsm.Event{Start: true}, now)
	return nil
}

func (r *runner) stop(ins *instance, why string) {
	now := r.clock.Now()
	r.step(ins, fsm.Event{Stop: true, Why: why}, now)
}

func (r *runner) closeUnusedSockets() {
	for key, s := range r.sockets {
		used := false
		for _, ins := range r.instances {
			used = used || ins.sock == s
		}
		if !used {
			s.close()
			delete(r.sockets, key)
			delete(r.filters, s)
			delete(r.drops, s)
		}
	}
}

// syncFilters gives each socket a kernel filter for the instances on it.
// Without one, a socket hears everything and the checks drop the rest.
func (r *runner) syncFilters() {
	if r.filters == nil {
		r.filters = map[conn]filterSpec{}
	}
	for _, s := range r.sockets {
		spec := filterOf(r.instances, s)
		if old, ok := r.filters[s]; ok && old.equal(spec) {
			continue
		}
		if err := s.filter(spec); err != nil {
			r.log.Error("VRRP socket not filtered in the kernel", "err", err)
			delete(r.filters, s)
			continue
		}
		r.filters[s] = spec
	}
}

// overflow counts, for each instance on p's socket, the datagrams the
// socket dropped since the last it delivered (the kernel does not say for
// which VRID they were).
func (r *runner) overflow(p received) {
	last := r.drops[p.sock]
	if p.drops == last {
		return
	}
	if r.drops == nil {
		r.drops = map[conn]uint32{}
	}
	r.drops[p.sock] = p.drops
	for _, ins := range r.instances {
		if ins.sock == p.sock {
			ins.cnt.rejectN(RejectOverflow, uint64(p.drops-last))
		}
	}
}

// shutdown stops every instance and, once the queued interface changes
// are done (netDone), removes the VIPs.
func (r *runner) shutdown(netDone <-chan struct{}) {
	for _, ins := range r.instances {
		r.stop(ins, "halb stopping")
	}
	close(r.netq)
	<-netDone
	for _, ins := range r.instances {
		r.removeRouting(ins.cfg, ins.rt, "removing routes or rules at shutdown failed")
		r.removeVIPs(ins.cfg, ins.sets, "removing VIPs at shutdown failed")
		if ins.cfg.VMAC {
			if err := r.net.RemoveVMAC(ins.cfg.VMACName); err != nil {
				r.log.Error("removing the virtual MAC interface at shutdown failed", "instance", ins.cfg.Name, "err", err)
			}
		}
	}
	r.removeStatic(staticOf(r.cfg))
	if len(r.dropped) > 0 {
		if err := r.net.SetDropped(nil); err != nil {
			r.log.Error("removing the no_accept rules at shutdown failed", "err", err)
		}
	}
	for key, s := range r.sockets {
		s.close()
		delete(r.sockets, key)
	}
	if err := r.sched.set(0, false, r.clock.Now()); err != nil {
		r.log.Error("VRRP scheduling not reset", "err", err)
	}
}

// step feeds one event to an instance's machine (and, through its sync
// group, to the members that follow it), performs the actions and reports
// what changed.
func (r *runner) step(ins *instance, ev fsm.Event, now time.Time) {
	group := []*instance{ins}
	if ins.group != "" {
		for _, o := range r.members(ins.group) {
			if o != ins {
				group = append(group, o)
			}
		}
	}
	ms := make([]fsm.Machine, len(group))
	names := make([]string, len(group))
	before := make([]fsm.State, len(group))
	for k, o := range group {
		ms[k], names[k], before[k] = o.m, o.cfg.Name, o.m.State
	}
	acts := fsm.StepGroup(ins.group, names, ms, 0, ev, now)
	changed := false
	for k, o := range group {
		o.m = ms[k]
		for _, a := range acts[k] {
			r.perform(o, a, now)
		}
		r.report(o, now)
		changed = changed || before[k] != o.m.State
	}
	if ins.group != "" && changed {
		r.syncGroups()
	}
}

func (r *runner) perform(ins *instance, a fsm.Action, now time.Time) {
	in := ins.cfg
	switch a {
	case fsm.SendAdvert, fsm.SendPriority0:
		prio := ins.m.Effective
		if a == fsm.SendPriority0 {
			prio = 0
		}
		r.send(ins, prio)
	case fsm.AddVIPs:
		// The drop goes in before the VIPs, so that no packet to them is
		// accepted in between.
		r.setNoAccept(ins, true)
		sets, rt := ins.sets, ins.rt
		r.netq <- func() {
			if !r.addVIPs(in, sets) {
				return
			}
			r.announce(in, sets, in.GARP.Count)
			if !rt.empty() {
				if err := r.net.AddRouting(rt.routes, rt.rules); err != nil {
					r.log.Error("adding routes or rules failed", "instance", in.Name, "err", err)
				}
			}
		}
		if in.GARP.SecondBurst > 0 {
			ins.burstAt, ins.burstCount = now.Add(in.GARP.SecondBurst.D()), in.GARP.Count
		}
		if in.GARP.Refresh > 0 {
			ins.refreshAt = now.Add(in.GARP.Refresh.D())
		}
	case fsm.AnnounceVIPs:
		count, sets := in.GARP.LowerPriorityCount, ins.sets
		if count == 0 {
			return
		}
		r.log.Info("lower priority master heard; announcing the VIPs again", "instance", in.Name)
		r.netq <- func() { r.announce(in, sets, count) }
		if in.GARP.LowerPriorityDelay > 0 {
			ins.burstAt, ins.burstCount = now.Add(in.GARP.LowerPriorityDelay.D()), count
		}
	case fsm.RemoveVIPs:
		ins.burstAt, ins.refreshAt = time.Time{}, time.Time{}
		sets, rt := ins.sets, ins.rt
		r.netq <- func() {
			r.removeRouting(in, rt, "removing routes or rules failed")
			r.removeVIPs(in, sets, "removing VIPs failed")
		}
		r.setNoAccept(ins, false)
	}
}

func (r *runner) send(ins *instance, prio int) {
	in := ins.cfg
	a := packet.Advert{Version: in.Version, VRID: uint8(in.VRID), Priority: uint8(prio), Interval: in.AdvertInterval.D(),
		Addrs: ins.vipAddrs}
	var seal *ah.Seal
	switch {
	case usesAH(in):
		// One number for each advert, whatever the number of peers, as
		// keepalived.
		if ins.ipID++; ins.ipID == 0 {
			ins.ipID = 1
		}
		a.AuthType = packet.AuthAH
		seal = &ah.Seal{Src: ins.src, ID: ins.ipID, Seq: ins.seq.Next(), Key: in.AuthPassword, Unicast: in.Unicast()}
	case in.Version == 2 && in.AuthPassword != "":
		a.AuthType, a.Auth = packet.AuthSimple, packet.Password(in.AuthPassword)
	}
	for _, dst := range ins.dsts {
		b, err := a.Marshal(ins.src, dst, ins.form)
		if err == nil && seal != nil {
			seal.Dst = dst
			b, err = seal.Datagram(b)
		}
		if err == nil {
			err = ins.sock.send(b, ins.src, dst)
		}
		if err != nil {
			r.log.Warn("advert not sent", "instance", in.Name, "err", err)
			continue
		}
		ins.cnt.sent.Add(1)
	}
}

// report sends an event when the state, effective priority or master
// changed since the last report.
func (r *runner) report(ins *instance, now time.Time) {
	m, was := ins.m, ins.reported
	if m.State == was.State && m.Effective == was.Effective && m.Master == was.Master {
		return
	}
	why := m.Reason
	switch {
	case m.State != was.State:
	case m.Effective != was.Effective:
		why = fmt.Sprintf("effective priority %d → %d: %s", was.Effective, m.Effective, r.weightWhy(ins))
	default:
		why = fmt.Sprintf("master is now %s", m.Master)
		if !m.Master.IsValid() {
			why = "master unknown"
		}
	}
	ins.reported = m
	ev := event.VRRP{At: now, Instance: ins.cfg.Name, VRID: ins.cfg.VRID, Interface: ins.cfg.Interface,
		Old: was.State.String(), New: m.State.String(), Priority: ins.cfg.Priority, EffectivePriority: m.Effective,
		Master: m.Master, Reason: why}
	if m.State != was.State {
		r.log.Info("VRRP transition", "instance", ev.Instance, "from", ev.Old, "to", ev.New, "reason", why)
		r.notify(ins, ev)
	}
	r.events <- ev
}

// notice reports what happened to an instance while its state stays.
func (r *runner) notice(ins *instance, why string, now time.Time) {
	m := ins.m
	r.events <- event.VRRP{At: now, Instance: ins.cfg.Name, VRID: ins.cfg.VRID, Interface: ins.cfg.Interface,
		Old: m.State.String(), New: m.State.String(), Priority: ins.cfg.Priority, EffectivePriority: m.Effective,
		Master: m.Master, Reason: why, Notice: true}
}

// receive checks an advert and gives it to its instance, counting it as
// received or rejected with a reason.
func (r *runner) receive(p received) {
	r.overflow(p)
	var ins *instance
	if len(p.msg) >= 2 {
		for _, c := range r.instances {
			if c.sock == p.sock && c.cfg.VRID == int(p.msg[1]) {
				ins = c
				break
			}
		}
	}
	if ins == nil {
		return
	}
	if p.hdr.Src == ins.src {
		return // our own
	}
	if len(ins.peers) > 0 && !ins.peers[p.hdr.Src] {
		r.log.Debug("advert from an unknown source dropped", "instance", ins.cfg.Name, "src", p.hdr.Src)
		ins.cnt.reject(RejectUnknownSource)
		return
	}
	if usesAH(ins.cfg) {
		// Nothing in the advert is trusted before its ICV.
		if p.ah == nil {
			ins.cnt.reject(RejectAuth)
			return
		}
		if err := p.ah.Verify(ins.cfg.AuthPassword, ins.cfg.Unicast()); err != nil {
			r.log.Warn("advert with wrong AH authentication dropped", "instance", ins.cfg.Name, "src", p.hdr.Src, "err", err)
			ins.cnt.reject(RejectICV)
			return
		}
	}
	a, err := packet.Decode(p.hdr, p.msg)
	if err != nil {
		r.log.Debug("advert dropped", "instance", ins.cfg.Name, "src", p.hdr.Src, "err", err)
		ins.cnt.reject(decodeReason(err))
		return
	}
	in := ins.cfg
	if a.Version != in.Version {
		r.log.Debug("advert of another VRRP version dropped", "instance", in.Name, "src", p.hdr.Src, "version", a.Version)
		ins.cnt.reject(RejectVersion)
		if !ins.versionReported {
			ins.versionReported = true
			why := fmt.Sprintf("hears VRRPv%d adverts for VRID %d from %s but speaks VRRPv%d: they are dropped; set the same version on every node",
				a.Version, in.VRID, p.hdr.Src, in.Version)
			r.log.Warn("adverts of another VRRP version (logged once)", "instance", in.Name, "src", p.hdr.Src,
				"theirs", a.Version, "ours", in.Version)
			r.notice(ins, why, r.clock.Now())
			r.syncFilters() // the kernel drops the rest
		}
		return
	}
	if in.Version == 2 {
		want := uint8(packet.AuthNone)
		switch {
		case usesAH(in):
			want = packet.AuthAH
		case in.AuthPassword != "":
			want = packet.AuthSimple
		}
		if a.AuthType != want || want == packet.AuthSimple && a.Auth != packet.Password(in.AuthPassword) {
			r.log.Warn("advert with wrong authentication dropped", "instance", in.Name, "src", p.hdr.Src)
			ins.cnt.reject(RejectAuth)
			return
		}
		if want == packet.AuthAH && !ins.seq.Accept(p.ah.Seq) {
			r.log.Warn("AH advert with an old sequence number dropped (a replay, or a peer that restarted)", "instance", in.Name,
				"src", p.hdr.Src, "seq", p.ah.Seq)
			ins.cnt.reject(RejectReplay)
			return
		}
		if a.Interval != in.AdvertInterval.D() {
			r.otherInterval(ins, p.hdr.Src, a.Interval, "they are dropped (VRRPv2)")
			ins.cnt.reject(RejectInterval)
			return
		}
	}
	if in.Version == 3 && a.Interval != in.AdvertInterval.D() {
		r.otherInterval(ins, p.hdr.Src, a.Interval, "a backup follows its master's (VRRPv3)")
	}
	if a.Priority != 255 && !sameAddrs(a.Addrs, ins.vipAddrs) {
		// RFC 5798 §7.1 and RFC 3768 §7.1, as keepalived: only the
		// address owner may advertise another list.
		if !ins.mismatchReported {
			ins.mismatchReported = true
			r.log.Warn("adverts listing other VIPs dropped (logged once)", "instance", in.Name, "src", p.hdr.Src,
				"theirs", a.Addrs, "ours", ins.vipAddrs)
		}
		ins.cnt.reject(RejectAddressList)
		return
	}
	if usesAH(in) && ins.m.State == fsm.Master && a.Priority != 0 &&
		(int(a.Priority) < ins.m.Effective || int(a.Priority) == ins.m.Effective && p.hdr.Src.Less(ins.src)) {
		// A lower-priority master numbers above what this node sent:
		// the next advert goes above its number, as keepalived's does,
		// or the other node would drop it as a replay.
		ins.seq.Skip(p.ah.Seq)
	}
	ins.cnt.received.Add(1)
	r.step(ins, fsm.Event{Advert: a, Src: p.hdr.Src}, r.clock.Now())
}

// usesAH reports whether instance in sends and hears its adverts under
// IPsec AH.
func usesAH(in config.Instance) bool { return in.AuthType == "ah" }

// otherInterval reports, once, adverts for an instance's VRID sent at
// another interval than its own, and what becomes of them.
func (r *runner) otherInterval(ins *instance, src netip.Addr, theirs time.Duration, outcome string) {
	if ins.intervalReported {
		return
	}
	ins.intervalReported = true
	in := ins.cfg
	r.log.Warn("adverts with another interval (logged once)", "instance", in.Name, "src", src,
		"theirs", theirs, "ours", in.AdvertInterval.D())
	r.notice(ins, fmt.Sprintf("hears adverts for VRID %d from %s every %v but sends every %v: %s; set the same advert_interval on every node",
		in.VRID, src, theirs, in.AdvertInterval.D(), outcome), r.clock.Now())
}

func sameAddrs(a, b []netip.Addr) bool {
	x, y := slices.Clone(a), slices.Clone(b)
	slices.SortFunc(x, netip.Addr.Compare)
	slices.SortFunc(y, netip.Addr.Compare)
	return slices.Equal(x, y)
}

// nextDeadline is the earliest timer of all instances.
func (r *runner) nextDeadline() time.Time {
	var next time.Time
	consider := func(t time.Time) {
		if !t.IsZero() && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	for _, ins := range r.instances {
		consider(ins.m.Deadline())
		consider(ins.burstAt)
		consider(ins.refreshAt)
	}
	consider(r.sched.next)
	consider(r.nextProcessScan())
	return next
}

// tick runs the timers that are due.
func (r *runner) tick() {
	now := r.clock.Now()
	if !r.sched.next.IsZero() && !now.Before(r.sched.next) {
		if err := r.sched.refresh(now); err != nil {
			r.log.Error("VRRP scheduling not applied to new threads", "err", err)
		}
	}
	if next := r.nextProcessScan(); !next.IsZero() && !now.Before(next) {
		r.countProcesses(now, false)
	}
	for _, ins := range r.instances {
		if d := ins.m.Deadline(); !d.IsZero() && !now.Before(d) {
			r.step(ins, fsm.Event{Tick: true}, now)
		}
		if !ins.burstAt.IsZero() && !now.Before(ins.burstAt) {
			ins.burstAt = time.Time{}
			in, sets, count := ins.cfg, ins.sets, ins.burstCount
			r.netq <- func() { r.announce(in, sets, count) }
		}
		if !ins.refreshAt.IsZero() && !now.Before(ins.refreshAt) {
			ins.refreshAt = now.Add(ins.cfg.GARP.Refresh.D())
			in, sets := ins.cfg, ins.sets
			r.netq <- func() { r.announce(in, sets, 1) }
		}
	}
}
