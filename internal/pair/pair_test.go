package pair

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"halb/internal/config"
)

func load(t *testing.T, name, src string) *config.Config {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	os.WriteFile(path, []byte(src), 0o644)
	cfg, diags := config.Load(path, config.Options{})
	if diags.HasErrors() {
		t.Fatalf("%s: %s", name, diags)
	}
	return cfg
}

// TestMaster: equal priorities make a pair only when exactly one node
// preempts; services listed in another order, and servers too, are the
// same.
func TestMaster(t *testing.T) {
	node := func(name string, prio int, preempt bool, servers string) string {
		return fmt.Sprintf(`node: %s
vrrp:
  instances:
    - {name: a, interface: eth0, vrid: 1, priority: %d, preempt: %t, vips: [192.0.2.1/24]}
services:
  - {name: s, vips: [192.0.2.1], ports: [80], pool: p}
pools:
  p: {servers: [%s]}
`, name, prio, preempt, servers)
	}
	const ab, ba = "{address: 198.51.100.1}, {address: 198.51.100.2}", "{address: 198.51.100.2}, {address: 198.51.100.1}"
	for _, tt := range []struct {
		name string
		a, b string
		want string // "" for a valid pair
	}{
		{"different priorities", node("lb-a", 150, true, ab), node("lb-b", 100, true, ba), ""},
		{"one preempts", node("lb-a", 100, true, ab), node("lb-b", 100, false, ab), ""},
		{"both preempt", node("lb-a", 100, true, ab), node("lb-b", 100, true, ab), "100 on both nodes, and both preempt"},
		{"neither preempts", node("lb-a", 100, false, ab), node("lb-b", 100, false, ab), "100 on both nodes, and neither preempts"},
	} {
		diags := Check(load(t, "a.yaml", tt.a), load(t, "b.yaml", tt.b))
		switch {
		case tt.want == "" && len(diags) > 0:
			t.Errorf("%s: %s", tt.name, diags)
		case tt.want != "" && (len(diags) != 1 || !strings.Contains(diags.String(), tt.want)):
			t.Errorf("%s: %s, want one error with %q", tt.name, diags, tt.want)
		}
	}
}
