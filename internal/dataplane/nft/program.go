package nft

import (
	"fmt"
	"maps"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"halb/internal/dataplane/nft/nfbatch"
)

// elemsPerMessage keeps one message's element list under netlink's 64 KiB
// attribute limit.
const elemsPerMessage = 512

// batch queues the changes of one transaction on an nftables connection,
// in an order the kernel accepts: new sets and chains, chain rules
// (targets before the chains that jump to them), elements, then what goes
// away (chains emptied, sets deleted with the elements that jump to
// chains, chains deleted).
type batch struct {
	nb    *nfbatch.Batch
	c     *nftables.Conn // nb's
	t     *nftables.Table
	n     int
	err   error
	adds  []func()
	rules []func()
	elems []func()
	flush []string // chains to empty, then delete
	sets  []string // sets to delete
	again []string // chains the kernel holds that are written again
}

func (b *batch) chain(name string) *nftables.Chain { return &nftables.Chain{Name: name, Table: b.t} }

func (b *batch) addSet(name string, def setDef) {
	b.n++
	b.adds = append(b.adds, func() {
		if err := b.nb.AddSet(def.nftSet(b.t, name)); err != nil && b.err == nil {
			b.err = fmt.Errorf("add set %s: %w", name, err)
		}
	})
}

// addSlotMap creates a Maglev map of size slots, typed so that nft can
// read it back from its text form (see typeof.go).
func (b *batch) addSlotMap(name string, def setDef, size int) {
	b.n++
	b.adds = append(b.adds, func() {
		if err := b.nb.AddSetUserData(def.nftSet(b.t, name), slotMapUserData(def.kind, def.family, size)); err != nil && b.err == nil {
			b.err = fmt.Errorf("add set %s: %w", name, err)
		}
	})
}

// anyL4 adds the anonymous set { tcp, udp, sctp } for one rule.
func (b *batch) anyL4() *nftables.Set {
	s := &nftables.Set{Table: b.t, Name: "__set%d", Anonymous: true, Constant: true, KeyType: nftables.TypeInetProto}
	var els []nftables.SetElement
	for _, p := range []byte{unix.IPPROTO_TCP, unix.IPPROTO_UDP, unix.IPPROTO_SCTP} {
		els = append(els, nftables.SetElement{Key: []byte{p}})
	}
	if err := b.nb.AddSet(s, els...); err != nil && b.err == nil {
		b.err = fmt.Errorf("add protocol set: %w", err)
	}
	return s
}

// writeChain creates a chain (or empties an existing one) and adds rules.
func (b *batch) writeChain(name string, exists bool, digest []byte, rules func(*nftables.Chain) []*nftables.Rule) {
	b.n++
	if exists {
		b.again = append(b.again, name)
	}
	ch := b.chain(name)
	b.adds = append(b.adds, func() {
		if exists {
			b.c.FlushChain(ch)
		} else {
			b.c.AddChain(ch)
		}
	})
	b.rules = append(b.rules, func() {
		for _, r := range withDigest(rules(ch), digest) {
			b.c.AddRule(r)
		}
	})
}

// elements queues element deletions and additions on one set.
func (b *batch) elements(set *nftables.Set, del, add []nftables.SetElement) {
	b.n += len(del) + len(add)
	b.elems = append(b.elems, func() {
		for part := range slices.Chunk(del, elemsPerMessage) {
			if err := b.c.SetDeleteElements(set, part); err != nil && b.err == nil {
				b.err = fmt.Errorf("delete elements of %s: %w", set.Name, err)
			}
		}
		for part := range slices.Chunk(add, elemsPerMessage) {
			if err := b.c.SetAddElements(set, part); err != nil && b.err == nil {
				b.err = fmt.Errorf("add elements to %s: %w", set.Name, err)
			}
		}
	})
}

// baseChain creates one of the hooked chains with its rules, or rewrites
// it.
func (b *batch) baseChain(name string, exists bool) {
	ch := &nftables.Chain{Name: name, Table: b.t, Hooknum: nftables.ChainHookPrerouting}
	rules := markRules
	if name == chainMark {
		ch.Type, ch.Priority = nftables.ChainTypeFilter, nftables.ChainPriorityRef(markPriority)
	} else {
		ch.Type, ch.Priority, rules = nftables.ChainTypeNAT, nftables.ChainPriorityRef(natPriority), balanceRules
	}
	b.n++
	if exists {
		b.again = append(b.again, name)
	}
	b.adds = append(b.adds, func() {
		b.c.AddChain(ch)
		if exists {
			b.c.FlushChain(ch)
		}
	})
	b.rules = append(b.rules, func() {
		for _, r := range withDigest(rules(b.t, ch), digestOf(baseSpec{name})) {
			b.c.AddRule(r)
		}
	})
}

