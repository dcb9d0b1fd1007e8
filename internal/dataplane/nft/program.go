package nft

import (
	"fmt"
	"maps"
	"reflect"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
)

// elemsPerMessage keeps one message's element list under netlink's 64 KiB
// attribute limit.
const elemsPerMessage = 512

// program queues on c, for one transaction, the changes that turn have
// into want, in an order the kernel accepts: new sets and chains, chain
// rules (targets before the chains that jump to them), elements, then
// what goes away. It returns the number of changes.
func (d *Dataplane) program(c *nftables.Conn, have *content, want content, fresh bool) (int, error) {
	t := d.tableRef()
	n := 0
	if fresh {
		c.AddTable(t)
		n++
	}
	for _, name := range slices.Sorted(maps.Keys(want.sets)) {
		if _, ok := have.sets[name]; !ok {
			if err := c.AddSet(want.sets[name].def.nftSet(t, name), nil); err != nil {
				return 0, fmt.Errorf("add set %s: %w", name, err)
			}
			n++
		}
	}
	chain := func(name string) *nftables.Chain { return &nftables.Chain{Name: name, Table: t} }
	// Regular chains: created empty, then (re)written when new or changed.
	for _, name := range slices.Sorted(maps.Keys(want.bes)) {
		h, ok := have.bes[name]
		if ok && h != nil && *h == *want.bes[name] {
			continue
		}
		if ok {
			c.FlushChain(chain(name))
		} else {
			c.AddChain(chain(name))
		}
		for _, r := range backendRules(t, chain(name), want.bes[name]) {
			c.AddRule(r)
		}
		n++
	}
	for _, name := range slices.Sorted(maps.Keys(want.svcs)) {
		h, ok := have.svcs[name]
		if ok && h != nil && reflect.DeepEqual(h, want.svcs[name]) {
			continue
		}
		if ok {
			c.FlushChain(chain(name))
		} else {
			c.AddChain(chain(name))
		}
		for _, r := range serviceRules(t, chain(name), want.svcs[name]) {
			c.AddRule(r)
		}
		n++
	}
	for _, name := range slices.Sorted(maps.Keys(want.base)) {
		if have.base[name] {
			continue
		}
		n++
		switch name {
		case chainMark:
			ch := c.AddChain(&nftables.Chain{Name: chainMark, Table: t, Type: nftables.ChainTypeFilter,
				Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityRef(markPriority)})
			for _, r := range markRules(t, ch) {
				c.AddRule(r)
			}
		case chainBalance:
			ch := c.AddChain(&nftables.Chain{Name: chainBalance, Table: t, Type: nftables.ChainTypeNAT,
				Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityRef(natPriority)})
			for _, r := range balanceRules(t, ch) {
				c.AddRule(r)
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(want.sets)) {
		w := want.sets[name]
		if w.elems == nil {
			continue // pins: the kernel's
		}
		def := w.def.nftSet(t, name)
		h, known := have.sets[name]
		if known && h.elems == nil {
			c.FlushSet(def)
			n++
		}
		var del, add []nftables.SetElement
		for id, e := range h.elems {
			if we, ok := w.elems[id]; !ok || !we.equal(e) {
				del = append(del, toElement(e))
			}
		}
		for id, e := range w.elems {
			if he, ok := h.elems[id]; !ok || !he.equal(e) {
				add = append(add, toElement(e))
			}
		}
		n += len(del) + len(add)
		for part := range slices.Chunk(del, elemsPerMessage) {
			if err := c.SetDeleteElements(def, part); err != nil {
				return 0, fmt.Errorf("delete elements of %s: %w", name, err)
			}
		}
		for part := range slices.Chunk(add, elemsPerMessage) {
			if err := c.SetAddElements(def, part); err != nil {
				return 0, fmt.Errorf("add elements to %s: %w", name, err)
			}
		}
	}
	// Chains that go are emptied first, so that no rule refers to a set or
	// chain; then the sets go (with their elements, which jump to chains),
	// and last the chains.
	var gone []string
	for name := range have.svcs {
		if _, ok := want.svcs[name]; !ok {
			gone = append(gone, name)
		}
	}
	for name := range have.bes {
		if _, ok := want.bes[name]; !ok {
			gone = append(gone, name)
		}
	}
	for name := range have.base {
		if !want.base[name] {
			gone = append(gone, name)
		}
	}
	slices.Sort(gone)
	for _, name := range gone {
		c.FlushChain(chain(name))
	}
	for _, name := range slices.Sorted(maps.Keys(have.sets)) {
		if _, ok := want.sets[name]; !ok {
			c.DelSet(&nftables.Set{Table: t, Name: name})
			n++
		}
	}
	for _, name := range gone {
		c.DelChain(chain(name))
		n++
	}
	return n, nil
}

func toElement(e elem) nftables.SetElement {
	el := nftables.SetElement{Key: e.key, KeyEnd: e.keyEnd, Val: e.val}
	if e.jump != "" {
		el.VerdictData = &expr.Verdict{Kind: expr.VerdictGoto, Chain: e.jump}
	}
	return el
}
