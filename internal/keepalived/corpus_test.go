package keepalived

import (
	"bytes"
	"flag"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"testing"

	"halb/internal/config"
)

var update = flag.Bool("update", false, "rewrite the golden files of the corpus tests")

// corpusFile is one keepalived configuration of the corpus and the
// config-id to read it with.
type corpusFile struct {
	name, path, id string
}

// corpus lists keepalived's own samples (read where Debian's keepalived
// package installs them), the configurations under testdata/corpus
// (written after common public deployments) and the site's example pair.
func corpus(t testing.TB) []corpusFile {
	t.Helper()
	var out []corpusFile
	samples, _ := filepath.Glob(filepath.Join(samplesDir, "keepalived.conf.*"))
	if len(samples) == 0 {
		t.Fatalf("no keepalived samples in %s: install the Debian package keepalived (scripts/debian-packages.txt)", samplesDir)
	}
	for _, s := range samples {
		id := "x"
		if strings.HasSuffix(s, "conditional_conf") {
			id = "high"
		}
		out = append(out, corpusFile{"samples/" + filepath.Base(s), s, id})
	}
	own, _ := filepath.Glob("testdata/corpus/*.conf")
	for _, s := range own {
		out = append(out, corpusFile{"corpus/" + filepath.Base(s), s, "lb1"})
	}
	for _, node := range []string{"lb-a", "lb-b"} {
		out = append(out, corpusFile{"examples/" + node, "../../examples/keepalived/" + node + ".conf", node})
	}
	return out
}

// TestCorpusGolden converts every corpus file and compares the YAML and the
// diagnostics with testdata/golden (go test -update rewrites them). A
// conversion without errors must also load as halb YAML into the same
// configuration as the keepalived file itself.
func TestCorpusGolden(t *testing.T) {
	// The goldens do not depend on the machine's users.
	defer func(f func(string) (*user.User, error)) { lookupUser = f }(lookupUser)
	lookupUser = func(name string) (*user.User, error) { return nil, user.UnknownUserError(name) }
	for _, f := range corpus(t) {
		t.Run(f.name, func(t *testing.T) {
			conv := Convert(f.path, Options{ConfigID: f.id})
			if conv.Config == nil {
				t.Fatalf("not converted:\n%s", conv.Diags)
			}
			out, err := RenderYAML(conv.Config, conv.Written, conv.Origins)
			if err != nil {
				t.Fatal(err)
			}
			built, diags := config.Build(conv.Config, conv.Written, config.Options{Hostname: "h"})
			diags = append(dropRepeated(diags, conv.Diags), conv.Diags...)
			diags.Sort()
			var got bytes.Buffer
			got.Write(out)
			got.WriteString("# --- diagnostics\n")
			for _, d := range diags {
				got.WriteString("# " + d.String() + "\n")
			}
			golden := filepath.Join("testdata", "golden", strings.ReplaceAll(f.name, "/", "_")+".golden")
			if *update {
				if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(golden, got.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if !bytes.Equal(got.Bytes(), want) {
				t.Errorf("conversion differs from %s (go test -update rewrites it):\n%s", golden, got.String())
			}
			if built == nil {
				return
			}
			parsed, pd := config.Parse("converted.yaml", out, config.Options{Hostname: "h"})
			if parsed == nil {
				t.Fatalf("the converted YAML does not load:\n%s\n%s", pd, out)
			}
			a, _ := RenderYAML(built, nil, nil)
			b, _ := RenderYAML(parsed, nil, nil)
			if !bytes.Equal(a, b) {
				t.Errorf("the converted YAML loads into another configuration than the keepalived file:\nkeepalived:\n%s\nYAML:\n%s", a, b)
			}
		})
	}
}