func (b *batch) run() (int, error) {
	for _, phase := range [][]func(){b.adds, b.rules, b.elems} {
		for _, f := range phase {
			f()
		}
	}
	for _, name := range b.flush {
		b.c.FlushChain(b.chain(name))
	}
	for _, name := range b.sets {
		b.c.DelSet(&nftables.Set{Table: b.t, Name: name})
	}
	for _, name := range b.flush {
		b.c.DelChain(b.chain(name))
	}
	b.n += len(b.flush) + len(b.sets)
	return b.n, b.err
}

// program queues on nb, for one transaction, the changes that turn have
// into want. It returns the number of changes and the chains the kernel
// held that it writes again.
func (d *Dataplane) program(nb *nfbatch.Batch, have *content, want content, fresh bool) (int, []string, error) {
	c := nb.Conn()
	b := &batch{nb: nb, c: c, t: d.tableRef()}
	if fresh {
		c.AddTable(b.t)
		b.n++
	}
	shared := sharedSets(LoadBalance)
	for _, name := range slices.Sorted(maps.Keys(want.shared)) {
		if _, ok := have.shared[name]; !ok && !have.sets[name] {
			b.addSet(name, shared[name])
		}
	}
	sc := scopeOf(have, &want)
	claimedChains, claimedSets := map[string]bool{}, map[string]bool{}
	for _, name := range sc.maps {
		m, old := want.maps[name], sc.slotMap(name)
		switch {
		case m == nil:
			b.sets = append(b.sets, name)
		case old != m:
			b.slotMap(have, old, m)
		}
		claimedSets[name] = m != nil
	}
	for _, h := range sc.svcs {
		s, old := want.svcs[h], sc.svc(h)
		switch {
		case s == nil:
			b.flush = append(b.flush, slices.Collect(maps.Keys(old.bes))...)
			b.sets = append(b.sets, old.pins...)
		case old != s:
			b.service(have, old, s, claimedChains, claimedSets)
		}
	}
	for _, name := range sc.chains {
		spec, ok := want.svcChains[name]
		old, known := sc.chain(name)
		switch {
		case !ok:
			b.flush = append(b.flush, name)
		case !known || !old.equal(spec):
			b.writeChain(name, known || have.chains[name], digestOf(spec), func(ch *nftables.Chain) []*nftables.Rule { return serviceRules(b.t, ch, &spec, b.anyL4) })
		}
		claimedChains[name] = ok
	}
	var markChains []string // none after a patch, which keeps the mark rules
	if sc.d == nil {
		markChains = union(have.markChains, want.markChains)
	}
	for _, name := range markChains {
		mark, ok := want.markChains[name]
		_, known := have.markChains[name]
		switch {
		case !ok:
			b.flush = append(b.flush, name)
		case !known:
			spec := markSpec{mark, d.markMask}
			b.writeChain(name, have.chains[name], digestOf(spec), func(ch *nftables.Chain) []*nftables.Rule { return setMarkRules(b.t, ch, spec.mark, spec.mask) })
		}
		claimedChains[name] = ok
	}
	for _, name := range slices.Sorted(maps.Keys(want.base)) {
		if !have.base[name] {
			b.baseChain(name, have.chains[name])
		}
	}
	for _, name := range slices.Sorted(maps.Keys(want.shared)) {
		h, w := have.shared[name], want.shared[name]
		var del, add []nftables.SetElement
		for _, id := range sc.elems(name, h, w) {
			he, hok := sc.elem(name, id)
			we, wok := w[id]
			if hok && (!wok || !we.equal(he)) {
				del = append(del, toElement(he))
			}
			if wok && (!hok || !he.equal(we)) {
				add = append(add, toElement(we))
			}
		}
		if len(del)+len(add) > 0 {
			b.elements(shared[name].nftSet(b.t, name), del, add)
		}
	}
	// What goes: base chains and shared sets of another mode, and names
	// found in the kernel that nothing claimed.
	for name := range have.base {
		if !want.base[name] {
			b.flush = append(b.flush, name)
		}
	}
	for name := range have.chains {
		if !claimedChains[name] && !want.base[name] {
			b.flush = append(b.flush, name)
		}
	}
	for name := range have.sets {
		if _, ok := want.shared[name]; !ok && !claimedSets[name] {
			b.sets = append(b.sets, name)
		}
	}
	for name := range have.shared {
		if _, ok := want.shared[name]; !ok {
			b.sets = append(b.sets, name)
		}
	}
	slices.Sort(b.flush)
	b.flush = slices.Compact(b.flush)
	slices.Sort(b.sets)
	b.sets = slices.Compact(b.sets)
	n, err := b.run()
	slices.Sort(b.again)
	return n, b.again, err
}

