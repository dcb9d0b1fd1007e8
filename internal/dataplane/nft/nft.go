// Package nft is halb's nftables data plane. It owns one table (family
// inet, "halb" by default) and changes it only in whole netlink
// transactions that carry just the elements that changed.
//
// In marks-only mode the table marks packets for IPVS fwmark services:
// one interval map per address family, keyed by daddr . l4proto . dport,
// so that classification is one lookup whatever the number of services.
// In load-balance mode it also balances: new connections are dispatched
// by address, protocol and port (or by mark) to a chain per virtual
// service, which picks the backend at slot jhash(flow) mod M of the
// service's Maglev table and DNATs to it; direct-routing services go to a
// netdev table of the same name instead (see dr.go). Every seed and table
// is derived from the configuration alone, so two nodes agree on every
// flow.
package nft

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"github.com/mdlayher/netlink/nltest"
	"golang.org/x/sys/unix"

	"halb/internal/dataplane"
	"halb/internal/dataplane/nft/nfbatch"
)

// DefaultTable is the name of halb's table.
const DefaultTable = "halb"

// Dataplane programs halb's nftables table.
type Dataplane struct {
	table       string
	mode        Mode
	netns       int
	log         *slog.Logger
	removeOnEnd bool
	extraOpts   []nftables.ConnOption

	mu sync.Mutex
	// nl is the connection batches are sent on (nil: none open).
	nl *netlink.Conn
	// have is what the table holds after the last successful Reconcile;
	// nil means unknown: read the kernel first. applied is the Gen of
	// that Reconcile's state (0: none), and hadDR tells whether it had
	// direct-routing services.
	have    *content
	applied uint64
	hadDR   bool
	// drApplied is the direct-routing plan last applied (drKnown).
	drApplied *drPlan
	drKnown   bool
	// countersOpt is WithCounters' choice (nil: the default); counted is
	// the counters table's content after the last write (nil: unknown).
	// See counters.go.
	markMask    uint32 // the bits of the packet mark halb sets
	countersOpt *bool
	counted     *countPlan
	// changes is what the last successful Reconcile changed in the kernel.
	changes int
	// linkOf returns the device that leads to a DR backend (routeDevice;
	// tests without a kernel replace it).
	linkOf func(netip.Addr) (drLink, error)
	// thresholdsWarned is set once the lack of connection thresholds
	// has been logged.
	thresholdsWarned bool
}

// Option configures a Dataplane.
type Option func(*Dataplane)

// WithTable sets the table name (default "halb").
func WithTable(name string) Option { return func(d *Dataplane) { d.table = name } }

// DefaultMarkMask are the bits of the packet mark halb sets by default:
// those of derived marks (config.DefaultMarkMask).
const DefaultMarkMask = 0x1fffffff

// WithMarkMask sets the bits of the packet mark halb sets; it keeps the
// others (default DefaultMarkMask).
func WithMarkMask(mask uint32) Option { return func(d *Dataplane) { d.markMask = mask } }

// WithMode selects marks-only (default) or load balancing.
func WithMode(m Mode) Option { return func(d *Dataplane) { d.mode = m } }

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(d *Dataplane) { d.log = l } }

// WithNetNS programs the network namespace of the given file descriptor
// instead of the caller's.
func WithNetNS(fd int) Option { return func(d *Dataplane) { d.netns = fd } }

// WithRemoveOnClose makes Close delete the table (default: keep it, so
// that a restart does not drop traffic).
func WithRemoveOnClose(remove bool) Option { return func(d *Dataplane) { d.removeOnEnd = remove } }

// WithConnOptions adds options to every netlink connection, such as
// nftables.WithTestDial for a fake kernel (see package nfttest); the
// transactions of the DR and counters tables follow its test dial and
// namespace.
func WithConnOptions(opts ...nftables.ConnOption) Option {
	return func(d *Dataplane) { d.extraOpts = append(d.extraOpts, opts...) }
}

