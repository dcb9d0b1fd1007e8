package dataplane

import (
	"net/netip"
	"reflect"
	"slices"
	"testing"
	"time"

	"pgregory.net/rapid"
)

// drawState draws services from a small key space (so that two draws
// share keys: address services and firewall-mark ones), with drawn
// attributes (scheduler, flags, persistence) and some of four reals
// (weight, forwarding method, tunnel), mark rules and sync daemons, in a
// drawn order.
func drawState(t *rapid.T, label string) State {
	var s State
	for i := range 8 {
		if !rapid.Bool().Draw(t, label+"-has") {
			continue
		}
		key := ServiceKey{Family: 4, Protocol: "tcp", Addr: netip.AddrFrom4([4]byte{192, 0, 2, 1}), Port: uint16(80 + i)}
		if i >= 6 {
			key = ServiceKey{Family: 4, Mark: uint32(i)}
		}
		vs := VirtualService{Key: key,
			Scheduler: rapid.SampledFrom([]string{"wlc", "mh"}).Draw(t, label+"-sched"),
			Flags:     rapid.SampledFrom([][]string{nil, {"mh-fallback"}, {"mh-fallback", "mh-port"}}).Draw(t, label+"-flags"),
		}
		if rapid.Bool().Draw(t, label+"-persistent") {
			vs.Persistence = rapid.SampledFrom([]time.Duration{300 * time.Second, time.Hour}).Draw(t, label+"-timeout")
		}
		vs.Netmask = rapid.SampledFrom([]int{0, 24, 32}).Draw(t, label+"-netmask")
		for j := range 4 {
			if rapid.Bool().Draw(t, label+"-real") {
				vs.Reals = append(vs.Reals, drawReal(t, label, j))
			}
		}
		s.Services = append(s.Services, vs)
	}
	for i := range 4 {
		if rapid.Bool().Draw(t, label+"-rule") {
			s.MarkRules = append(s.MarkRules, MarkRule{Mark: uint32(6 + i%2), Protocol: "tcp",
				VIP: netip.AddrFrom4([4]byte{192, 0, 2, byte(10 + i/2)}), PortLo: 80,
				PortHi:  rapid.SampledFrom([]uint16{80, 443}).Draw(t, label+"-hi"),
				Service: rapid.SampledFrom([]string{"web", "web2"}).Draw(t, label+"-rule-svc")})
		}
	}
	if rapid.Bool().Draw(t, label+"-sync") {
		s.Sync = &SyncDaemons{Master: rapid.Bool().Draw(t, label+"-master"), Backup: rapid.Bool().Draw(t, label+"-backup"),
			Interface: "eth0", SyncID: rapid.IntRange(0, 1).Draw(t, label+"-syncid")}
	}
	return State{Services: rapid.Permutation(s.Services).Draw(t, label+"-order"),
		MarkRules: rapid.Permutation(s.MarkRules).Draw(t, label+"-rule-order"), Sync: s.Sync}
}

// drawReal draws the j-th of four real servers: its address is fixed, the
// rest drawn.
func drawReal(t *rapid.T, label string, j int) Real {
	r := Real{Addr: netip.AddrFrom4([4]byte{198, 51, 100, byte(10 + j)}), Port: 80,
		Weight:  rapid.IntRange(0, 2).Draw(t, label+"-w"),
		Forward: rapid.SampledFrom([]string{"dr", "nat", "tun"}).Draw(t, label+"-fwd")}
	if r.Forward == "tun" {
		r.Tunnel = rapid.SampledFrom([]Tunnel{{Type: IPIP, Checksum: NoChecksum}, {Type: GUE, Port: 6080, Checksum: Checksum},
			{Type: GUE, Port: 6081, Checksum: Checksum}, {Type: GRE, Checksum: RemoteChecksum}}).Draw(t, label+"-tunnel")
	}
	return r
}

// applyDiff performs d on s, the way a data plane does.
func applyDiff(s State, d Diff) State {
	byKey := map[ServiceKey]*VirtualService{}
	var out State
	for _, vs := range s.Services {
		vs.Reals = slices.Clone(vs.Reals)
		out.Services = append(out.Services, vs)
	}
	for _, c := range d.Services {
		switch c.Op {
		case Add:
			add := c.Want
			add.Reals = nil
			out.Services = append(out.Services, add)
		case Delete:
			out.Services = slices.DeleteFunc(out.Services, func(v VirtualService) bool { return v.Key == c.Have.Key })
		case Update:
			i := slices.IndexFunc(out.Services, func(v VirtualService) bool { return v.Key == c.Want.Key })
			reals := out.Services[i].Reals
			out.Services[i] = c.Want
			out.Services[i].Reals = reals
		}
	}
	for i := range out.Services {
		byKey[out.Services[i].Key] = &out.Services[i]
	}
	for _, c := range d.Reals {
		vs := byKey[c.Service]
		vs.Reals = slices.DeleteFunc(vs.Reals, func(r Real) bool {
			return (c.Op != Add && r.AddrPort() == c.Have.AddrPort())
		})
		if c.Op != Delete {
			vs.Reals = append(vs.Reals, c.Want)
		}
	}
	out.MarkRules = slices.Clone(s.MarkRules)
	for _, c := range d.Rules {
		if c.Op == Add {
			out.MarkRules = append(out.MarkRules, c.Rule)
		} else {
			out.MarkRules = slices.DeleteFunc(out.MarkRules, func(r MarkRule) bool { return r == c.Rule })
		}
	}
	out.Sync = s.Sync
	if d.Sync {
		out.Sync = d.SyncWant
	}
	return out
}

func canonical(s State) State {
	s.Services = slices.Clone(s.Services)
	s.MarkRules = slices.Clone(s.MarkRules)
	for i := range s.Services {
		if len(s.Services[i].Reals) == 0 {
			s.Services[i].Reals = nil
		}
	}
	s.Sort()
	return s
}

