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
		{`{type: dns, query: example.org, query_type: RRSIG}`, "", ""},
		{`{type: dns, query: example.org, query_type: dnskey}`, "", ""},
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

// TestServerChecks: a server's own check list replaces the pool's, gets
// the checks' defaults and is validated at its own, located, path.
func TestServerChecks(t *testing.T) {
	src := "pools:\n  p:\n    check: {type: tcp}\n    servers:\n" +
		"      - {address: 198.51.100.11}\n" +
		"      - address: 198.51.100.12\n        check: [{type: http, port: 8080, path: /health}]\n" +
		"      - address: 198.51.100.13\n        check: []\n"
	c, diags := Parse("t.yaml", []byte(src), Options{Hostname: "x"})
	if c == nil {
		t.Fatalf("does not load: %s", diags)
	}
	p := c.Pools["p"]
	if got := p.ServerChecks(p.Servers[0]); len(got) != 1 || got[0].Type != "tcp" {
		t.Errorf("server without its own checks: %+v, want the pool's", got)
	}
	own := p.ServerChecks(p.Servers[1])
	if len(own) != 1 || own[0].Type != "http" || own[0].Port != 8080 || own[0].Rise == 0 || own[0].Interval == 0 {
		t.Errorf("server's own check: %+v, want http on 8080 with the defaults applied", own)
	}
	if got := p.ServerChecks(p.Servers[2]); got == nil || len(got) != 0 {
		t.Errorf("check: [] gives %#v, want an empty, non-nil list (no checks)", got)
	}

	bad := "pools:\n  p:\n    servers:\n      - address: 198.51.100.11\n        check: [{type: tcp}, {type: bogus}]\n"
	_, diags = Parse("t.yaml", []byte(bad), Options{Hostname: "x"})
	errs := diags.Errors()
	if len(errs) != 1 || !strings.Contains(errs[0].Message, "pools.p.servers[0].check[1].type") || errs[0].Pos.Line != 5 {
		t.Errorf("a bad server check: %s, want one error at line 5 naming pools.p.servers[0].check[1].type", errs)
	}
}

// TestServerOptions: a server's on_failure and connection thresholds are
// validated at the server's path; nftables warns it cannot honour them.
func TestServerOptions(t *testing.T) {
	cases := []struct {
		server, top, want string
		warn              bool
	}{
		{"on_failure: remove, max_connections: 10, min_connections: 5", "", "", false},
		{"on_failure: drop", "", "pools.p.servers[0].on_failure", false},
		{"max_connections: 10, min_connections: 50", "", "above max_connections", false},
		{"min_connections: 5", "", "only means something with max_connections", false},
		{"max_connections: 10", "dataplane: nftables\n", "", true},
	}
	for _, c := range cases {
		yaml := c.top + "pools:\n  p:\n    servers: [{address: 198.51.100.11, " + c.server + "}]\n"
		_, diags := Parse("t.yaml", []byte(yaml), Options{Hostname: "x"})
		got := diags.Errors().String()
		switch {
		case c.want == "" && got != "":
			t.Errorf("%s: unexpected errors: %s", c.server, got)
		case c.want != "" && !strings.Contains(got, c.want):
			t.Errorf("%s: errors %q do not mention %q", c.server, got, c.want)
		}
		if warned := strings.Contains(diags.String(), "cannot limit"); warned != c.warn {
			t.Errorf("%s%s: warning about nftables %v, want %v:\n%s", c.top, c.server, warned, c.warn, diags)
		}
	}
}
