package nft

import (
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// normalize makes `nft list table` output comparable: set elements come
// out in hash order, so each element list is sorted, one element a line.
func normalize(s string) string {
	var out []string
	lines := strings.Split(s, "\n")
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		trim := strings.TrimSpace(line)
		if !strings.HasPrefix(trim, "elements = {") {
			out = append(out, line)
			continue
		}
		indent := line[:len(line)-len(strings.TrimLeft(line, "\t "))]
		body := strings.TrimPrefix(trim, "elements = {")
		for !strings.HasSuffix(strings.TrimSpace(body), "}") {
			i++
			body += " " + strings.TrimSpace(lines[i])
		}
		body = strings.TrimSuffix(strings.TrimSpace(body), "}")
		var els []string
		for _, e := range strings.Split(body, ",") {
			if e = strings.TrimSpace(e); e != "" {
				els = append(els, e)
			}
		}
		slices.Sort(els)
		out = append(out, indent+"elements = {")
		for _, e := range els {
			out = append(out, indent+"\t"+e)
		}
		out = append(out, indent+"}")
	}
	return strings.Join(out, "\n")
}

// TestGoldenTables installs the examples' desired state in a namespace
// and compares halb's table, as nft lists it, with testdata/*.nft.
func TestGoldenTables(t *testing.T) {
	cases := []struct {
		name, config string
		mode         Mode
	}{
		{"site-lb-a-marks", "../../../examples/site-lb-a.yaml", MarksOnly},
		{"minimal-a-balance", "../../../examples/minimal-a.yaml", LoadBalance},
		{"nat-gateway-a-balance", "../../../examples/nat-gateway-a.yaml", LoadBalance},
		{"site-lb-a-balance", "../../../examples/site-lb-a.yaml", LoadBalance},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			lab, h := labHost(t)
			sw, err := lab.AddSwitch("sw")
			if err != nil {
				t.Fatal(err)
			}
			// A link to the real servers, for direct routing's device.
			if _, err := lab.Connect(h, sw, "eth0", "198.51.100.2/24", "192.0.2.2/24"); err != nil {
				t.Fatal(err)
			}
			_, st := loadState(t, c.config)
			d := nsDataplane(t, h, WithMode(c.mode))
			reconcile(t, d, st)
			got := normalize(listTable(t, h, DefaultTable))
			for _, table := range []string{"netdev " + DefaultTable, "inet " + DefaultTable + countSuffix} {
				if out, err := h.Run("nft", append([]string{"list", "table"}, strings.Fields(table)...)...); err == nil {
					got += "\n" + normalize(string(out))
				}
			}
			file := filepath.Join("testdata", c.name+".nft")
			if *update {
				if err := os.WriteFile(file, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(file)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("table differs from %s (run with -update after checking):\n%s", file, got)
			}
		})
	}
}
