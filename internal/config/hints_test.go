package config

import (
	"strings"
	"testing"
)

// TestDidYouMean: a misspelt key, pool or script is named with the
// closest known one; a word like none keeps the list of known keys.
func TestDidYouMean(t *testing.T) {
	for _, c := range []struct {
		name, old, new, want string
	}{
		{"key", "    pool: www\n", "    pool: www\n    persistance: {timeout: 300s}\n",
			`t.yaml:14:5: services[0]: unknown key "persistance"; did you mean "persistence"?`},
		{"swapped letters", "      vrid: 9\n", "      vrid: 9\n      prioirty: 100\n",
			`t.yaml:7:7: vrrp.instances[0]: unknown key "prioirty"; did you mean "priority"?`},
		{"key unlike any", "      vrid: 9\n", "      vrid: 9\n      colour: blue\n",
			`t.yaml:7:7: vrrp.instances[0]: unknown key "colour" (known keys: `},
		{"pool", "    pool: www\npools", "    pool: wwws\npools",
			`t.yaml:13:11: services[0].pool: no pool named "wwws"; did you mean "www"?`},
		{"script", "      vips: [192.0.2.9/24]\n",
			"      vips: [192.0.2.9/24]\n      track_scripts: [chk_nginix]\n  scripts:\n    - {name: chk_nginx, command: [/bin/true], user: nobody}\n",
			`t.yaml:9:23: vrrp.instances[0].track_scripts[0]: no script named "chk_nginix" in vrrp.scripts; did you mean "chk_nginx"?`},
	} {
		t.Run(c.name, func(t *testing.T) {
			src := strings.Replace(base, c.old, c.new, 1)
			_, diags := Parse("t.yaml", []byte(src), Options{})
			for _, d := range diags {
				if strings.HasPrefix(d.String(), c.want) {
					return
				}
			}
			t.Errorf("want a diagnostic starting %q, got:\n%s", c.want, diags)
		})
	}
	// A pool name like none gets no guess.
	_, diags := Parse("t.yaml", []byte(strings.Replace(base, "    pool: www\npools", "    pool: backend\npools", 1)), Options{})
	if got, want := diags.String(), "t.yaml:13:11: services[0].pool: no pool named \"backend\"\n"; got != want {
		t.Errorf("got\n%swant\n%s", got, want)
	}
}

// TestNoFollowOnErrors: a value that did not parse is reported once, and
// the checks that would compare it (families, VIPs carried, port
// overlaps, the sorry server's family) leave it alone.
func TestNoFollowOnErrors(t *testing.T) {
	for _, c := range []struct {
		name, old, new string
		want           []string
	}{
		{"instance VIP", "vips: [192.0.2.9/24]", "vips: [192.0.2.9/24, 192.0.2.300/24]",
			[]string{`t.yaml:8:28: vrrp.instances[0].vips[1]: bad address "192.0.2.300/24"`}},
		{"first instance VIP", "vips: [192.0.2.9/24]", "vips: [192.0.2.300/24, 192.0.2.9/24]",
			[]string{`t.yaml:8:14: vrrp.instances[0].vips[0]: bad address "192.0.2.300/24"`}},
		{"unicast peer", "      vrid: 9\n", "      vrid: 9\n      unicast_source: 192.0.2.400\n      unicast_peers: [192.0.2.2, 2001:db8::zz]\n",
			[]string{`t.yaml:7:23: vrrp.instances[0].unicast_source: bad IP address "192.0.2.400"`,
				`t.yaml:8:34: vrrp.instances[0].unicast_peers[1]: bad IP address "2001:db8::zz"`}},
		{"service VIPs", "    vips: [192.0.2.9]", "    vips: [192.0.2.9, 192.0.2.256, 2001:db8::x]",
			[]string{`t.yaml:11:23: services[0].vips[1]: bad IP address "192.0.2.256"`,
				`t.yaml:11:36: services[0].vips[2]: bad IP address "2001:db8::x"`}},
		{"only VIP", "    vips: [192.0.2.9]", "    vips: [192.0.2.999]\n    mark: per-vip",
			[]string{`t.yaml:11:12: services[0].vips[0]: bad IP address "192.0.2.999"`}},
		{"sorry server", "    vips: [192.0.2.9]\n    ports: [80]\n    pool: www\npools:\n  www:\n",
			"    vips: [192.0.2.x]\n    ports: [80]\n    pool: www\npools:\n  www:\n    sorry_server: 198.51.100.99\n",
			[]string{`t.yaml:11:12: services[0].vips[0]: bad IP address "192.0.2.x"`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			src := strings.Replace(base, c.old, c.new, 1)
			if src == base {
				t.Fatal("case does not change the base config")
			}
			_, diags := Parse("t.yaml", []byte(src), Options{})
			if len(diags) != len(c.want) {
				t.Fatalf("want %d diagnostics, got:\n%s", len(c.want), diags)
			}
			for i, w := range c.want {
				if !strings.HasPrefix(diags[i].String(), w) {
					t.Errorf("diagnostic %d: got %q, want prefix %q", i, diags[i], w)
				}
			}
		})
	}
}
