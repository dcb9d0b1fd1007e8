package keepalived

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"halb/internal/lab/labtest"
)

// TestKeepalivedAcceptsMarkSequences: keepalived 2.2.7's config test
// passes, without a complaint, on the corpus file that writes a
// virtual_server_group's marks and addresses as ~SEQ and ~LST blocks, in
// a namespace holding its interface; TestCorpusGolden holds what halb
// makes of it (one service per mark, as keepalived's one IPVS service per
// mark).
func TestKeepalivedAcceptsMarkSequences(t *testing.T) {
	labtest.RequireTool(t, "keepalived")
	lab := labtest.NewLab(t)
	h, err := lab.AddHost("kseq")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("testdata", "corpus", "mark-sequences.conf")
	for j, ifname := range interfaceNames(t, path) {
		if err := h.IP("link", "add", ifname, "type", "veth", "peer", "name", fmt.Sprintf("kpeer%d", j)); err != nil {
			t.Fatal(err)
		}
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		t.Fatal(err)
	}
	complaint, err := keepalivedConfigTest(h, abs)
	if err != nil {
		t.Fatal(err)
	}
	if complaint != "" {
		t.Errorf("keepalived -t -f %s complains: %s", path, complaint)
	}
	// The file is read as keepalived does: its sequences are expanded.
	conv := Convert(path, Options{ConfigID: "lb1"})
	if conv.Config == nil || conv.Diags.HasErrors() {
		t.Fatalf("not converted:\n%s", conv.Diags)
	}
	var marks []string
	for _, s := range conv.Config.Services {
		if s.Mark.Value != 0 {
			marks = append(marks, fmt.Sprint(s.Mark.Value))
		}
	}
	if got := strings.Join(marks, " "); got != "101 102 103" {
		t.Errorf("marks of the services: %q, want one service per mark 101 102 103", got)
	}
}
