package nft

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"

	"halb/internal/dataplane"
	"halb/internal/dataplane/nft/nfbatch"
)

// Traffic counters, per virtual service and backend, as IPVS keeps them.
//
// NAT services are counted by a table of their own, inet <table>-counters
// (there while there are NAT services), with a filter chain on the forward
// hook. Its sets hold one element per
// backend of a service, keyed by what conntrack says of a forwarded
// packet: the VIP the client asked for (ct original daddr), the protocol,
// the backend's address and port (the packet's destination when it goes
// to the backend, its source when it comes back). Each element carries
// its own counter: conns4/conns6 count new connections, to4/to6 the
// packets to the backend, from4/from6 those from it. An element comes and
// goes with its backend, so a reconcile writes only the backends that
// changed.
//
// Every forwarded packet pays for this, so the path is short: the base
// chain sends a packet by family and direction to a chain of its own
// (original4, reply4, original6, reply6), where it is looked up in hash
// sets, once (twice for the packet that opens a connection). An element
// with a port range (below) needs an interval set, which costs far more
// per lookup: those go to new4, in4, out4 (and the IPv6 ones), looked up
// only while such elements exist. Older releases kept every element
// there: a start on such a table moves the elements to the hash sets,
// whose counts start from 0.
//
// google/nftables cannot express "ct original ip daddr" (the kernel wants
// a direction the library does not send for it), so the table's rules are
// written through nfbatch, at the start and when the range lookups come
// or go.
//
// The key has no VIP port (nft cannot put ct original proto-dst in a
// concatenation, nor list a rule that does): two services of one VIP and
// protocol that send to the same backend address and port would count
// each other's traffic, so neither backend is counted there (a warning
// names them). Mark services have one element per mark rule, with the
// rule's port range when the backend keeps the port.
//
// Direct-routing services are counted in their netdev table by named
// counters per backend: drc-<h>-<b> counts every packet forwarded to the
// backend, drn-<h>-<b> the packets that start a flow.

const (
	countSuffix = "-counters"
	chainCount  = "count"
)

// countSets are the counting sets of exact keys by family: new
// connections, packets to and from the backends; rangeSets are those of
// keys with a port range, in the same order.
var (
	countSets = map[int][3]string{4: {"conns4", "to4", "from4"}, 6: {"conns6", "to6", "from6"}}
	rangeSets = map[int][3]string{4: {"new4", "in4", "out4"}, 6: {"new6", "in6", "out6"}}
)

// countChains are the chains of packets to (0) and from (1) the backends,
// by family: the connections' original and reply directions.
var countChains = map[int][2]string{4: {"original4", "reply4"}, 6: {"original6", "reply6"}}

// WithCounters turns the traffic counters on or off (default on in
// load-balance mode, off with WithConnOptions, whose connections serve
// tests and benchmarks of the tables' own cost).
func WithCounters(on bool) Option { return func(d *Dataplane) { d.countersOpt = &on } }

func (d *Dataplane) countTable() string { return d.table + countSuffix }

func (d *Dataplane) counting() bool {
	if d.countersOpt != nil {
		return d.mode == LoadBalance && *d.countersOpt
	}
	return d.mode == LoadBalance && len(d.extraOpts) == 0
}

// owner is the backend a counter belongs to.
type owner struct {
	vs      dataplane.ServiceKey
	service string
	addr    netip.Addr
	port    uint16
}

// countElem is one element of the counting sets: of the range sets when
// it has a keyEnd (see elemSet).
type countElem struct {
	fam         int
	key, keyEnd []byte
	owner
}

func (e countElem) id() string { return string(e.key) + "\x00" + string(e.keyEnd) }

// countPlan is what the counters table holds for a state: its elements by
// id and the services counted (also those without a backend).
type countPlan struct {
	elems map[string]countElem
	svcs  []owner // vs and service only
	// from is what the plan was derived from: the services' keys, names
	// and backends, and the mark rules (not the weights, which change
	// often and do not matter here).
	from []countInput
	mark []dataplane.MarkRule
	// declared: the table exists (there is a NAT service to count).
	declared bool
	// ranged: some element has a port range (see countElem).
	ranged bool
}

