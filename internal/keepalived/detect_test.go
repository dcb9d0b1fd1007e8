package keepalived

import (
	"os"
	"path/filepath"
	"testing"
)

// TestIsKeepalived tells every corpus file from halb's YAML examples.
func TestIsKeepalived(t *testing.T) {
	for _, f := range corpus(t) {
		data, err := os.ReadFile(f.path)
		if err != nil {
			t.Fatal(err)
		}
		if !IsKeepalived(data) {
			t.Errorf("%s: not recognised as keepalived.conf", f.name)
		}
	}
	yamls, _ := filepath.Glob("../../examples/*.yaml")
	if len(yamls) == 0 {
		t.Fatal("no YAML examples")
	}
	for _, y := range yamls {
		data, err := os.ReadFile(y)
		if err != nil {
			t.Fatal(err)
		}
		if IsKeepalived(data) {
			t.Errorf("%s: YAML taken for keepalived.conf", y)
		}
	}
	for _, s := range []string{"~LST(N, 1, 2) x\n", "~SEQ(N, 2) x\n"} {
		if !IsKeepalived([]byte(s)) {
			t.Errorf("%q not recognised as keepalived.conf", s)
		}
	}
	for _, s := range []string{"", "# only a comment\n", "node: x\n", "vrrp:\n  instances: []\n"} {
		if IsKeepalived([]byte(s)) {
			t.Errorf("%q taken for keepalived.conf", s)
		}
	}
}
