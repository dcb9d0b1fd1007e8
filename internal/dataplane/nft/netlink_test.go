package nft

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"

	"halb/internal/dataplane"
	"halb/internal/dataplane/nft/nfttest"
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