// countInput is what of a service its counters depend on.
type countInput struct {
	owner
	reals []netip.AddrPort
}

// derivedFrom tells whether st would give the same plan: true when its
// services, backends and mark rules are those the plan was made of. It
// allocates nothing, so an unchanged set of backends costs a reconcile
// one pass over the state, or over the services at the indexes changed
// when only those may differ from the state of the plan (see
// dataplane.Delta).
func (p *countPlan) derivedFrom(st dataplane.State, changed []int) bool {
	if len(p.from) != len(st.Services) || changed == nil && !slices.Equal(p.mark, st.MarkRules) {
		return false
	}
	same := func(i int) bool {
		in, vs := p.from[i], st.Services[i]
		if in.vs != vs.Key || in.service != vs.Service || len(in.reals) != len(vs.Reals) {
			return false
		}
		for j, r := range vs.Reals {
			if in.reals[j] != netip.AddrPortFrom(r.Addr, r.Port) {
				return false
			}
		}
		return true
	}
	if changed != nil {
		return !slices.ContainsFunc(changed, func(i int) bool { return !same(i) })
	}
	for i := range st.Services {
		if !same(i) {
			return false
		}
	}
	return true
}

// planCounters derives the counting elements of the NAT services of a
// state. Backends whose keys overlap would count each other's traffic:
// none of them is counted, and skipped names the first few. It is pure.
func planCounters(st dataplane.State) (p countPlan, skipped []string) {
	n := 0
	for _, vs := range st.Services {
		n += len(vs.Reals)
	}
	p.svcs, p.from = make([]owner, 0, len(st.Services)), make([]countInput, 0, len(st.Services))
	p.mark = slices.Clone(st.MarkRules)
	type group struct {
		vip, backend netip.Addr
		proto        byte
	}
	type cand struct {
		countElem
		id     string
		g      group
		lo, hi uint16
	}
	cands := make([]cand, 0, n)
	for _, vs := range st.Services {
		p.svcs = append(p.svcs, owner{vs: vs.Key, service: vs.Service})
		in := countInput{owner: owner{vs: vs.Key, service: vs.Service}, reals: make([]netip.AddrPort, 0, len(vs.Reals))}
		for _, r := range vs.Reals {
			in.reals = append(in.reals, netip.AddrPortFrom(r.Addr, r.Port))
		}
		p.from = append(p.from, in)
		type front struct {
			vip    netip.Addr
			proto  byte
			lo, hi uint16
		}
		var fronts []front
		if vs.Key.Mark == 0 {
			fronts = append(fronts, front{vs.Key.Addr, protoNum[vs.Key.Protocol], vs.Key.Port, vs.Key.Port})
		} else {
			for _, m := range st.MarkRules {
				if m.Mark == vs.Key.Mark && family(m.VIP) == vs.Key.Family {
					fronts = append(fronts, front{m.VIP, protoNum[m.Protocol], m.PortLo, m.PortHi})
				}
			}
		}
		for _, r := range vs.Reals {
			if family(r.Addr) != vs.Key.Family {
				continue
			}
			for _, f := range fronts {
				lo, hi := r.Port, r.Port
				if r.Port == 0 {
					lo, hi = f.lo, f.hi
				}
				e := countElem{fam: vs.Key.Family, owner: owner{vs.Key, vs.Service, r.Addr, r.Port}, key: countKey(f.vip, f.proto, r.Addr, lo)}
				if lo != hi {
					e.keyEnd = countKey(f.vip, f.proto, r.Addr, hi)
				}
				cands = append(cands, cand{e, e.id(), group{f.vip, r.Addr, f.proto}, lo, hi})
			}
		}
	}
	// Overlaps: equal keys, found by id; and port ranges (mark services
	// whose backends keep the port, usually few), checked by group.
	drop := make([]bool, len(cands))
	first := make(map[string]int, len(cands))
	ranged := map[group][]int{}
	for i, c := range cands {
		if j, dup := first[c.id]; dup {
			drop[i], drop[j] = true, true
		} else {
			first[c.id] = i
		}
		if c.lo != c.hi {
			ranged[c.g] = append(ranged[c.g], i)
		}
	}
	if len(ranged) > 0 {
		for i, c := range cands {
			for _, j := range ranged[c.g] {
				if j != i && c.lo <= cands[j].hi && cands[j].lo <= c.hi {
					drop[i], drop[j] = true, true
				}
			}
		}
	}
	p.elems = make(map[string]countElem, len(cands))
	extra := 0
	for i, c := range cands {
		switch {
		case !drop[i]:
			p.elems[c.id] = c.countElem
			p.ranged = p.ranged || c.keyEnd != nil
		case len(skipped) < maxNamed:
			skipped = append(skipped, fmt.Sprintf("%s of %s", netip.AddrPortFrom(c.addr, c.port), c.vs))
		default:
			extra++
		}
	}
	if extra > 0 {
		skipped = append(skipped, fmt.Sprintf("%d more", extra))
	}
	return p, skipped
}

