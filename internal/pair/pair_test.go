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

// TestAuth: the nodes of a pair authenticate alike, with the same
// password (which no message repeats).
func TestAuth(t *testing.T) {
	node := func(name string, prio int, auth string) string {
		return fmt.Sprintf(`node: %s
vrrp:
  instances:
    - {name: a, interface: eth0, vrid: 1, priority: %d, version: 2, advert_interval: 1s, vips: [192.0.2.1/24]%s}
`, name, prio, auth)
	}
	for _, tt := range []struct {
		name string
		a, b string
		want string
	}{
		{"both ah", ", auth_type: ah, auth_password: s3cret", ", auth_type: ah, auth_password: s3cret", ""},
		{"pass by default", ", auth_type: pass, auth_password: s3cret", ", auth_password: s3cret", ""},
		{"ah and pass", ", auth_type: ah, auth_password: s3cret", ", auth_password: s3cret", "authentication pass here but ah in"},
		{"ah and none", ", auth_type: ah, auth_password: s3cret", "", "authentication none here but ah in"},
		{"another password", ", auth_type: ah, auth_password: s3cret", ", auth_type: ah, auth_password: 0ther",
			"vrrp.instances[0].auth_password: not the one in"},
	} {
		diags := Check(load(t, "a.yaml", node("lb-a", 150, tt.a)), load(t, "b.yaml", node("lb-b", 100, tt.b)))
		switch {
		case tt.want == "" && len(diags) > 0:
			t.Errorf("%s: %s", tt.name, diags)
		case tt.want != "" && (len(diags) != 1 || !strings.Contains(diags.String(), tt.want)):
			t.Errorf("%s: %s, want one error with %q", tt.name, diags, tt.want)
		case strings.Contains(diags.String(), "s3cret") || strings.Contains(diags.String(), "0ther"):
			t.Errorf("%s: a password in %s", tt.name, diags)
		}
	}
}
