package engine

import (
	"context"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"

	"pgregory.net/rapid"

	"halb/internal/config"
	"halb/internal/dataplane"
	"halb/internal/vrrp/fsm"
)

// updateConfig has what makes a pool's evaluation interesting: quorum with
// hysteresis and a sorry server, removal vs inhibition, initial state
// down, a mark service, a pool without checks, IPv6.
const updateConfig = `
node: t
vrrp:
  instances:
    - {name: a, interface: eth0, vrid: 1, priority: 100, vips: [192.0.2.10/24, 192.0.2.11/24, 192.0.2.12/24, 192.0.2.13/24]}
    - {name: b, interface: eth0, vrid: 2, priority: 100, vips: ["2001:db8::10/64"]}
ipvs_sync: {instance: a, interface: eth0, sync_id: 1}
services:
  - {name: www, vips: [192.0.2.10], ports: [80, 443], forward: dr, pool: web}
  - {name: www6, vips: ["2001:db8::10"], ports: [80], forward: dr, pool: web6}
  - {name: api, vips: [192.0.2.11], ports: [8080], forward: nat, pool: api}
  - {name: mail, vips: [192.0.2.12], ports: [25, 587], mark: shared, forward: dr, pool: mail}
  - {name: dns, vips: [192.0.2.13], ports: [53], protocol: udp, forward: dr, pool: dns}
pools:
  web:
    check: {type: tcp}
    quorum: 3
    hysteresis: 1
    sorry_server: 198.51.100.99:80
    servers:
      - {address: 198.51.100.3}
      - {address: 198.51.100.1, weight: 2}
      - {address: 198.51.100.2}
  web6:
    check: {type: tcp}
    servers:
      - {address: "2001:db8::1"}
      - {address: "2001:db8::2"}
  api:
    check: {type: tcp}
    on_failure: remove
    initial_state: down
    servers:
      - {address: 198.51.100.11, port: 9000}
      - {address: 198.51.100.12, port: 9000}
  mail:
    check: {type: tcp, port: 25}
    servers:
      - {address: 198.51.100.21}
      - {address: 198.51.100.22}
  dns:
    servers:
      - {address: 198.51.100.31}
`

// TestUpdateEqualsDesired checks, over random sequences of health and
// VRRP changes folded the way the engine folds them, that updating the
// previous evaluation for the changed pools gives what Desired computes
// from scratch, and that the services it says it evaluated again include
// every one that changed.
func TestUpdateEqualsDesired(t *testing.T) {
	c, diags := config.Parse("t.yaml", []byte(updateConfig), config.Options{Hostname: "t"})
	if c == nil {
		t.Fatal(diags)
	}
	var refs []ServerRef
	for _, name := range slices.Sorted(maps.Keys(c.Pools)) {
		for _, s := range c.Pools[name].Servers {
			refs = append(refs, ServerRef{Pool: name, Addr: s.Address, Port: s.Port})
		}
	}
	rapid.Check(t, func(t *rapid.T) {
		health := map[ServerRef]ServerHealth{}
		vrrp := map[string]string{}
		quorum := map[string]bool{}
		ev := Desired(Inputs{Config: c, VRRP: vrrp, Health: health, QuorumUp: quorum})
		for step := range rapid.IntRange(1, 12).Draw(t, "steps") {
			var changed []string
			for range rapid.IntRange(0, 3).Draw(t, "changes") {
				ref := rapid.SampledFrom(refs).Draw(t, "server")
				health[ref] = ServerHealth{Up: rapid.Bool().Draw(t, "up"), Weight: rapid.IntRange(-1, 3).Draw(t, "weight"),
					Reason: rapid.SampledFrom([]string{"ok", "connect refused"}).Draw(t, "reason")}
				changed = append(changed, ref.Pool)
			}
			if rapid.Bool().Draw(t, "vrrp change") {
				vrrp["a"] = rapid.SampledFrom([]string{fsm.Master.String(), fsm.Backup.String(), fsm.Fault.String()}).Draw(t, "vrrp")
			}
			for name, ps := range ev.Pools {
				quorum[name] = ps.QuorumUp
			}
			in := Inputs{Config: c, VRRP: vrrp, Health: health, QuorumUp: quorum}
			want := Desired(in)
			before := ev.State
			beforeServices := slices.Clone(before.Services)
			redone := ev.Update(in, changed)
			if !reflect.DeepEqual(ev.State, want.State) {
				t.Fatalf("step %d: Update's state differs from Desired's\nupdate:  %+v\ndesired: %+v", step, ev.State, want.State)
			}
			if !reflect.DeepEqual(ev.Pools, want.Pools) {
				t.Fatalf("step %d: Update's pools differ from Desired's\nupdate:  %+v\ndesired: %+v", step, ev.Pools, want.Pools)
			}
			if !reflect.DeepEqual(before.Services, beforeServices) {
				t.Fatalf("step %d: Update changed the previous state", step)
			}
			differ, ok := dataplane.Since(before, ev.State)
			if !ok {
				t.Fatalf("step %d: a service went", step)
			}
			for _, i := range differ {
				if !slices.Contains(redone, i) {
					t.Fatalf("step %d: service %d changed, and Update says it did not evaluate it (it did %v)", step, i, redone)
				}
			}
		}
	})
}