// maxNamed bounds the backends a warning names.
const maxNamed = 5

// countKey is vip . proto . backend . port, each field padded to 32 bits.
func countKey(vip netip.Addr, proto byte, backend netip.Addr, port uint16) []byte {
	b := make([]byte, 0, 2*16+8)
	b = append(append(b, vip.AsSlice()...), proto, 0, 0, 0)
	return append(append(b, backend.AsSlice()...), byte(port>>8), byte(port), 0, 0)
}

// queueCountTable declares the counters table, its sets and its chains,
// with the range sets' lookups when ranged; it can run again without
// touching the elements or their counts.
func (d *Dataplane) queueCountTable(b *nfbatch.Batch, ranged bool) error {
	c := b.Conn()
	t := c.AddTable(&nftables.Table{Name: d.countTable(), Family: nftables.TableFamilyINet})
	for _, fam := range []int{4, 6} {
		for i := range 3 {
			for _, set := range []*nftables.Set{d.countSet(fam, countSets[fam][i]), d.rangeSet(fam, rangeSets[fam][i])} {
				if err := b.AddSet(set); err != nil {
					return fmt.Errorf("set %s: %w", set.Name, err)
				}
			}
		}
	}
	var rules []nfbatch.Rule
	for _, fam := range []int{4, 6} {
		for dir, name := range countChains[fam] {
			c.FlushChain(c.AddChain(&nftables.Chain{Table: t, Name: name}))
			for _, ex := range countRules(fam, dir == 0, ranged) {
				rules = append(rules, nfbatch.Rule{Table: t, Chain: name, Exprs: ex})
			}
		}
	}
	accept := nftables.ChainPolicyAccept
	ch := c.AddChain(&nftables.Chain{Table: t, Name: chainCount, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &accept})
	c.FlushChain(ch)
	for _, fam := range []int{4, 6} {
		f := fams[fam]
		in := append(isFamily(f), &expr.Ct{Key: expr.CtKeyDIRECTION, Register: reg1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{nfbatch.CtOriginal}},
			&expr.Verdict{Kind: expr.VerdictGoto, Chain: countChains[fam][0]})
		out := append(isFamily(f), &expr.Verdict{Kind: expr.VerdictGoto, Chain: countChains[fam][1]})
		rules = append(rules, nfbatch.Rule{Table: t, Chain: chainCount, Exprs: nfbatch.Libs(in...)},
			nfbatch.Rule{Table: t, Chain: chainCount, Exprs: nfbatch.Libs(out...)})
	}
	rules[len(rules)-1].UserData = userdata.Append(nil, udDigest, digestOf(countSpec{ranged}))
	for _, r := range rules {
		b.AddRule(r)
	}
	return nil
}

// countSpec is what the counters chain is made from: whether it looks in
// the range sets.
type countSpec struct{ ranged bool }

