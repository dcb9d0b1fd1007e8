package nft

import (
	"fmt"
	"maps"
	"slices"

	"halb/internal/dataplane"
)

// patch turns prev into the content of st by changing only the services
// that changed, so that one change costs what it changes at any number of
// services. changed, when not nil, lists the indexes in st.Services of
// the only services that may differ from prev's (and st's mark rules are
// prev's); nil: any may, and st is walked to find them. ok is false when
// it cannot (the mark rules changed, services went, many changed, or a
// map would be renamed for services that did not change): build then
// builds the content anew. prev is changed only when ok: it then is the
// content returned, and the content's delta holds what it held before.
func patch(st dataplane.State, prev *content, changed []int) (c content, ok bool, err error) {
	p, ok, err := planPatch(st, prev, changed)
	if !ok || err != nil {
		return content{}, false, err
	}
	return p.apply(), true, nil
}

// patchPlan is a patch computed and not yet applied: the services that
// go (old) and those that replace them (news), with the names they
// change.
type patchPlan struct {
	prev *content
	st   dataplane.State
	// changed are the indexes of the changed services in st, old their
	// services in prev (nil: added), news their services in st.
	changed []int
	old     []*service
	news    []*service
	// views are the changes of prev.views, best the best views of the
	// identities they touch.
	views map[viewKeys]int
	best  map[string]viewKeys
}

// planPatch computes a patch without changing prev.
func planPatch(st dataplane.State, prev *content, hint []int) (*patchPlan, bool, error) {
	if prev == nil || prev.views == nil || hint == nil && !slices.Equal(st.MarkRules, prev.marks) {
		return nil, false, nil
	}
	p := &patchPlan{prev: prev, st: st, views: map[viewKeys]int{}, best: map[string]viewKeys{}}
	existed := 0
	consider := func(i int) {
		vs := st.Services[i]
		old := prev.byKey[vs.Key]
		if old != nil && sameService(old.vs, vs) {
			return
		}
		if old != nil {
			existed++
		}
		p.changed, p.old = append(p.changed, i), append(p.old, old)
	}
	if hint != nil {
		for _, i := range sortedUnique(slices.Clone(hint)) {
			consider(i)
		}
	} else {
		for i := range st.Services {
			consider(i)
		}
	}
	if len(st.Services)-len(p.changed)+existed != len(prev.byKey) || len(p.changed) > len(st.Services)/4+1 {
		return nil, false, nil
	}

	// Names: the views' counts move; a map is renamed when the best view
	// of its identity changes, which only the changed services may do.
	idents := map[string]bool{}
	keys := make([]viewKeys, len(p.changed))
	fresh := map[viewKeys]int{}
	for j, i := range p.changed {
		if old := p.old[j]; old != nil && old.ident != "" {
			k := viewKeys{old.ident, old.slots.view}
			p.views[k]--
			idents[k.ident] = true
		}
		if vs := st.Services[i]; vs.Persistence == 0 {
			keys[j].ident, keys[j].view = viewOf(vs)
			p.views[keys[j]]++
			fresh[keys[j]]++
			idents[keys[j].ident] = true
		}
	}
	for ident := range idents {
		counts := maps.Clone(prev.views[ident])
		if counts == nil {
			counts = map[string]int{}
		}
		for k, n := range p.views {
			if k.ident == ident {
				counts[k.view] += n
			}
		}
		if b, ok := bestView(ident, counts); ok {
			p.best[ident] = b
		}
		was, is := prev.best[ident], p.best[ident]
		if was != is && (p.count(was) > 0 || p.count(is) > fresh[is]) {
			return nil, false, nil // unchanged services would move to another map
		}
	}

	// The new services, with the maps they share.
	hashes := map[string]string{}
	built := map[string]*slotMap{}
	gone := map[string]int{} // users each map loses
	for _, old := range p.old {
		if old != nil {
			gone[old.slots.name]++
		}
	}
	kept := func(name string) *slotMap { // a map built here, or one of prev that keeps a user
		if m := built[name]; m != nil {
			return m
		}
		if prev.mapUsers[name] > gone[name] {
			return prev.maps[name]
		}
		return nil
	}
	hashOf := map[string]bool{}
	for j, i := range p.changed {
		vs := st.Services[i]
		mk := ownMap(vs.Key)
		if vs.Persistence == 0 {
			mk = sharedMap(keys[j], p.best, hashes)
		}
		known := func(name string) *slotMap {
			if m := kept(name); m != nil && m.view == mk.view {
				return m
			}
			return nil
		}
		s, err := newService(shortHash(vs.Key.String(), 12), vs, mk, known)
		if err != nil {
			return nil, false, fmt.Errorf("service %s (%s): %w", vs.Key, vs.Service, err)
		}
		if o := prev.svcs[s.hash]; hashOf[s.hash] || o != nil && o.vs.Key != vs.Key {
			return nil, false, fmt.Errorf("service %s: its hash %s collides with another service's", vs.Key, s.hash)
		}
		hashOf[s.hash] = true
		if m := kept(s.slots.name); m != nil && m != s.slots {
			if m.view != s.slots.view {
				return nil, false, fmt.Errorf("service %s: its map %s is another's", vs.Key, m.name)
			}
			s = s.withMap(m)
		}
		built[s.slots.name] = s.slots
		p.news = append(p.news, s)
	}
	return p, true, nil
}

