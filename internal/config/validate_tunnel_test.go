package config

import (
	"strings"
	"testing"
)

func TestTunnelValidation(t *testing.T) {
	tests := []struct {
		name, forward, tunnel string
		want                  string // "": valid
	}{
		{"ipip by default", "tun", "", ""},
		{"gue", "tun", "{type: gue, port: 6080, checksum: remcsum}", ""},
		{"gre with checksum", "tun", "{type: gre, checksum: csum}", ""},
		{"not tun", "dr", "{type: gre}", `t.yaml:14:13: services[0].tunnel: a tunnel is set but service "http" forwards with dr; tunnel goes with forward: tun`},
		{"unknown type", "tun", "{type: vxlan}", `t.yaml:14:20: services[0].tunnel.type: "vxlan" is not one of ipip, gue, gre`},
		{"gue without port", "tun", "{type: gue}", "t.yaml:14:13: services[0].tunnel.port: a gue tunnel needs the UDP port"},
		{"port on gre", "tun", "{type: gre, port: 6080}", "t.yaml:14:31: services[0].tunnel.port: only a gue tunnel has a port"},
		{"ipip checksum", "tun", "{checksum: csum}", "t.yaml:14:24: services[0].tunnel.checksum: an ipip tunnel has no checksum"},
		{"remcsum on gre", "tun", "{type: gre, checksum: remcsum}", "t.yaml:14:35: services[0].tunnel.checksum: remcsum (remote checksum offload) needs a gue tunnel"},
		{"bad checksum", "tun", "{type: gue, port: 1, checksum: yes}", `t.yaml:14:44: services[0].tunnel.checksum: "yes" is not one of none, csum, remcsum`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svc := "    forward: " + tt.forward + "\n"
			if tt.tunnel != "" {
				svc += "    tunnel: " + tt.tunnel + "\n"
			}
			src := strings.Replace(base, "    pool: www\n", svc+"    pool: www\n", 1)
			_, diags := Parse("t.yaml", []byte(src), Options{})
			if tt.want == "" {
				if len(diags.Errors()) > 0 {
					t.Fatalf("want valid, got:\n%s", diags)
				}
				return
			}
			for _, d := range diags {
				if strings.HasPrefix(d.String(), tt.want) {
					return
				}
			}
			t.Errorf("want a diagnostic starting %q, got:\n%s", tt.want, diags)
		})
	}
}