// countRules are the rules of a family's chain of packets to the backends
// (in: original4; the packet of a new connection also counts the
// connection) or from them (reply4):
//
//	ct state new ct original ip daddr . meta l4proto . ip daddr . th dport @conns4    (original4)
//	ct original ip daddr . meta l4proto . ip daddr . th dport @to4                     (original4)
//	ct original ip daddr . meta l4proto . ip saddr . th sport @from4                   (reply4)
//
// Each also tests meta nfproto, as the base chain did, without which nft
// cannot read the addresses back. The base chain sends a packet of no
// connection to the reply chain, where its ct key ends the rule. When
// ranged, each lookup of an exact key is followed by one in the range
// set, which a packet found in the first skips.
func countRules(fam int, in, ranged bool) [][]nfbatch.Expr {
	var out [][]nfbatch.Expr
	lookup := func(set string, end expr.Any, pre ...expr.Any) {
		ex := append(nfbatch.Libs(append(pre, isFamily(fams[fam])...)...), countKeyExprs(fams[fam], in)...)
		ex = append(ex, nfbatch.Lib{Any: &expr.Lookup{SourceRegister: reg32, SetName: set}})
		if end != nil {
			ex = append(ex, nfbatch.Lib{Any: end})
		}
		out = append(out, ex)
	}
	var ret expr.Any
	if ranged {
		ret = &expr.Verdict{Kind: expr.VerdictReturn}
	}
	kind := countOut
	if in {
		isNew := []expr.Any{
			&expr.Ct{Key: expr.CtKeySTATE, Register: reg1},
			&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4, Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitNEW), Xor: make([]byte, 4)},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: make([]byte, 4)},
		}
		lookup(countSets[fam][countNew], nil, isNew...)
		if ranged {
			lookup(rangeSets[fam][countNew], nil, isNew...)
		}
		kind = countIn
	}
	lookup(countSets[fam][kind], ret)
	if ranged {
		lookup(rangeSets[fam][kind], nil)
	}
	return out
}

// countKeyExprs load a packet's counting key from the first 32-bit
// register: ct original daddr . l4proto . daddr . dport for a packet to
// the backend (in), ct original daddr . l4proto . saddr . sport for one
// from it.
func countKeyExprs(f famInfo, in bool) []nfbatch.Expr {
	addr, port := f.saddr, uint32(0)
	if in {
		addr, port = f.daddr, 2
	}
	vip := expr.CtKey(unix.NFT_CT_DST_IP)
	if f.nfproto == unix.NFPROTO_IPV6 {
		vip = unix.NFT_CT_DST_IP6
	}
	ar, r := regs(f.alen), uint32(reg32)
	return append([]nfbatch.Expr{&nfbatch.CtDir{Key: vip, Direction: nfbatch.CtOriginal, Register: r}}, nfbatch.Libs(
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: r + ar},
		&expr.Payload{DestRegister: r + ar + 1, Base: expr.PayloadBaseNetworkHeader, Offset: addr, Len: f.alen},
		&expr.Payload{DestRegister: r + 2*ar + 1, Base: expr.PayloadBaseTransportHeader, Offset: port, Len: 2},
	)...)
}

// byKey orders set elements by key.
func byKey(a, b nftables.SetElement) int {
	return cmp.Or(bytes.Compare(a.Key, b.Key), bytes.Compare(a.KeyEnd, b.KeyEnd))
}

// countSet is a counting set of exact keys (a hash).
func (d *Dataplane) countSet(fam int, name string) *nftables.Set {
	addr := nftables.TypeIPAddr
	if fam == 6 {
		addr = nftables.TypeIP6Addr
	}
	return &nftables.Set{Table: &nftables.Table{Name: d.countTable(), Family: nftables.TableFamilyINet}, Name: name,
		KeyType:       nftables.MustConcatSetType(addr, nftables.TypeInetProto, addr, nftables.TypeInetService),
		Concatenation: true, Counter: true}
}

// rangeSet is a counting set of keys with port ranges (intervals).
func (d *Dataplane) rangeSet(fam int, name string) *nftables.Set {
	s := d.countSet(fam, name)
	s.Interval = true
	return s
}

