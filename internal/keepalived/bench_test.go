package keepalived

import (
	"testing"

	"halb/internal/config"
)

// BenchmarkLoadSite reads, maps and validates the site's keepalived.conf
// (three files, parameters, ~SEQ): the cost of halb validate, halb run's
// start and every reload on such a file.
func BenchmarkLoadSite(b *testing.B) {
	for b.Loop() {
		if cfg, diags := Load("../../examples/keepalived/lb-a.conf", Options{ConfigID: "lb-a"}, config.Options{Hostname: "h"}); cfg == nil {
			b.Fatal(diags)
		}
	}
}

// BenchmarkLoadSamples loads every file of the corpus in turn.
func BenchmarkLoadSamples(b *testing.B) {
	files := corpusPaths(b)
	for b.Loop() {
		for _, f := range files {
			Load(f, Options{ConfigID: "x"}, config.Options{Hostname: "h"})
		}
	}
}

func corpusPaths(b *testing.B) []string {
	var out []string
	for _, f := range corpus(b) {
		out = append(out, f.path)
	}
	return out
}