// New returns a data plane; it does not touch the kernel until Reconcile.
func New(opts ...Option) (*Dataplane, error) {
	d := &Dataplane{table: DefaultTable, log: slog.New(slog.DiscardHandler), markMask: DefaultMarkMask}
	d.linkOf = d.routeDevice
	for _, o := range opts {
		o(d)
	}
	if d.table == "" || len(d.countTable()) > unix.NFT_TABLE_MAXNAMELEN-1 {
		return nil, fmt.Errorf("nftables table name %q: empty or longer than %d", d.table, unix.NFT_TABLE_MAXNAMELEN-1-len(countSuffix))
	}
	return d, nil
}

func (d *Dataplane) conn(more ...nftables.ConnOption) (*nftables.Conn, error) {
	opts := append([]nftables.ConnOption{nftables.WithSockOptions(bigBuffers)}, more...)
	if d.netns != 0 {
		opts = append(opts, nftables.WithNetNSFd(d.netns))
	}
	c, err := nftables.New(append(opts, d.extraOpts...)...)
	if err != nil {
		return nil, fmt.Errorf("nftables connection: %w", err)
	}
	return c, nil
}

// send sends a batch where the connections of conn go: the data plane's
// namespace, or the test connection of WithConnOptions. The connection
// stays open for the next batch (the kernel may take milliseconds to
// close a netlink socket); a failed send closes it. d.mu is held.
func (d *Dataplane) send(b *nfbatch.Batch) error {
	if d.nl == nil {
		nl, err := d.dial()
		if err != nil {
			return err
		}
		d.nl = nl
	}
	if err := b.Send(d.nl); err != nil {
		_ = d.nl.Close() // out of step with the kernel: the next send dials anew
		d.nl = nil
		return err
	}
	return nil
}

// dial opens a netfilter connection where the connections of conn go.
func (d *Dataplane) dial() (*netlink.Conn, error) {
	lib, err := d.conn()
	if err != nil {
		return nil, err
	}
	if lib.TestDial != nil {
		return nltest.Dial(lib.TestDial), nil
	}
	nl, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: lib.NetNS})
	if err != nil {
		return nil, fmt.Errorf("nftables connection: %w", err)
	}
	if err := bigBuffers(nl); err != nil {
		nl.Close()
		return nil, fmt.Errorf("nftables connection: %w", err)
	}
	return nl, nil
}

// bigBuffers lets one transaction carry a large table: the kernel takes a
// batch in one message no larger than the socket's send buffer.
func bigBuffers(c *netlink.Conn) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return nil // a test socket (nltest) has no descriptor to tune
	}
	var serr error
	err = raw.Control(func(fd uintptr) {
		for _, o := range []int{unix.SO_SNDBUFFORCE, unix.SO_RCVBUFFORCE} {
			if e := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, o, 1<<30); e != nil {
				serr = e
			}
		}
	})
	if err != nil {
		return err
	}
	if errors.Is(serr, unix.EPERM) {
		return nil // unprivileged: the defaults carry small tables
	}
	return serr
}

func (d *Dataplane) tableRef() *nftables.Table {
	return &nftables.Table{Name: d.table, Family: nftables.TableFamilyINet}
}

