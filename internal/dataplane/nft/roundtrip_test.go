package nft

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"halb/internal/dataplane"
)

// TestRoundTripText saves halb's tables the way operators back up a
// firewall (`nft list ruleset`), flushes the ruleset, loads the saved
// text with `nft -f` and checks that the kernel lists the same tables.
func TestRoundTripText(t *testing.T) {
	for config, tables := range map[string][]string{
		"nat-gateway-a": {"inet " + DefaultTable, "inet " + DefaultTable + countSuffix}, // NAT, persistence, counters
		"site-lb-a":     {"inet " + DefaultTable, "netdev " + DefaultTable},             // marks, direct routing
		"by-mark":       {"inet " + DefaultTable},                                       // NAT by mark, IPv6
	} {
		t.Run(config, func(t *testing.T) {
			lab, h := labHost(t)
			sw, err := lab.AddSwitch("sw")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := lab.Connect(h, sw, "eth0", "198.51.100.2/24", "192.0.2.2/24"); err != nil {
				t.Fatal(err)
			}
			st := markAndV6State()
			if config != "by-mark" {
				_, st = loadState(t, filepath.Join("../../../examples", config+".yaml"))
			}
			reconcile(t, nsDataplane(t, h, WithMode(LoadBalance), WithCounters(true)), st)
			saved := listRuleset(t, h)
			for _, table := range tables {
				if !strings.Contains(saved, "table "+table+" {") {
					t.Fatalf("the ruleset has no table %s:\n%s", table, saved)
				}
			}
			file := filepath.Join(t.TempDir(), "ruleset.nft")
			if err := os.WriteFile(file, []byte(saved), 0o600); err != nil {
				t.Fatal(err)
			}
			if out, err := h.Run("nft", "flush", "ruleset"); err != nil {
				t.Fatalf("nft flush ruleset: %v: %s", err, out)
			}
			if out, err := h.Run("nft", "-f", file); err != nil {
				t.Fatalf("nft -f of the listed ruleset: %v: %s", err, out)
			}
			if got := listRuleset(t, h); normalize(got) != normalize(saved) {
				t.Errorf("the restored ruleset differs:\n%s\nsaved:\n%s", got, saved)
			}
		})
	}
}

func listRuleset(t testing.TB, h interface {
	Run(string, ...string) ([]byte, error)
}) string {
	t.Helper()
	out, err := h.Run("nft", "list", "ruleset")
	if err != nil {
		t.Fatalf("nft list ruleset: %v: %s", err, out)
	}
	return string(out)
}

// markAndV6State has NAT services keyed by mark, with and without
// persistence, whose backends set a port, and an IPv6 service whose
// backends keep it.
func markAndV6State() dataplane.State {
	var st dataplane.State
	for i, persist := range []time.Duration{0, time.Minute} {
		vs := dataplane.VirtualService{Key: dataplane.ServiceKey{Family: 4, Mark: uint32(0x100 + i)}, Service: fmt.Sprintf("bymark%d", i), Persistence: persist}
		for j := range 2 {
			vs.Reals = append(vs.Reals, dataplane.Real{Addr: netip.AddrFrom4([4]byte{198, 51, 100, byte(10 + j)}), Port: 8080, Weight: 1, Forward: "nat"})
		}
		st.Services = append(st.Services, vs)
	}
	v6 := dataplane.VirtualService{Key: dataplane.ServiceKey{Family: 6, Protocol: "udp", Addr: netip.MustParseAddr("2001:db8::10"), Port: 53}, Service: "dns6"}
	for _, a := range []string{"2001:db8:1::1", "2001:db8:1::2"} {
		v6.Reals = append(v6.Reals, dataplane.Real{Addr: netip.MustParseAddr(a), Weight: 1, Forward: "nat"})
	}
	st.Services = append(st.Services, v6)
	return st
}
