package engine

import (
	"maps"
	"reflect"
	"slices"
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