// count is the number of services with view k after the patch.
func (p *patchPlan) count(k viewKeys) int { return p.prev.views[k.ident][k.view] + p.views[k] }

// apply changes prev into the patched content, noting in its delta what
// each name it touches held before.
func (p *patchPlan) apply() content {
	c := p.prev
	d := &delta{from: c, svcs: map[string]*service{}, maps: map[string]*slotMap{}, chains: map[string]*svcSpec{},
		elems: map[string]map[string]*elem{}}
	for k, n := range p.views {
		if c.views[k.ident] == nil {
			c.views[k.ident] = map[string]int{}
		}
		if c.views[k.ident][k.view] += n; c.views[k.ident][k.view] == 0 {
			delete(c.views[k.ident], k.view)
		}
		if len(c.views[k.ident]) == 0 {
			delete(c.views, k.ident)
		}
	}
	for ident := range p.best {
		c.best[ident] = p.best[ident]
	}
	for k := range p.views {
		if _, ok := p.best[k.ident]; !ok {
			delete(c.best, k.ident)
		}
	}
	touched := map[string]bool{}       // shared chains
	leaving := map[string][]*service{} // their members that go
	for _, old := range p.old {        // first what goes, so that a map can be rebuilt under its name
		if old == nil {
			continue
		}
		d.noteSvc(c, old.hash)
		delete(c.svcs, old.hash)
		delete(c.byKey, old.vs.Key)
		d.noteElem(c, old.dispatchSet, old.dispatchID)
		delete(c.shared[old.dispatchSet], old.dispatchID)
		if c.mapUsers[old.slots.name]--; c.mapUsers[old.slots.name] == 0 {
			delete(c.mapUsers, old.slots.name)
			d.noteMap(c, old.slots.name)
			c.dropMap(old.slots.name, d)
		}
		if old.slots.kind == kindMaglev {
			d.noteChain(c, old.chain)
			delete(c.svcChains, old.chain)
			continue
		}
		leaving[old.chain] = append(leaving[old.chain], old)
		touched[old.chain] = true
	}
	for name, ss := range leaving {
		c.members[name] = slices.DeleteFunc(c.members[name], func(s *service) bool { return slices.Contains(ss, s) })
	}
	for _, s := range p.news {
		if c.maps[s.slots.name] != s.slots { // new: planPatch shares a map still used
			d.noteMap(c, s.slots.name)
			c.maps[s.slots.name] = s.slots
			c.natAdd(s.slots, d)
		}
		c.mapUsers[s.slots.name]++
		d.noteSvc(c, s.hash)
		c.svcs[s.hash] = s
		c.byKey[s.vs.Key] = s
		d.noteElem(c, s.dispatchSet, s.dispatchID)
		c.shared[s.dispatchSet][s.dispatchID] = s.dispatch
		if s.slots.kind == kindMaglev {
			d.noteChain(c, s.chain)
			c.svcChains[s.chain] = s.spec
			continue
		}
		c.members[s.chain] = append(c.members[s.chain], s)
		touched[s.chain] = true
	}
	for name := range touched {
		d.noteChain(c, name)
		c.sharedChain(name)
	}
	next := *c
	next.delta = d
	return next
}

// dropMap removes a map and its addresses' share of natsrcN.
func (c *content) dropMap(name string, d *delta) {
	m := c.maps[name]
	delete(c.maps, name)
	set := pickFam(m.family, setNATSrc4, setNATSrc6)
	for _, e := range m.addrs {
		id := e.id()
		if c.natRefs[id]--; c.natRefs[id] == 0 {
			delete(c.natRefs, id)
			d.noteElem(c, set, id)
			delete(c.shared[set], id)
		}
	}
}

// natAdd adds a map's addresses' share of natsrcN.
func (c *content) natAdd(m *slotMap, d *delta) {
	set := pickFam(m.family, setNATSrc4, setNATSrc6)
	for _, e := range m.addrs {
		id := e.id()
		if c.natRefs[id]++; c.natRefs[id] == 1 {
			d.noteElem(c, set, id)
			c.shared[set][id] = e
		}
	}
}

// delta is what a patch changed, by name: each service (by hash), map,
// chain and shared set element it touched, as it was before (nil: it was
// not there).
type delta struct {
	from   *content
	svcs   map[string]*service
	maps   map[string]*slotMap
	chains map[string]*svcSpec
	elems  map[string]map[string]*elem
}

func (d *delta) noteSvc(c *content, h string) {
	if _, ok := d.svcs[h]; !ok {
		d.svcs[h] = c.svcs[h]
	}
}

func (d *delta) noteMap(c *content, name string) {
	if _, ok := d.maps[name]; !ok {
		d.maps[name] = c.maps[name]
	}
}

func (d *delta) noteChain(c *content, name string) {
	if _, ok := d.chains[name]; ok {
		return
	}
	d.chains[name] = nil
	if spec, ok := c.svcChains[name]; ok {
		d.chains[name] = &spec
	}
}

func (d *delta) noteElem(c *content, set, id string) {
	if d.elems[set] == nil {
		d.elems[set] = map[string]*elem{}
	}
	if _, ok := d.elems[set][id]; ok {
		return
	}
	d.elems[set][id] = nil
	if e, ok := c.shared[set][id]; ok {
		d.elems[set][id] = &e
	}
}

func sortedUnique[T interface{ ~int | ~string }](s []T) []T {
	slices.Sort(s)
	return slices.Compact(s)
}
