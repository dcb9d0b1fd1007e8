package daemon

import (
	"strings"
	"testing"

	"halb/internal/config"
)

// TestRestartNeeded: a reload that changes what only a start sets up is
// refused with a message naming the key; what the command line overrides
// is not the file's to change.
func TestRestartNeeded(t *testing.T) {
	parse := func(src string) *config.Config {
		t.Helper()
		c, diags := config.Parse("t.yaml", []byte(src), config.Options{Hostname: "t"})
		if c == nil {
			t.Fatal(diags)
		}
		return c
	}
	const base = "node: t\ndataplane: none\napi: {socket: /run/halb/a.sock}\n"
	const vrrp = "vrrp:\n  instances:\n    - {name: a, interface: eth0, vrid: 1, priority: 100, vips: [192.0.2.1/24]}\n"
	tests := []struct {
		name      string
		cur, next string
		ov        Overrides
		want      string // "": the reload may go on
	}{
		{"nothing", base, base, Overrides{}, ""},
		{"dataplane", base, strings.Replace(base, "none", "nftables", 1), Overrides{}, "dataplane: changed from none to nftables; restart halb"},
		{"dataplane overridden", base, strings.Replace(base, "none", "nftables", 1), Overrides{Dataplane: "none"}, ""},
		{"socket", base, strings.Replace(base, "a.sock", "b.sock", 1), Overrides{}, "api.socket: changed from /run/halb/a.sock to /run/halb/b.sock"},
		{"socket overridden", base, strings.Replace(base, "a.sock", "b.sock", 1), Overrides{Socket: "/run/halb/a.sock"}, ""},
		{"vrrp added", base, base + vrrp, Overrides{}, "vrrp.instances: this node started without VRRP; restart halb"},
		{"vrrp removed", base + vrrp, base, Overrides{}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cur, next := parse(tt.cur), parse(tt.next)
			tt.ov.Apply(cur)
			tt.ov.Apply(next)
			got := strings.Join(restartNeeded([]AnnouncerKind{VRRP}, cur, next), "; ")
			if tt.want == "" && got != "" || !strings.Contains(got, tt.want) {
				t.Errorf("restartNeeded = %q, want %q", got, tt.want)
			}
		})
	}
}
