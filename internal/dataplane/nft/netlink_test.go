package nft

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"halb/internal/dataplane"
	"halb/internal/dataplane/nft/nfttest"
	"halb/internal/maglev"
)

// TestNetlinkMessages records, byte for byte and without a kernel, the
// messages that reconciles send for the direct-routing table (created,
// then one backend out) and for the NAT counters table, and compares
// them with testdata/netlink-*.txt (go test -update rewrites them).
func TestNetlinkMessages(t *testing.T) {
	var rec nfttest.Recorder
	d, err := New(WithMode(LoadBalance), WithCounters(true), WithConnOptions(nftables.WithTestDial(rec.Dial)))
	if err != nil {
		t.Fatal(err)
	}
	d.linkOf = func(netip.Addr) (drLink, error) { return drLink{name: "eth0", index: 2}, nil }
	netdev := func(m netlink.Message) bool { return m.Data[0] == byte(nftables.TableFamilyNetdev) }
	counters := func(m netlink.Message) bool { return strings.Contains(string(m.Data), DefaultTable+countSuffix+"\x00") }

	dr := drState(t)
	dr.Services[0].MaglevSize = 7
	send(t, d, dr)
	golden(t, "netlink-dr-create", nfttest.Render(rec.Take(), netdev))

	dr.Services[0].Reals = dr.Services[0].Reals[:2]
	send(t, d, dr)
	out := nfttest.Render(rec.Take(), netdev)
	for _, want := range []string{"DELCHAIN", "DELSET", "DELOBJ"} {
		if !strings.Contains(out, want) {
			t.Errorf("a backend out sent no %s for its chain, set and counters", want)
		}
	}
	golden(t, "netlink-dr-backend-out", out)

	_, nat := loadState(t, "../../../examples/minimal-a.yaml")
	send(t, d, nat)
	golden(t, "netlink-counters", nfttest.Render(rec.Take(), counters))
}

func send(t *testing.T, d *Dataplane, st dataplane.State) {
	t.Helper()
	if err := d.Reconcile(context.Background(), st); err != nil {
		t.Fatal(err)
	}
}

// golden compares got with testdata/name.txt, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	file := filepath.Join("testdata", name+".txt")
	if *update {
		if err := os.WriteFile(file, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("%s: the messages differ from %s (go test -update rewrites it after review):\n%s", name, file, firstDiff(string(want), got))
	}
}

// firstDiff shows the first line where two renderings differ.
func firstDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := range max(len(w), len(g)) {
		var a, b string
		if i < len(w) {
			a = w[i]
		}
		if i < len(g) {
			b = g[i]
		}
		if a != b {
			return "line " + strconv.Itoa(i+1) + ":\n- " + a + "\n+ " + b
		}
	}
	return ""
}

// TestOneServerChangeMessages: one server of a pool going down (its
// weight 0 in each of the pool's services), with the data plane told
// which services changed or not, sends the same messages: the slots of
// the pool's Maglev map that move, nothing else; and compares them with
// testdata/netlink-one-server-down.txt.
func TestOneServerChangeMessages(t *testing.T) {
	const pools = 4
	st := poolState(40, pools)
	for i := range st.Services {
		st.Services[i].Persistence, st.Services[i].MaglevSize = 0, 13
	}
	down := dataplane.State{Services: slices.Clone(st.Services)}
	var pool0 []int
	for i := range down.Services {
		if i%pools == 0 {
			down.Services[i].Reals = slices.Clone(down.Services[i].Reals)
			down.Services[i].Reals[1].Weight = 0
			pool0 = append(pool0, i)
		}
	}
	var outs []string
	for _, told := range []bool{true, false} {
		var rec nfttest.Recorder
		d, err := New(WithMode(LoadBalance), WithConnOptions(nftables.WithTestDial(rec.Dial)))
		if err != nil {
			t.Fatal(err)
		}
		first := st
		first.Delta = &dataplane.Delta{Gen: 1}
		send(t, d, first)
		rec.Take()
		next := down
		if told {
			next.Delta = &dataplane.Delta{From: 1, Gen: 2, Services: pool0}
		}
		send(t, d, next)
		msgs := rec.Take()
		slotMap := d.have.byKey[down.Services[0].Key].slots
		for _, m := range msgs {
			typ := uint16(m.Header.Type) & 0xff
			if (typ != unix.NFT_MSG_NEWSETELEM && typ != unix.NFT_MSG_DELSETELEM) || !strings.Contains(string(m.Data), slotMap.name+"\x00") {
				t.Errorf("told %t: a message other than the elements of map %s:\n%s", told, slotMap.name, nfttest.Render([]netlink.Message{m}, nil))
			}
		}
		// The slots whose backend moved: each deleted and added again.
		moved := 0
		was, is := maglevIDs(t, st.Services[0].Reals, 13), maglevIDs(t, down.Services[0].Reals, 13)
		for i := range was {
			if was[i] != is[i] {
				moved++
			}
		}
		out := nfttest.Render(msgs, nil)
		if got := strings.Count(out, "\t\t\t1:\n"); got != 2*moved { // NFTA_SET_ELEM_KEY, one per element
			t.Errorf("told %t: %d elements sent, want %d (%d slots moved)", told, got, 2*moved, moved)
		}
		if moved == 0 {
			t.Fatal("no slot moved")
		}
		outs = append(outs, out)
	}
	if outs[0] != outs[1] {
		t.Errorf("told and not told, the messages differ:\n%s", firstDiff(outs[1], outs[0]))
	}
	golden(t, "netlink-one-server-down", outs[0])
}

// maglevIDs returns the backend of each slot of a Maglev table.
func maglevIDs(t *testing.T, reals []dataplane.Real, size int) []string {
	t.Helper()
	var bs []maglev.Backend
	for _, r := range reals {
		bs = append(bs, maglev.Backend{ID: r.AddrPort().String(), Weight: r.Weight})
	}
	tab, err := maglev.New(bs, size)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]string, len(tab.Entries))
	for i, e := range tab.Entries {
		out[i] = tab.Backends[e].ID
	}
	return out
}