// service queues the changes of one service, but for its Maglev map and
// its chain:
// old is what the kernel holds (nil: nothing known; names found in the
// kernel are in have).
func (b *batch) service(have *content, old, s *service, chains, sets map[string]bool) {
	if old == nil {
		old = &service{bes: map[string]beSpec{}}
	}
	for _, p := range s.pins {
		sets[p] = true
		if !slices.Contains(old.pins, p) && !have.sets[p] {
			b.addSet(p, setDef{kindPin, s.vs.Key.Family})
		}
	}
	for _, p := range old.pins {
		if !slices.Contains(s.pins, p) {
			b.sets = append(b.sets, p)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(s.bes)) {
		chains[name] = true
		spec := s.bes[name]
		if o, ok := old.bes[name]; ok && o == spec {
			continue
		}
		_, known := old.bes[name]
		b.writeChain(name, known || have.chains[name], digestOf(spec), func(ch *nftables.Chain) []*nftables.Rule { return backendRules(b.t, ch, &spec, b.anyL4) })
	}
	for name := range old.bes {
		if _, ok := s.bes[name]; !ok {
			b.flush = append(b.flush, name)
		}
	}
}

// slotMap queues the changes of one Maglev map: old is what the kernel
// holds (nil: nothing known; a name found in the kernel is in have).
func (b *batch) slotMap(have *content, old, m *slotMap) {
	if old == nil {
		if have.sets[m.name] {
			set := m.def().nftSet(b.t, m.name)
			c := b.c
			b.elems = append(b.elems, func() { c.FlushSet(set) })
		} else {
			b.addSlotMap(m.name, m.def(), m.size)
		}
	}
	// Slots: only those whose backend changed.
	var del, add []nftables.SetElement
	for slot := range max(len(m.slots), len(old.slotsOrNil())) {
		was, is := old.slot(slot), m.slot(slot)
		if was == is {
			continue
		}
		if was != "" {
			del = append(del, slotElement(m.kind, slot, was))
		}
		if is != "" {
			add = append(add, slotElement(m.kind, slot, is))
		}
	}
	if len(del)+len(add) > 0 {
		b.elements(m.def().nftSet(b.t, m.name), del, add)
	}
}

// slotElement is one slot of a Maglev map: a goto to a backend chain, or
// the backend as data.
func slotElement(kind setKind, slot int, v string) nftables.SetElement {
	if kind == kindMaglev {
		return toElement(elem{key: u32(uint32(slot)), jump: v})
	}
	return nftables.SetElement{Key: u32(uint32(slot)), Val: []byte(v)}
}

func toElement(e elem) nftables.SetElement {
	el := nftables.SetElement{Key: e.key, KeyEnd: e.keyEnd, Val: e.val}
	if e.jump != "" {
		el.VerdictData = &expr.Verdict{Kind: expr.VerdictGoto, Chain: e.jump}
	}
	return el
}

// scope is what program compares: every name of have and want, or, when
// want was patched from have (which is then want), the names the patch
// touched, with what they held before.
type scope struct {
	svcs, maps, chains []string // sorted
	have               *content
	d                  *delta // nil: compare whole
}

func scopeOf(have, want *content) scope {
	if d := want.delta; d != nil && d.from == have {
		return scope{svcs: sortedKeys(d.svcs), maps: sortedKeys(d.maps), chains: sortedKeys(d.chains), have: have, d: d}
	}
	return scope{svcs: union(have.svcs, want.svcs), maps: union(have.maps, want.maps), chains: union(have.svcChains, want.svcChains), have: have}
}

// svc returns the service of that hash that the kernel holds (nil: none).
func (sc scope) svc(h string) *service {
	if sc.d != nil {
		return sc.d.svcs[h]
	}
	return sc.have.svcs[h]
}

// slotMap returns the map of that name that the kernel holds (nil: none).
func (sc scope) slotMap(name string) *slotMap {
	if sc.d != nil {
		return sc.d.maps[name]
	}
	return sc.have.maps[name]
}

// chain returns the spec of the service chain of that name that the
// kernel holds, if it knows it.
func (sc scope) chain(name string) (svcSpec, bool) {
	if sc.d == nil {
		spec, ok := sc.have.svcChains[name]
		return spec, ok
	}
	if spec := sc.d.chains[name]; spec != nil {
		return *spec, true
	}
	return svcSpec{}, false
}

// elems returns the ids of a shared set's elements to compare.
func (sc scope) elems(name string, have, want map[string]elem) []string {
	if sc.d == nil {
		return union(have, want)
	}
	return sortedKeys(sc.d.elems[name])
}

// elem returns the element of a shared set that the kernel holds.
func (sc scope) elem(set, id string) (elem, bool) {
	if sc.d == nil {
		e, ok := sc.have.shared[set][id]
		return e, ok
	}
	if e := sc.d.elems[set][id]; e != nil {
		return *e, true
	}
	return elem{}, false
}

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}

// union returns the keys of a and b, sorted.
func union[V any](a, b map[string]V) []string {
	out := slices.Collect(maps.Keys(a))
	for k := range b {
		if _, ok := a[k]; !ok {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}
