package nft

import (
	"fmt"
	"maps"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
)

// elemsPerMessage keeps one message's element list under netlink's 64 KiB
// attribute limit.
const elemsPerMessage = 512

// program queues, on c, the changes that turn have into want, in an order
// the kernel accepts within one transaction: sets and chains first, then
// elements, then what goes away. It returns the number of changes.
func (d *Dataplane) program(c *nftables.Conn, have *content, want content, fresh bool) (int, error) {
	t := d.tableRef()
	defs := map[string]*nftables.Set{}
	for _, s := range setDefs(t, LoadBalance) {
		defs[s.Name] = s
	}
	n := 0
	if fresh {
		c.AddTable(t)
		n++
	}
	for _, name := range slices.Sorted(maps.Keys(want.sets)) {
		if _, ok := have.sets[name]; !ok {
			if err := c.AddSet(defs[name], nil); err != nil {
				return 0, fmt.Errorf("add set %s: %w", name, err)
			}
			n++
		}
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
	for _, name := range slices.Sorted(maps.Keys(want.chains)) {
		if _, ok := have.chains[name]; ok {
			continue
		}
		ch := c.AddChain(&nftables.Chain{Name: name, Table: t})
		for _, r := range serviceRules(t, ch, want.chains[name]) {
			c.AddRule(r)
		}
		n++
	}
	for _, name := range slices.Sorted(maps.Keys(want.sets)) {
		wantEls := want.sets[name]
		if wantEls == nil {
			continue // the kernel's (persistence)
		}
		haveEls, known := have.sets[name]
		if known && haveEls == nil {
			c.FlushSet(defs[name])
			n++
		}
		var del, add []nftables.SetElement
		for id, e := range haveEls {
			if w, ok := wantEls[id]; !ok || !w.equal(e) {
				del = append(del, toElement(e))
			}
		}
		for id, e := range wantEls {
			if h, ok := haveEls[id]; !ok || !h.equal(e) {
				add = append(add, toElement(e))
			}
		}
		n += len(del) + len(add)
		for part := range slices.Chunk(del, elemsPerMessage) {
			if err := c.SetDeleteElements(defs[name], part); err != nil {
				return 0, fmt.Errorf("delete elements of %s: %w", name, err)
			}
		}
		for part := range slices.Chunk(add, elemsPerMessage) {
			if err := c.SetAddElements(defs[name], part); err != nil {
				return 0, fmt.Errorf("add elements to %s: %w", name, err)
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(have.chains)) {
		if _, ok := want.chains[name]; !ok {
			ch := &nftables.Chain{Name: name, Table: t}
			c.FlushChain(ch)
			c.DelChain(ch)
			n++
		}
	}
	for _, name := range slices.Sorted(maps.Keys(have.base)) {
		if !want.base[name] {
			ch := &nftables.Chain{Name: name, Table: t}
			c.FlushChain(ch)
			c.DelChain(ch)
			n++
		}
	}
	for _, name := range slices.Sorted(maps.Keys(have.sets)) {
		if _, ok := want.sets[name]; !ok {
			if def, ok := defs[name]; ok {
				c.DelSet(def)
				n++
			}
		}
	}
	return n, nil
}

func toElement(e elem) nftables.SetElement {
	el := nftables.SetElement{Key: e.key, KeyEnd: e.keyEnd, Val: e.val}
	if e.jump != "" {
		el.VerdictData = &expr.Verdict{Kind: expr.VerdictJump, Chain: e.jump}
	}
	return el
}
