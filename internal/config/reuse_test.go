package config

import (
	"fmt"
	"math/rand/v2"
	"os"
	"reflect"
	"strings"
	"testing"
)

// reuseBase has services and pools to cut into items, with comments and
// blank lines between them.
func reuseBase() string {
	var b strings.Builder
	b.WriteString("node: lb\n# the services\nservices:\n")
	for i := range 6 {
		fmt.Fprintf(&b, "  - name: s%d\n    vips: [203.0.113.%d]\n    ports: [%d]\n    forward: nat\n    pool: p%d\n", i, 1+i, 80+i, i%3)
		if i == 2 {
			b.WriteString("\n  # more\n")
		}
	}
	b.WriteString("pools:\n")
	for p := range 3 {
		fmt.Fprintf(&b, "  p%d:   # pool %d\n    check: {type: tcp}\n    servers:\n", p, p)
		for j := range 2 {
			fmt.Fprintf(&b, "      - {address: 198.51.100.%d, port: 8080, weight: %d}\n", 1+2*p+j, 1+j)
		}
	}
	b.WriteString("api: {socket: /run/halb/t.sock}\n")
	return b.String()
}

// mutate changes one line of a configuration at random: a digit, a line
// repeated, dropped or indented, a comment, a key of its own.
func mutate(rng *rand.Rand, text string) string {
	lines := strings.SplitAfter(text, "\n")
	i := rng.IntN(len(lines))
	l := lines[i]
	switch rng.IntN(7) {
	case 0, 1: // a digit
		if j := strings.IndexAny(l, "0123456789"); j >= 0 {
			l = l[:j] + fmt.Sprint(rng.IntN(10)) + l[j+1:]
		}
		lines[i] = l
	case 2:
		lines = append(lines[:i+1], lines[i:]...)
	case 3:
		lines = append(lines[:i], lines[i+1:]...)
	case 4:
		lines[i] = "  " + l
	case 5:
		lines = append(lines[:i], append([]string{"# note\n"}, lines[i:]...)...)
	case 6:
		lines[i] = strings.Replace(l, "weight", "weigth", 1)
	}
	return strings.Join(lines, "")
}

// TestParserEqualsParse: a Parser given one version of a file after
// another (random edits of one line, one after the other) returns what
// Parse returns for each, configuration and diagnostics.
func TestParserEqualsParse(t *testing.T) {
	examples := []string{reuseBase(), base}
	for _, f := range []string{"minimal-a.yaml", "nat-gateway-a.yaml", "site-lb-a.yaml"} {
		data, err := os.ReadFile("../../examples/" + f)
		if err != nil {
			t.Fatal(err)
		}
		examples = append(examples, string(data))
	}
	rng := rand.New(rand.NewPCG(5, 6))
	for n, text := range examples {
		var p Parser
		cur := text
		for step := range 300 {
			if step%10 == 0 {
				cur = text // a valid version again
			} else {
				cur = mutate(rng, cur)
			}
			got, gotDiags := p.Parse("t.yaml", []byte(cur), Options{Hostname: "h"})
			want, wantDiags := Parse("t.yaml", []byte(cur), Options{Hostname: "h"})
			if !reflect.DeepEqual(gotDiags, wantDiags) {
				t.Fatalf("example %d step %d: diagnostics\n%s\nwant\n%s\nfile:\n%s", n, step, gotDiags, wantDiags, cur)
			}
			if got != nil {
				got.reused = nil // what Parse cannot know
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("example %d step %d: the configuration differs from Parse's\nfile:\n%s", n, step, cur)
			}
		}
	}
}

// TestParserReuses: a Parser decodes again only the items that changed.
func TestParserReuses(t *testing.T) {
	var p Parser
	text := reuseBase()
	if c, diags := p.Parse("t.yaml", []byte(text), Options{}); c == nil {
		t.Fatal(diags)
	}
	before := p.items
	if len(before) != 9 {
		t.Fatalf("%d items, want 6 services and 3 pools", len(before))
	}
	changed := strings.Replace(text, "198.51.100.1, port: 8080, weight: 1", "198.51.100.1, port: 8080, weight: 5", 1)
	c, diags := p.Parse("t.yaml", []byte(changed), Options{})
	if c == nil {
		t.Fatal(diags)
	}
	if w := c.Pools["p0"].Servers[0].Weight; w != 5 {
		t.Errorf("weight %d, want 5", w)
	}
	decoded := 0
	for k, it := range p.items {
		if before[k] != it {
			decoded++
		}
	}
	if decoded != 1 {
		t.Errorf("%d items decoded again, want 1", decoded)
	}
}

// TestChangedSince: a configuration that differs from the one before in
// a pool's settings only says so; one where a service changed, a pool
// went or that another configuration came between does not.
func TestChangedSince(t *testing.T) {
	var p Parser
	text := reuseBase()
	parse := func(text string) *Config {
		t.Helper()
		c, diags := p.Parse("t.yaml", []byte(text), Options{})
		if c == nil {
			t.Fatal(diags)
		}
		return c
	}
	first := parse(text)
	weight := parse(strings.Replace(text, "198.51.100.3, port: 8080, weight: 1", "198.51.100.3, port: 8080, weight: 4", 1))
	if pools, ok := weight.ChangedSince(first); !ok || !reflect.DeepEqual(pools, []string{"p1"}) {
		t.Errorf("a weight of pool p1 changed: %v, %t", pools, ok)
	}
	if _, ok := weight.ChangedSince(nil); ok {
		t.Error("changed since another configuration than the one before")
	}
	service := parse(strings.Replace(text, "ports: [81]", "ports: [8081]", 1))
	if _, ok := service.ChangedSince(weight); ok {
		t.Error("a service changed, and only pools are said to")
	}
	if _, ok := parse(text).ChangedSince(weight); ok {
		t.Error("changed since a configuration that is not the one before")
	}
}

// BenchmarkParserOneWeight10k is a reload of 10,000 services in 500
// pools where one server's weight changed.
func BenchmarkParserOneWeight10k(b *testing.B) {
	text := func(w int) []byte {
		var s strings.Builder
		s.WriteString("node: lb\nservices:\n")
		for i := range 10000 {
			fmt.Fprintf(&s, "  - {name: s%d, vips: [203.0.113.%d], ports: [%d], mark: none, forward: nat, pool: p%d}\n", i, 1+i%250, 1000+i/250, i%500)
		}
		s.WriteString("pools:\n")
		for p := range 500 {
			fmt.Fprintf(&s, "  p%d:\n    servers:\n", p)
			for j := range 4 {
				fmt.Fprintf(&s, "      - {address: 198.51.100.%d, port: %d, weight: %d}\n", 1+(4*p+j)%250, 8000+p, max(1, w*(1-p-j)))
			}
		}
		return []byte(s.String())
	}
	versions := [][]byte{text(1), text(2)}
	var p Parser
	if c, diags := p.Parse("b.yaml", versions[0], Options{}); c == nil {
		b.Fatal(diags)
	}
	i := 1
	for b.Loop() {
		if c, diags := p.Parse("b.yaml", versions[i%2], Options{}); c == nil {
			b.Fatal(diags)
		}
		i++
	}
}