// Reconcile brings halb's table to the state: marks for every mark rule
// and, in load-balance mode, a balanced chain per virtual service.
func (d *Dataplane) Reconcile(ctx context.Context, want dataplane.State) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	changed := d.changedSince(want)
	if changed == nil { // else the mark rules are those applied
		for _, r := range want.MarkRules {
			if r.Mark&^d.markMask != 0 {
				return fmt.Errorf("nftables: mark %#x of service %s has bits outside the mark mask %#x", r.Mark, r.Service, d.markMask)
			}
		}
	}
	if d.mode == LoadBalance && !d.thresholdsWarned {
		if r, ok := thresholdReal(want, changed); ok {
			d.thresholdsWarned = true
			d.log.Warn("nftables: the data plane cannot limit a server's connections; max_connections and min_connections are not honoured (dataplane ipvs honours them)",
				"server", r.AddrPort().String())
		}
	}
	var drWant *drPlan
	if d.mode == LoadBalance && changed == nil {
		dr, rest, err := drServices(want)
		if err != nil {
			return fmt.Errorf("nftables: %w", err)
		}
		devices := map[netip.Addr]drLink{} // one route lookup per backend address
		device := func(a netip.Addr) (drLink, error) {
			if dev, ok := devices[a]; ok {
				return dev, nil
			}
			dev, err := d.linkOf(a)
			if err == nil {
				devices[a] = dev
			}
			return dev, err
		}
		if len(dr) > 0 {
			p, err := drBuild(dr, want.MarkRules, device)
			if err != nil {
				return fmt.Errorf("nftables: direct routing: %w", err)
			}
			drWant = &p
		}
		want.Services = rest
	}
	next, err := build(want, d.mode, d.have, changed)
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	have := d.have
	d.have, d.applied = nil, 0 // a patch changed have into next: until sent, what the kernel holds is unknown
	c, err := d.conn()
	if err != nil {
		return err
	}
	var fresh bool
	if have == nil {
		h, existing, err := d.readAll(&next)
		if err != nil {
			return fmt.Errorf("nftables: read table %s: %w", d.table, err)
		}
		have, fresh = h, !existing
	}
	adopted := d.have == nil && !fresh
	nb := nfbatch.New()
	n, again, err := d.program(nb, have, next, fresh)
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	if err := d.send(nb); err != nil {
		return fmt.Errorf("nftables: apply %d changes to table %s: %w", n, d.table, err)
	}
	d.have, d.hadDR = &next, drWant != nil
	if want.Delta != nil {
		d.applied = want.Delta.Gen
	}
	if d.counting() {
		n += d.syncCounters(c, want, changed)
	}
	if d.mode == LoadBalance {
		dn, err := d.applyDR(c, drWant)
		if err != nil {
			return fmt.Errorf("nftables: %w", err)
		}
		n += dn
	}
	d.changes = n
	switch {
	case adopted && n == 0: // a restart or an upgrade that found the table as it writes it
		d.log.Info("nftables: adopted the table found in the kernel", "table", d.table, "changes", 0)
	case adopted:
		d.log.Info("nftables: adopted the table found in the kernel", "table", d.table, "changes", n,
			"rewritten", again, "why", "their rules differ from what this version writes for this state")
	case n > 0:
		d.log.Debug("nftables table updated", "table", d.table, "changes", n)
	}
	return nil
}

// Changes returns how many objects and elements the last successful
// Reconcile changed in the kernel: 0 after a restart that found the
// table as the state wants it.
func (d *Dataplane) Changes() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.changes
}

// Close releases the data plane; it deletes the table only when told to.
func (d *Dataplane) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.nl != nil {
		_ = d.nl.Close() // only batches that were acknowledged went on it
		d.nl = nil
	}
	if !d.removeOnEnd {
		return nil
	}
	c, err := d.conn()
	if err != nil {
		return err
	}
	for _, fam := range []nftables.TableFamily{nftables.TableFamilyINet, nftables.TableFamilyNetdev} {
		if t, err := c.ListTableOfFamily(d.table, fam); err == nil && t != nil {
			c.DelTable(t)
		}
	}
	if t, err := c.ListTableOfFamily(d.countTable(), nftables.TableFamilyINet); err == nil && t != nil {
		c.DelTable(t)
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables: delete table %s: %w", d.table, err)
	}
	d.have, d.drKnown, d.counted = nil, false, nil
	return nil
}

