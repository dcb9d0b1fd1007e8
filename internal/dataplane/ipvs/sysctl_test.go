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

// TestSloppyWithoutSCTP: a kernel whose IPVS has no SCTP support has no
// sloppy_sctp; the reconcile sets sloppy_tcp and reports no error.
func TestSloppyWithoutSCTP(t *testing.T) {
	root := t.TempDir()
	for _, name := range []string{"net/ipv4/vs/expire_nodest_conn", "net/ipv4/vs/expire_quiescent_template", "net/ipv4/vs/sloppy_tcp"} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(root, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, name), []byte("0\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	d := newTestDataplane(t, newFakeKernel(), t.TempDir(), WithProcSys(root), WithSloppy(true))
	st := siteState()
	st.Services = st.Services[:1]
	if err := d.Reconcile(context.Background(), st); err != nil {
		t.Fatalf("reconcile without sloppy_sctp: %v", err)
	}
	rep := d.Sysctls()
	if rep["net.ipv4.vs.sloppy_tcp"] != "1" {
		t.Errorf("Sysctls() = %v, want sloppy_tcp 1", rep)
	}
	if _, ok := rep["net.ipv4.vs.sloppy_sctp"]; ok {
		t.Errorf("Sysctls() = %v reports a sloppy_sctp the kernel lacks", rep)
	}
}