// TestComputeProperty checks that, for random states A and B in any
// order, performing Compute(A, B) on A gives B, and that no change is
// listed that is not needed: B to B is empty, and a state with one
// real's weight changed is one change.
func TestComputeProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		a, b := drawState(t, "a"), drawState(t, "b")
		d := Compute(a, b)
		if got, want := canonical(applyDiff(a, d)), canonical(b); !equalStates(got, want) {
			t.Fatalf("A + Compute(A, B) != B\nA: %+v\nB: %+v\ndiff: %v\ngot: %+v", a, b, d.Lines(), got)
		}
		if d := Compute(b, b); !d.Empty() {
			t.Fatalf("Compute(B, B) = %v", d.Lines())
		}
		if n := neededChanges(d); n != d.Size() {
			t.Fatalf("Compute(A, B) lists %d changes, %d needed: %v\nA: %+v\nB: %+v", d.Size(), n, d.Lines(), a, b)
		}
		i := slices.IndexFunc(b.Services, func(v VirtualService) bool { return len(v.Reals) > 0 })
		if i < 0 {
			return
		}
		c := b
		c.Services = slices.Clone(b.Services)
		c.Services[i].Reals = slices.Clone(c.Services[i].Reals)
		c.Services[i].Reals[0].Weight++
		if d := Compute(b, c); d.Size() != 1 || d.Reals[0].Op != Update {
			t.Fatalf("one weight changed: %v", d.Lines())
		}
	})
}

// equalStates compares states in canonical order, written apart from the
// code under test: a service's netmask counts only with persistence.
func equalStates(a, b State) bool {
	return slices.EqualFunc(a.Services, b.Services, func(x, y VirtualService) bool {
		return equalAttributes(x, y) && slices.Equal(x.Reals, y.Reals)
	}) && slices.Equal(a.MarkRules, b.MarkRules) && reflect.DeepEqual(a.Sync, b.Sync)
}

func equalAttributes(x, y VirtualService) bool {
	if x.Persistence == 0 {
		x.Netmask = 0
	}
	if y.Persistence == 0 {
		y.Netmask = 0
	}
	x.Reals, y.Reals = nil, nil
	return reflect.DeepEqual(x, y)
}

// neededChanges counts the changes of d that change something: updates
// between things that differ, and a sync change between different daemons.
func neededChanges(d Diff) int {
	n := len(d.Rules)
	for _, c := range d.Services {
		if c.Op != Update || !equalAttributes(c.Have, c.Want) {
			n++
		}
	}
	for _, c := range d.Reals {
		if c.Op != Update || c.Have != c.Want {
			n++
		}
	}
	if d.Sync {
		n++
	}
	return n
}

// BenchmarkComputeOneChange10k is Compute between two states of 10,000
// services × 4 reals that differ in one real's weight.
func BenchmarkComputeOneChange10k(b *testing.B) {
	a := State{}
	for i := range 10000 {
		vs := VirtualService{Key: ServiceKey{Family: 4, Protocol: "tcp", Addr: netip.AddrFrom4([4]byte{192, 0, 2, byte(1 + i/50)}),
			Port: uint16(1000 + i%50)}, Scheduler: "wlc"}
		for j := range 4 {
			vs.Reals = append(vs.Reals, Real{Addr: netip.AddrFrom4([4]byte{198, 51, 100, byte(11 + j)}), Port: vs.Key.Port, Weight: 1, Forward: "dr"})
		}
		a.Services = append(a.Services, vs)
	}
	c := State{Services: slices.Clone(a.Services)}
	c.Services[5000].Reals = slices.Clone(c.Services[5000].Reals)
	c.Services[5000].Reals[2].Weight = 7
	for b.Loop() {
		if d := Compute(a, c); d.Size() != 1 {
			b.Fatalf("%d changes", d.Size())
		}
	}
}

// TestSinceProperty checks, for random states A and B, that Since(A, B)
// tells a change apart only when no service went and the mark rules are
// the same, and then lists every service of B that is not in A as it is
// there; of a B that is A with one service changed, it lists that one.
func TestSinceProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		a, b := drawState(t, "a"), drawState(t, "b")
		derived := rapid.Bool().Draw(t, "b from a") // else two unrelated states
		if derived {
			b = a
			b.Services = slices.Clone(a.Services)
			if len(b.Services) > 0 {
				i := rapid.IntRange(0, len(b.Services)-1).Draw(t, "changed")
				b.Services[i].Reals = append(slices.Clone(b.Services[i].Reals), Real{Addr: netip.MustParseAddr("192.0.2.200"), Port: 1, Weight: 1, Forward: "nat"})
			}
		}
		changed, ok := Since(a, b)
		went := slices.ContainsFunc(a.Services, func(h VirtualService) bool {
			return !slices.ContainsFunc(b.Services, func(w VirtualService) bool { return w.Key == h.Key })
		})
		if want := !went && slices.Equal(a.MarkRules, b.MarkRules); ok != want {
			t.Fatalf("Since tells apart: %t, want %t", ok, want)
		}
		if !ok {
			return
		}
		for i, w := range b.Services {
			j := slices.IndexFunc(a.Services, func(h VirtualService) bool { return h.Key == w.Key })
			same := j >= 0 && equalAttributes(a.Services[j], w) && slices.Equal(a.Services[j].Reals, w.Reals)
			if !same && !slices.Contains(changed, i) {
				t.Fatalf("service %d (%s) changed and is not listed in %v", i, w.Key, changed)
			}
		}
		if derived && len(changed) != min(1, len(b.Services)) {
			t.Fatalf("one service changed, %d listed", len(changed))
		}
	})
}