// readAll reads the table and adopts what of want it holds as want has
// it, on one connection for the many dumps.
func (d *Dataplane) readAll(want *content) (*content, bool, error) {
	c, err := d.conn(nftables.AsLasting())
	if err != nil {
		return nil, false, err
	}
	defer func() { _ = c.CloseLasting() }() // a read-only connection: nothing to lose
	h, existing, err := d.read(c)
	if err != nil || !existing {
		return h, existing, err
	}
	return h, true, d.adopt(c, h, want)
}

// read returns what the table holds, and whether it exists: the shared
// sets' elements, the names of the other sets (the pins are the
// kernel's), and the chains with the digests on their rules. A base chain
// whose digest is not the one halb writes, like any chain no service
// adopts (see adopt), is rewritten when claimed and removed otherwise.
func (d *Dataplane) read(c *nftables.Conn) (*content, bool, error) {
	h := emptyContent()
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		return nil, false, err
	}
	if !slices.ContainsFunc(tables, func(t *nftables.Table) bool { return t.Name == d.table }) {
		return &h, false, nil
	}
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return nil, true, err
	}
	if h.digests, err = d.readDigests(d.table); err != nil {
		return nil, true, err
	}
	for _, ch := range chains {
		switch {
		case ch.Table.Name != d.table:
		case (ch.Name == chainMark || ch.Name == chainBalance) && h.digests[ch.Name] == string(digestOf(baseSpec{ch.Name})):
			h.base[ch.Name] = true
		default:
			h.chains[ch.Name] = true
		}
	}
	sets, err := c.GetSets(d.tableRef())
	if err != nil {
		return nil, true, err
	}
	shared := sharedSets(LoadBalance)
	for _, s := range sets {
		def, ok := shared[s.Name]
		switch {
		case s.Anonymous: // a rule's own, it goes with the rule
			continue
		case !ok:
			h.sets[s.Name] = true
			continue
		}
		els, err := c.GetSetElements(s)
		if err != nil {
			return nil, true, fmt.Errorf("elements of %s: %w", s.Name, err)
		}
		m := map[string]elem{}
		for _, e := range els {
			if e.IntervalEnd {
				continue
			}
			el := elem{key: e.Key, keyEnd: e.KeyEnd, val: e.Val}
			if def.kind == kindSvc || def.kind == kindSvcMark || def.kind == kindMarks {
				el.val, el.jump = nil, verdictChain(e.Val)
			}
			m[el.id()] = el
		}
		h.shared[s.Name] = m
	}
	return &h, true, nil
}

// changedSince returns the indexes of the only services of want that
// may differ from those of the state last applied, as want's Delta says;
// nil when any may: the Delta does not follow that state, or that state
// or a changed service has direct-routing backends (the direct-routing
// table is planned whole).
func (d *Dataplane) changedSince(want dataplane.State) []int {
	dl := want.Delta
	if dl == nil || dl.From == 0 || dl.From != d.applied || d.have == nil || d.hadDR {
		return nil
	}
	for _, i := range dl.Services {
		if i < 0 || i >= len(want.Services) {
			return nil
		}
		for _, r := range want.Services[i].Reals {
			if r.Forward == "dr" {
				return nil
			}
		}
	}
	return append(make([]int, 0, len(dl.Services)), dl.Services...)
}

// thresholdReal returns a real server of the state (of the services at
// the indexes changed, if not nil) with connection thresholds, which this
// data plane cannot honour.
func thresholdReal(st dataplane.State, changed []int) (dataplane.Real, bool) {
	check := func(s dataplane.VirtualService) (dataplane.Real, bool) {
		for _, r := range s.Reals {
			if r.MaxConns != 0 || r.MinConns != 0 {
				return r, true
			}
		}
		return dataplane.Real{}, false
	}
	if changed != nil {
		for _, i := range changed {
			if r, ok := check(st.Services[i]); ok {
				return r, true
			}
		}
		return dataplane.Real{}, false
	}
	for _, s := range st.Services {
		if r, ok := check(s); ok {
			return r, true
		}
	}
	return dataplane.Real{}, false
}
