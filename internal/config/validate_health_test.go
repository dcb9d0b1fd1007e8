package config

import (
	"strings"
	"testing"
)

func TestValidateHealthChecks(t *testing.T) {
	cases := []struct {
		check string
		top   string
		want  string // "" = valid
	}{
		{`{type: http, expect_status: [200, "300-399"], body_digest: "md5:0123456789abcdef0123456789abcdef"}`, "", ""},
		{`{type: http, expect_status: [99]}`, "", "not a range of HTTP status codes"},
		{`{type: http, body_digest: "crc:12"}`, "", "body_digest"},
		{`{type: tcp, source: 198.51.100.1}`, "", ""},
		{`{type: tcp, source: eth0}`, "", ""},
		{`{type: tcp, source: "not an/interface"}`, "", "neither an IP address nor an interface name"},
		{`{type: dns, query: example.org, query_type: BOGUS}`, "", "query_type"},
		{`{type: exec, command: [/bin/true]}`, "", "needs user"},
		{`{type: exec, command: [/bin/true]}`, "script_user: nobody\n", ""},
		{`{type: exec, command: [/bin/true], user: root}`, "", ""},
		{`{type: udp, payload: x, expect_reply: y, no_icmp_unreachable: true}`, "", "not both"},
	}
	for _, c := range cases {
		yaml := c.top + "pools:\n  p:\n    check: " + c.check + "\n    servers: [{address: 198.51.100.11}]\n"
		_, diags := Parse("t.yaml", []byte(yaml), Options{Hostname: "x"})
		got := diags.Errors().String()
		switch {
		case c.want == "" && got != "":
			t.Errorf("%s: unexpected errors: %s", c.check, got)
		case c.want != "" && !strings.Contains(got, c.want):
			t.Errorf("%s: errors %q do not mention %q", c.check, got, c.want)
		}
	}
}