// TestReloadOfPoolsOnly: a reload whose configuration changes a pool's
// settings only is evaluated for that pool, as a health change is: the
// data plane gets what Desired computes, and a Delta from the state
// before that lists the pool's services only.
func TestReloadOfPoolsOnly(t *testing.T) {
	const src = `node: lb
services:
  - {name: a, vips: [192.0.2.1], ports: [80, 81], forward: nat, pool: pa}
  - {name: b, vips: [192.0.2.2], ports: [80], forward: nat, pool: pb}
pools:
  pa:
    servers:
      - {address: 198.51.100.1, port: 8080, weight: 1}
      - {address: 198.51.100.2, port: 8080, weight: 1}
  pb:
    servers:
      - {address: 198.51.100.3, port: 8080, weight: 1}
`
	var p config.Parser
	parse := func(text string) *config.Config {
		t.Helper()
		c, diags := p.Parse("t.yaml", []byte(text), config.Options{})
		if c == nil {
			t.Fatal(diags)
		}
		return c
	}
	dp := &fakeDataplane{}
	eng := New(parse(src), dp, "fake")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- eng.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	eventually(t, "the first reconcile", func() bool { _, n := dp.last(); return n >= 1 })
	before, _ := dp.last()

	next := parse(strings.Replace(src, "198.51.100.2, port: 8080, weight: 1", "198.51.100.2, port: 8080, weight: 3", 1))
	if pools, ok := next.ChangedSince(eng.cfg); !ok || !slices.Equal(pools, []string{"pa"}) {
		t.Fatalf("the parser tells %v, %t", pools, ok)
	}
	if err := eng.Reload(ctx, next); err != nil {
		t.Fatal(err)
	}
	got, _ := dp.last()
	want := Desired(Inputs{Config: next}).State
	if !slices.EqualFunc(got.Services, want.Services, func(a, b dataplane.VirtualService) bool { return reflect.DeepEqual(a, b) }) {
		t.Fatalf("reloaded state\n%+v\nwant\n%+v", got.Services, want.Services)
	}
	d := got.Delta
	if d == nil || d.From == 0 || d.From != before.Delta.Gen {
		t.Fatalf("delta %+v after state %+v", d, before.Delta)
	}
	var names []string
	for _, i := range d.Services {
		names = append(names, got.Services[i].Service)
	}
	if slices.Sort(names); !slices.Equal(names, []string{"a", "a"}) {
		t.Errorf("the delta lists services %v, want the two of service a", names)
	}
	// Service b was not evaluated again: its reals are the state before's.
	i := slices.IndexFunc(got.Services, func(vs dataplane.VirtualService) bool { return vs.Service == "b" })
	j := slices.IndexFunc(before.Services, func(vs dataplane.VirtualService) bool { return vs.Service == "b" })
	if &got.Services[i].Reals[0] != &before.Services[j].Reals[0] {
		t.Error("service b was evaluated again")
	}
}