// elemSet returns the set of kind i that holds e.
func (d *Dataplane) elemSet(e countElem, i countKind) *nftables.Set {
	if e.keyEnd != nil {
		return d.rangeSet(e.fam, rangeSets[e.fam][i])
	}
	return d.countSet(e.fam, countSets[e.fam][i])
}

// syncCounters brings the counters table's elements to the NAT services
// of st, in a transaction of their own after the table's: a counter that
// cannot be written never holds up the traffic. It logs what fails and
// tries again at the next reconcile. It returns the number of changes.
func (d *Dataplane) syncCounters(c *nftables.Conn, st dataplane.State, changed []int) int {
	if d.counted != nil && d.counted.derivedFrom(st, changed) {
		return 0
	}
	want, skipped := planCounters(st)
	if len(skipped) > 0 {
		d.log.Warn("nftables counters: these backends share their counter key with another service's and are not counted",
			"backends", strings.Join(skipped, ", "))
	}
	n, err := d.writeCounters(c, &want)
	if err != nil {
		d.counted = nil
		d.log.Warn("nftables counters not updated; will retry", "table", d.countTable(), "err", err)
		return 0
	}
	d.counted = &want
	return n
}

// writeCounters brings the table to want; without NAT services there is
// no table, so that forwarded packets pay nothing for it. It returns the
// number of changes.
func (d *Dataplane) writeCounters(c *nftables.Conn, want *countPlan) (int, error) {
	if len(want.svcs) == 0 {
		if d.counted == nil || d.counted.declared {
			if t, err := c.ListTableOfFamily(d.countTable(), nftables.TableFamilyINet); err == nil && t != nil {
				c.DelTable(t)
				if err := c.Flush(); err != nil {
					return 0, fmt.Errorf("delete table: %w", err)
				}
				return 1, nil
			}
		}
		return 0, nil
	}
	want.declared = true
	have := map[string]countElem{}
	n := 0
	declare := func() error {
		b := nfbatch.New()
		if err := d.queueCountTable(b, want.ranged); err != nil {
			return fmt.Errorf("declare table: %w", err)
		}
		if err := d.send(b); err != nil {
			return fmt.Errorf("declare table: %w", err)
		}
		n++
		return nil
	}
	if d.counted != nil && d.counted.declared {
		have = d.counted.elems
		if d.counted.ranged != want.ranged {
			if err := declare(); err != nil {
				return 0, err
			}
		}
	} else {
		digests, err := d.readDigests(d.countTable())
		if err != nil {
			return 0, fmt.Errorf("read table: %w", err)
		}
		if digests[chainCount] != string(digestOf(countSpec{want.ranged})) {
			if err := declare(); err != nil {
				return 0, err
			}
		}
		for _, fam := range []int{4, 6} {
			for _, set := range []*nftables.Set{d.countSet(fam, countSets[fam][0]), d.rangeSet(fam, rangeSets[fam][0])} {
				els, err := c.GetSetElements(set)
				if err != nil {
					return 0, fmt.Errorf("read elements of %s: %w", set.Name, err)
				}
				for _, e := range els {
					ce := countElem{fam: fam, key: e.Key, keyEnd: e.KeyEnd}
					if set.Interval && ce.keyEnd == nil {
						ce.keyEnd = ce.key // an interval's end is never nil
					}
					have[ce.id()] = ce
				}
			}
		}
	}
	var del, add []countElem
	for id, e := range have {
		if _, ok := want.elems[id]; !ok {
			del = append(del, e)
		}
	}
	for id, e := range want.elems {
		if _, ok := have[id]; !ok {
			add = append(add, e)
		}
	}
	if len(del)+len(add) == 0 {
		return n, nil
	}
	// By set, in key order, so that one change is always the same
	// messages.
	queue := func(es []countElem, op func(*nftables.Set, []nftables.SetElement) error, verb string) error {
		bySet := map[string][]nftables.SetElement{}
		sets := map[string]*nftables.Set{}
		for _, e := range es {
			for i := range countOut + 1 {
				set := d.elemSet(e, i)
				sets[set.Name] = set
				bySet[set.Name] = append(bySet[set.Name], nftables.SetElement{Key: e.key, KeyEnd: e.keyEnd})
			}
		}
		for _, name := range slices.Sorted(maps.Keys(bySet)) {
			els := bySet[name]
			slices.SortFunc(els, byKey)
			for part := range slices.Chunk(els, elemsPerMessage) {
				if err := op(sets[name], part); err != nil {
					return fmt.Errorf("%s elements of %s: %w", verb, name, err)
				}
			}
		}
		return nil
	}
	if err := queue(del, c.SetDeleteElements, "delete"); err != nil {
		return 0, err
	}
	if err := queue(add, c.SetAddElements, "add"); err != nil {
		return 0, err
	}
	changed := len(del) + len(add)
	if err := c.Flush(); err != nil {
		return 0, fmt.Errorf("apply %d element changes: %w", changed, err)
	}
	return n + changed, nil
}

