package faults

import (
	"io/fs"
	"slices"
	"testing"

	"halb/examples"
	"halb/internal/config"
	"halb/internal/lab/site"
)

func TestDiffLinesCountsRepeats(t *testing.T) {
	base := []string{"table inet halb {", "  chain x {", "  }", "}"}
	added, removed := diffLines(base, []string{"table inet halb {", "  chain x {", "  chain x {", "}"})
	if !slices.Equal(added, []string{"chain x {"}) || !slices.Equal(removed, []string{"}"}) {
		t.Errorf("added %q, removed %q", added, removed)
	}
	if added, removed := diffLines(base, base); len(added)+len(removed) != 0 {
		t.Errorf("the same lines differ: %q %q", added, removed)
	}
}

func TestUnicastConfigsAreValidAndPeered(t *testing.T) {
	for i, name := range site.LBNames {
		src, err := fs.ReadFile(examples.Files, "site-"+name+".yaml")
		if err != nil {
			t.Fatal(err)
		}
		cfg, diags := config.Parse(name+".yaml", []byte(unicastConfig(src, i)), config.Options{})
		if diags.HasErrors() {
			t.Fatalf("%s: %v", name, diags)
		}
		for _, in := range cfg.VRRP.Instances {
			if !in.Unicast() || in.UnicastSource.String()+"/24" != site.LBAddrs[i][0] ||
				len(in.UnicastPeers) != 1 || in.UnicastPeers[0].String()+"/24" != site.LBAddrs[1-i][0] {
				t.Errorf("%s: %s: source %v, peers %v", name, in.Name, in.UnicastSource, in.UnicastPeers)
			}
		}
	}
}

func TestLossReport(t *testing.T) {
	if got := lossReport([]string{"15", "3"}); got != "3 of 15 adverts dropped" {
		t.Errorf("got %q", got)
	}
	if got := lossReport(nil); got != "adverts counted []" {
		t.Errorf("got %q", got)
	}
}
