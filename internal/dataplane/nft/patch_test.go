package nft

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"halb/internal/dataplane"
)

// poolState has n services over pools of 4 backends; every 7th service
// is persistent.
func poolState(n, pools int) dataplane.State {
	var st dataplane.State
	for i := range n {
		p := i % pools
		vs := dataplane.VirtualService{Service: fmt.Sprintf("svc%d", p),
			Key: dataplane.ServiceKey{Family: 4, Protocol: "tcp", Addr: netip.AddrFrom4([4]byte{203, 0, 113, byte(1 + i%250)}), Port: uint16(1000 + i/250)}}
		if i%7 == 0 {
			vs.Persistence = time.Minute
		}
		for j := range 4 {
			vs.Reals = append(vs.Reals, dataplane.Real{Addr: netip.AddrFrom4([4]byte{198, 51, 100, byte(1 + (4*p+j)%250)}), Port: uint16(8000 + p), Weight: 1, Forward: "nat"})
		}
		st.Services = append(st.Services, vs)
	}
	return st
}

// TestPatchEqualsBuild: after random changes (weights of one service or
// of a whole pool, persistence switched, services added), the content
// patched from the previous one, told which services changed or not, is
// the content built anew.
func TestPatchEqualsBuild(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	const n, pools = 300, 20
	st := poolState(n, pools)
	prev, err := build(st, LoadBalance, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	patched := 0
	for step := range 200 {
		next := dataplane.State{Services: slices.Clone(st.Services)}
		for i := range next.Services {
			next.Services[i].Reals = slices.Clone(next.Services[i].Reals)
		}
		switch op := rng.IntN(4); op {
		case 0: // one service's own weight
			i := rng.IntN(len(next.Services))
			next.Services[i].Reals[rng.IntN(4)].Weight = rng.IntN(3)
		case 1: // a server of a pool, in every service of the pool
			p, j, w := rng.IntN(pools), rng.IntN(4), rng.IntN(3)
			for i := range next.Services {
				if i%pools == p {
					next.Services[i].Reals[j].Weight = w
				}
			}
		case 2: // persistence switched
			i := rng.IntN(len(next.Services))
			next.Services[i].Persistence = time.Minute - next.Services[i].Persistence
		case 3: // a service added
			vs := next.Services[rng.IntN(len(next.Services))]
			vs.Key.Port = uint16(20000 + step)
			next.Services = append(next.Services, vs)
		}
		var hint []int // every other step, the services that changed
		if step%2 == 1 {
			changed, ok := dataplane.Since(st, next)
			if !ok {
				t.Fatalf("step %d: no delta", step)
			}
			hint = append([]int{}, changed...)
		}
		if _, ok, _ := planPatch(next, &prev, hint); ok {
			patched++
		}
		got, err := build(next, LoadBalance, &prev, hint)
		if err != nil {
			t.Fatal(err)
		}
		want, err := build(next, LoadBalance, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if d := contentDiff(got, want); d != "" {
			t.Fatalf("step %d: patched content differs from the built one: %s", step, d)
		}
		st, prev = next, got
	}
	if patched < 100 {
		t.Errorf("only %d of 200 steps were patched", patched)
	}
}

// contentDiff describes how two contents differ in what they program.
func contentDiff(a, b content) string {
	if !slices.Equal(slices.Sorted(maps.Keys(a.svcs)), slices.Sorted(maps.Keys(b.svcs))) {
		return "services"
	}
	for h, s := range a.svcs {
		o := b.svcs[h]
		if s.chain != o.chain || s.slots.name != o.slots.name || s.dispatchID != o.dispatchID || s.dispatch.jump != o.dispatch.jump || !maps.Equal(s.bes, o.bes) || !slices.Equal(s.pins, o.pins) {
			return "service " + h
		}
	}
	if !maps.EqualFunc(a.svcChains, b.svcChains, svcSpec.equal) {
		return "service chains"
	}
	if !maps.EqualFunc(a.maps, b.maps, func(x, y *slotMap) bool {
		return x.name == y.name && x.view == y.view && x.size == y.size && slices.Equal(x.slots, y.slots) && slices.Equal(x.values, y.values)
	}) {
		return "maps"
	}
	for name, m := range a.shared {
		if !slices.Equal(slices.Sorted(maps.Keys(m)), slices.Sorted(maps.Keys(b.shared[name]))) {
			return "elements of " + name
		}
	}
	// What the next patch starts from.
	if !maps.EqualFunc(a.views, b.views, maps.Equal) || !maps.Equal(a.best, b.best) {
		return "views"
	}
	if !maps.Equal(a.natRefs, b.natRefs) || !maps.Equal(a.mapUsers, b.mapUsers) {
		return "counts"
	}
	for name, ss := range a.members {
		if !sameMembers(ss, b.members[name]) {
			return "members of " + name
		}
	}
	return ""
}

// sameMembers tells whether two lists hold the same services, by hash.
func sameMembers(a, b []*service) bool {
	hashes := func(ss []*service) []string {
		var out []string
		for _, s := range ss {
			out = append(out, s.hash)
		}
		slices.Sort(out)
		return out
	}
	return slices.Equal(hashes(a), hashes(b))
}

// TestPatchedTableEqualsFresh: a table changed step by step by patched
// contents (one service's weight, a pool's server, persistence) lists
// the same as a table programmed from empty with the same state.
func TestPatchedTableEqualsFresh(t *testing.T) {
	lab, h := labHost(t)
	fresh, err := lab.AddHost("fresh")
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	const n, pools = 60, 6
	st := poolState(n, pools)
	d := nsDataplane(t, h, WithMode(LoadBalance), WithCounters(false))
	reconcile(t, d, st)
	for step := range 12 {
		next := dataplane.State{Services: slices.Clone(st.Services)}
		for i := range next.Services {
			next.Services[i].Reals = slices.Clone(next.Services[i].Reals)
		}
		switch step % 3 {
		case 0:
			next.Services[rng.IntN(n)].Reals[rng.IntN(4)].Weight = rng.IntN(3)
		case 1:
			p, j, w := rng.IntN(pools), rng.IntN(4), rng.IntN(3)
			for i := range next.Services {
				if i%pools == p {
					next.Services[i].Reals[j].Weight = w
				}
			}
		case 2:
			i := rng.IntN(n)
			next.Services[i].Persistence = time.Minute - next.Services[i].Persistence
		}
		if _, ok, _ := planPatch(next, d.have, nil); !ok {
			t.Fatalf("step %d: not patched", step)
		}
		reconcile(t, d, next)
		if out, err := fresh.Run("nft", "flush", "ruleset"); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		reconcile(t, nsDataplane(t, fresh, WithMode(LoadBalance), WithCounters(false)), next)
		if got, want := objects(listTable(t, h, DefaultTable)), objects(listTable(t, fresh, DefaultTable)); got != want {
			t.Fatalf("step %d: the patched table differs from a fresh one:\n%s\nfresh:\n%s", step, got, want)
		}
		st = next
	}
}

// objects is a listed table normalized, its sets, maps and chains in
// name order (nft lists them in the order they were made).
func objects(table string) string {
	var blocks []string
	var cur []string
	for _, line := range strings.Split(normalize(table), "\n") {
		switch {
		case strings.HasPrefix(line, "\tmap "), strings.HasPrefix(line, "\tset "), strings.HasPrefix(line, "\tchain "):
			cur = []string{line}
		case cur != nil && line == "\t}":
			blocks = append(blocks, strings.Join(append(cur, line), "\n"))
			cur = nil
		case cur != nil:
			cur = append(cur, line)
		}
	}
	slices.Sort(blocks)
	return strings.Join(blocks, "\n")
}

// TestDigestsHoldNoPointers: the digests of chain specs print their
// values only, so that another process (a restart) computes the same.
func TestDigestsHoldNoPointers(t *testing.T) {
	c, err := build(poolState(14, 2), LoadBalance, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var specs []any
	for _, s := range c.svcs {
		for _, be := range s.bes {
			specs = append(specs, be)
		}
	}
	for _, spec := range c.svcChains {
		specs = append(specs, spec)
	}
	if len(specs) < 3 {
		t.Fatalf("%d specs", len(specs))
	}
	for _, spec := range specs {
		if s := fmt.Sprintf("%+v", spec); strings.Contains(s, "0x") {
			t.Errorf("a digest's text holds a pointer: %s", s)
		}
	}
}

func TestSharedLabel(t *testing.T) {
	svcs := func(names ...string) []*service {
		var out []*service
		for _, n := range names {
			out = append(out, &service{vs: dataplane.VirtualService{Service: n}})
		}
		return out
	}
	for _, tc := range []struct {
		names []string
		want  string
	}{
		{[]string{"web", "web"}, "web (2 services)"},
		{[]string{"b", "a", "b"}, "a, b (3 services)"},
		{[]string{"d", "c", "b", "a", "e"}, "a, b, c, … (5 services)"},
	} {
		if got := sharedLabel(svcs(tc.names...)); got != tc.want {
			t.Errorf("%v: %q, want %q", tc.names, got, tc.want)
		}
	}
}