// Counters reads the kernel's counters of every balanced service and its
// backends. In marks-only mode it has
// none (IPVS counts).
func (d *Dataplane) Counters(ctx context.Context) ([]ServiceCounters, error) {
	if !d.counting() {
		return nil, nil
	}
	d.mu.Lock()
	nat, dr, programmed := d.counted, d.drApplied, d.have != nil
	d.mu.Unlock()
	if nat == nil && dr == nil {
		if !programmed {
			return nil, nil // nothing programmed yet
		}
		return nil, fmt.Errorf("nftables counters: table %s not written", d.countTable())
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c, err := d.conn()
	if err != nil {
		return nil, err
	}
	var t tally
	if nat != nil && nat.declared {
		if err := d.readNATCounters(c, nat, &t); err != nil {
			return nil, fmt.Errorf("nftables counters: %w", err)
		}
	}
	if dr != nil {
		if err := d.readDRCounters(c, dr, &t); err != nil {
			return nil, fmt.Errorf("nftables counters: %w", err)
		}
	}
	return t.services(), nil
}

// countKind is what a counter counts; the counting sets of a family are
// in this order.
type countKind int

const (
	countNew countKind = iota // new connections
	countIn                   // packets to the backend
	countOut                  // packets from the backend
)

// add adds a counter's packets and bytes to the backend's of its kind.
func (k countKind) add(r *RealCounters, packets, bytes uint64) {
	switch k {
	case countNew:
		r.Connections += packets
	case countIn:
		r.PacketsIn += packets
		r.BytesIn += bytes
	case countOut:
		r.PacketsOut += packets
		r.BytesOut += bytes
	}
}

// readNATCounters adds the counters of the NAT counting sets' elements to
// their backends.
func (d *Dataplane) readNATCounters(c *nftables.Conn, nat *countPlan, t *tally) error {
	for _, o := range nat.svcs {
		t.service(o)
	}
	for _, fam := range []int{4, 6} {
		for i := range countOut + 1 {
			for _, set := range []*nftables.Set{d.countSet(fam, countSets[fam][i]), d.rangeSet(fam, rangeSets[fam][i])} {
				if set.Interval && !nat.ranged {
					continue // no element there (an older table's are not the plan's)
				}
				els, err := c.GetSetElements(set)
				if err != nil {
					return fmt.Errorf("read %s: %w", set.Name, err)
				}
				for _, e := range els {
					ce, ok := nat.elems[string(e.Key)+"\x00"+string(e.KeyEnd)]
					if !ok || e.Counter == nil {
						continue
					}
					i.add(t.backend(ce.owner), e.Counter.Packets, e.Counter.Bytes)
				}
			}
		}
	}
	return nil
}

// readDRCounters adds the named counters of the direct-routing table to
// their backends.
func (d *Dataplane) readDRCounters(c *nftables.Conn, dr *drPlan, t *tally) error {
	for _, o := range dr.svcs {
		t.service(o)
	}
	objs, err := c.GetObjects(&nftables.Table{Name: d.table, Family: nftables.TableFamilyNetdev})
	if err != nil {
		return fmt.Errorf("read direct routing counters: %w", err)
	}
	for _, obj := range objs {
		co, ok := obj.(*nftables.CounterObj)
		if !ok {
			continue
		}
		o, ok := dr.counters[co.Name]
		if !ok {
			continue
		}
		kind := countIn
		if strings.HasPrefix(co.Name, drNewPrefix) {
			kind = countNew
		}
		kind.add(t.backend(o), co.Packets, co.Bytes)
	}
	return nil
}

// tally gathers counters by service and backend, services in the order
// they are first named.
type tally struct {
	byKey map[dataplane.ServiceKey]*ServiceCounters
	order []dataplane.ServiceKey
}

// service returns the counters of o's service, new ones the first time.
func (t *tally) service(o owner) *ServiceCounters {
	s := t.byKey[o.vs]
	if s == nil {
		if t.byKey == nil {
			t.byKey = map[dataplane.ServiceKey]*ServiceCounters{}
		}
		s = &ServiceCounters{Key: o.vs, Service: o.service}
		t.byKey[o.vs] = s
		t.order = append(t.order, o.vs)
	}
	return s
}

// backend returns the counters of backend o, new ones the first time.
func (t *tally) backend(o owner) *RealCounters {
	s := t.service(o)
	i := slices.IndexFunc(s.Reals, func(r RealCounters) bool { return r.Addr == o.addr && r.Port == o.port })
	if i < 0 {
		s.Reals = append(s.Reals, RealCounters{Addr: o.addr, Port: o.port})
		i = len(s.Reals) - 1
	}
	return &s.Reals[i]
}

// services returns the services, each with its backends' sums and its
// backends sorted by address and port.
func (t *tally) services() []ServiceCounters {
	out := make([]ServiceCounters, 0, len(t.order))
	for _, k := range t.order {
		s := t.byKey[k]
		for _, r := range s.Reals {
			s.Connections += r.Connections
			s.PacketsIn += r.PacketsIn
			s.PacketsOut += r.PacketsOut
			s.BytesIn += r.BytesIn
			s.BytesOut += r.BytesOut
		}
		slices.SortFunc(s.Reals, func(a, b RealCounters) int {
			return cmp.Or(a.Addr.Compare(b.Addr), cmp.Compare(a.Port, b.Port))
		})
		out = append(out, *s)
	}
	return out
}

// Names of the direct-routing counters of one backend.
const (
	drPktPrefix = "drc-"
	drNewPrefix = "drn-"
)

// drCounters adds a backend's counters to a direct-routing plan and
// returns the rules that count in its chain (before the flow is
// recorded): every packet, and those of a flow not in flows yet.
func (p drPlan) drCounters(h, b string, f famInfo, flows string, o owner) []drRule {
	pkt, nw := drPktPrefix+h+"-"+b, drNewPrefix+h+"-"+b
	p.counters[pkt], p.counters[nw] = o, o
	return []drRule{
		drMatch([]expr.Any{&expr.Objref{Type: int(nftables.ObjTypeCounter), Name: pkt}}),
		drMatch(drFlow(f, &expr.Lookup{SourceRegister: reg32, SetName: flows, Invert: true}, &expr.Objref{Type: int(nftables.ObjTypeCounter), Name: nw})),
	}
}

// declareCounters declares the plan's counters (kept when they exist).
func (p drPlan) declareCounters(c *nftables.Conn, t *nftables.Table) {
	for _, name := range slices.Sorted(maps.Keys(p.counters)) {
		c.AddObj(&nftables.CounterObj{Table: t, Name: name})
	}
}

// removeCounters deletes the counters in have that the plan no longer
// holds, once no rule uses them.
func (p drPlan) removeCounters(c *nftables.Conn, t *nftables.Table, have map[string]bool) {
	for _, name := range slices.Sorted(maps.Keys(have)) {
		if _, ok := p.counters[name]; !ok {
			c.DeleteObject(&nftables.CounterObj{Table: t, Name: name})
		}
	}
}
