package keepalived

import (
	"strings"
	"testing"

	"halb/internal/config"
)

const tunnelConf = `
virtual_server 192.0.2.1 80 {
    protocol TCP
    lvs_method %s
    real_server 198.51.100.1 80 {
        lvs_method %s
    }
}
`

// TestTunnelTypes: keepalived's TUN types map onto the service's tunnel,
// with its port and checksum mode; mistakes are located errors.
func TestTunnelTypes(t *testing.T) {
	tests := []struct {
		vs, rs string
		want   config.Tunnel
		err    string // a located error instead
	}{
		{"TUN", "TUN", config.Tunnel{}, ""},
		{"TUN type ipip", "TUN", config.Tunnel{}, ""},
		{"TUN type gue port 6080 remcsum", "TUN type gue port 6080 remcsum", config.Tunnel{Type: "gue", Port: 6080, Checksum: "remcsum"}, ""},
		{"TUN type gre csum", "TUN type gre csum", config.Tunnel{Type: "gre", Checksum: "csum"}, ""},
		{"TUN type gre nocsum", "TUN type gre", config.Tunnel{}, ":6:20: lvs_method TUN type gre differs from the virtual server's (TUN)"},
		{"TUN type gue", "TUN", config.Tunnel{}, `:4:25: lvs_method TUN type gue: the tunnel needs "port N"`},
		{"TUN type vxlan", "TUN", config.Tunnel{}, `:4:25: lvs_method TUN: tunnel type "vxlan" is not ipip, gue or gre`},
		{"TUN type gre fast", "TUN", config.Tunnel{}, `:4:29: lvs_method TUN type gre: "fast" is not nocsum, csum or remcsum`},
		{"DR extra", "DR", config.Tunnel{}, `:4:19: lvs_method: unexpected "extra"`},
	}
	for _, tt := range tests {
		t.Run(tt.vs, func(t *testing.T) {
			cfg, diags, path := loadString(t, strings.ReplaceAll(strings.Replace(tunnelConf, "%s", tt.vs, 1), "%s", tt.rs))
			if tt.err != "" {
				if !strings.Contains(diags.String(), path+tt.err) {
					t.Fatalf("want an error %q, got:\n%s", path+tt.err, diags)
				}
				return
			}
			if cfg == nil {
				t.Fatalf("does not load:\n%s", diags)
			}
			if got := cfg.Services[0].Tunnel; got != tt.want || cfg.Services[0].Forward != "tun" {
				t.Errorf("forward %s tunnel %+v, want tun %+v", cfg.Services[0].Forward, got, tt.want)
			}
		})
	}
}
