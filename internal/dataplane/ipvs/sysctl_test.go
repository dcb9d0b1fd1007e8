package ipvs

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

func TestSloppySysctls(t *testing.T) {
	for _, sloppy := range []bool{false, true} {
		root := t.TempDir()
		names := []string{"net/ipv4/vs/expire_nodest_conn", "net/ipv4/vs/expire_quiescent_template",
			"net/ipv4/vs/sloppy_tcp", "net/ipv4/vs/sloppy_sctp"}
		for _, name := range names {
			if err := os.MkdirAll(filepath.Dir(filepath.Join(root, name)), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(root, name), []byte("0\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		d := newTestDataplane(t, newFakeKernel(), t.TempDir(), WithProcSys(root), WithSloppy(sloppy))
		st := siteState()
		st.Services = st.Services[:1]
		if err := d.Reconcile(context.Background(), st); err != nil {
			t.Fatal(err)
		}
		want := "0\n"
		if sloppy {
			want = "1\n"
		}
		rep := d.Sysctls()
		for _, name := range names[2:] {
			if b, _ := os.ReadFile(filepath.Join(root, name)); string(b) != want {
				t.Errorf("sloppy %v: %s = %q, want %q", sloppy, name, b, want)
			}
			if _, ok := rep[dotted(name)]; ok != sloppy {
				t.Errorf("sloppy %v: Sysctls() = %v, reports %s: %v", sloppy, rep, dotted(name), ok)
			}
		}
	}
}
