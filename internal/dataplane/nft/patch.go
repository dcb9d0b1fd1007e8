package nft

import (
	"fmt"
	"maps"
	"slices"

	"halb/internal/dataplane"
)

// patch derives the content of st from prev by changing only the
// services that changed, so that one change costs what it changes at any
// number of services. ok is false when it cannot (the mark rules
// changed, services went, many changed, or a map would be renamed for
// services that did not change): build then builds the content anew.
func patch(st dataplane.State, prev *content) (c content, ok bool, err error) {
	if prev == nil || prev.views == nil || !slices.Equal(st.MarkRules, prev.marks) {
		return content{}, false, nil
	}
	var changed []int
	existed := 0
	for i, vs := range st.Services {
		old := prev.byKey[vs.Key]
		if old != nil && sameService(old.vs, vs) {
			continue
		}
		if old != nil {
			existed++
		}
		changed = append(changed, i)
	}
	if len(st.Services)-len(changed)+existed != len(prev.byKey) || len(changed) > len(st.Services)/4+1 {
		return content{}, false, nil
	}
	if len(changed) == 0 {
		c = *prev
		c.delta = &delta{from: prev, elems: map[string][]string{}}
		return c, true, nil
	}

	// Names: the views' counts move; a map is renamed when the best view
	// of its identity changes, which only the changed services may do.
	views := maps.Clone(prev.views)
	idents := map[string]bool{}
	news := make([]viewKeys, len(changed))
	fresh := map[viewKeys]int{}
	for j, i := range changed {
		vs := st.Services[i]
		if old := prev.byKey[vs.Key]; old != nil && old.ident != "" {
			k := viewKeys{old.ident, old.slots.view}
			if views[k]--; views[k] == 0 {
				delete(views, k)
			}
			idents[k.ident] = true
		}
		if vs.Persistence == 0 {
			news[j].ident, news[j].view = viewOf(vs)
			views[news[j]]++
			fresh[news[j]]++
			idents[news[j].ident] = true
		}
	}
	best := maps.Clone(prev.best)
	for ident := range idents {
		delete(best, ident)
	}
	maps.Copy(best, bestViews(views, idents))
	for ident := range idents {
		was, is := prev.best[ident], best[ident]
		if was != is && (views[was] > 0 || views[is] > fresh[is]) {
			return content{}, false, nil // unchanged services would move to another map
		}
	}

	c = emptyContent()
	c.base, c.marks, c.markChains, c.views, c.best = prev.base, prev.marks, prev.markChains, views, best
	c.svcs, c.byKey, c.maps = maps.Clone(prev.svcs), maps.Clone(prev.byKey), maps.Clone(prev.maps)
	c.svcChains, c.mapUsers, c.members = maps.Clone(prev.svcChains), maps.Clone(prev.mapUsers), maps.Clone(prev.members)
	for name, m := range prev.shared {
		switch name {
		case setMarks4, setMarks6:
			c.shared[name] = m // the same mark rules
		case setNATSrc4, setNATSrc6:
			c.shared[name] = map[string]elem{} // from the maps, below
		default:
			c.shared[name] = maps.Clone(m)
		}
	}
	touched := map[string]bool{} // shared chains
	for _, i := range changed {  // first what goes, so that a map can be rebuilt under its name
		old := prev.byKey[st.Services[i].Key]
		if old == nil {
			continue
		}
		delete(c.svcs, old.hash)
		delete(c.byKey, old.vs.Key)
		delete(c.shared[old.dispatchSet], old.dispatchID)
		if c.mapUsers[old.slots.name]--; c.mapUsers[old.slots.name] == 0 {
			delete(c.mapUsers, old.slots.name)
			delete(c.maps, old.slots.name)
		}
		if old.slots.kind == kindMaglev {
			delete(c.svcChains, old.chain)
			continue
		}
		c.members[old.chain] = slices.DeleteFunc(slices.Clone(c.members[old.chain]), func(s *service) bool { return s == old })
		touched[old.chain] = true
	}
	hashes := map[string]string{}
	for j, i := range changed {
		vs := st.Services[i]
		mk := ownMap(vs.Key)
		if vs.Persistence == 0 {
			mk = sharedMap(news[j], best, hashes)
		}
		s, err := newService(shortHash(vs.Key.String(), 12), vs, mk, func(name string) *slotMap { return findMap(name, mk.view, &c, nil) })
		if err != nil {
			return content{}, false, fmt.Errorf("service %s (%s): %w", vs.Key, vs.Service, err)
		}
		if _, dup := c.svcs[s.hash]; dup {
			return content{}, false, fmt.Errorf("service %s: its hash %s collides with another service's", vs.Key, s.hash)
		}
		if m, ok := c.maps[s.slots.name]; ok && m != s.slots {
			if m.view != s.slots.view {
				return content{}, false, fmt.Errorf("service %s: its map %s is another's", vs.Key, m.name)
			}
			s = s.withMap(m)
		}
		c.maps[s.slots.name] = s.slots
		c.mapUsers[s.slots.name]++
		c.svcs[s.hash] = s
		c.byKey[vs.Key] = s
		c.shared[s.dispatchSet][s.dispatchID] = s.dispatch
		if s.slots.kind == kindMaglev {
			c.svcChains[s.chain] = s.spec
			continue
		}
		c.members[s.chain] = append(slices.Clip(c.members[s.chain]), s)
		touched[s.chain] = true
	}
	natSources(&c)
	for name := range touched {
		c.sharedChain(name)
	}
	c.delta = newDelta(prev, &c, st, changed)
	return c, true, nil
}

// delta is what patch changed: services by hash, maps and chains by name,
// and shared sets' elements by id (the natsrcN sets, derived from the
// maps, are compared whole).
type delta struct {
	from               *content
	svcs, maps, chains []string
	elems              map[string][]string
}

func newDelta(prev, c *content, st dataplane.State, changed []int) *delta {
	d := &delta{from: prev, elems: map[string][]string{}}
	touchedMaps, chains := map[string]bool{}, map[string]bool{}
	for _, i := range changed {
		for _, s := range []*service{prev.byKey[st.Services[i].Key], c.byKey[st.Services[i].Key]} {
			if s == nil {
				continue
			}
			d.svcs = append(d.svcs, s.hash)
			touchedMaps[s.slots.name], chains[s.chain] = true, true
			d.elems[s.dispatchSet] = append(d.elems[s.dispatchSet], s.dispatchID)
		}
	}
	d.svcs = sortedUnique(d.svcs)
	d.maps, d.chains = sortedUnique(slices.Collect(maps.Keys(touchedMaps))), sortedUnique(slices.Collect(maps.Keys(chains)))
	for name, ids := range d.elems {
		d.elems[name] = sortedUnique(ids)
	}
	return d
}

func sortedUnique(s []string) []string {
	slices.Sort(s)
	return slices.Compact(s)
}
