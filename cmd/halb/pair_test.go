package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestValidateExamplePairs: each example pair is valid as a pair, and
// says so on stdout.
func TestValidateExamplePairs(t *testing.T) {
	for _, p := range []string{"minimal", "nat-gateway", "site-lb"} {
		a, b := "../../examples/"+p+"-a.yaml", "../../examples/"+p+"-b.yaml"
		code, out, errOut := halbCmd(t, "validate", a, b)
		want := a + ": valid (0 warnings)\n" + b + ": valid (0 warnings)\n" + a + " and " + b + ": a valid pair (0 warnings)\n"
		if code != 0 || out != want || errOut != "" {
			t.Errorf("halb validate %s %s: exit %d\nstdout %q\nstderr %q", a, b, code, out, errOut)
		}
	}
}

// TestValidateBrokenPair: two files each valid alone, but not as the two
// nodes of a pair: every difference that splits a pair's brain or
// changes where packets go is reported, located, naming the other
// file's value.
func TestValidateBrokenPair(t *testing.T) {
	dir := t.TempDir()
	const a = `node: lb-a
vrrp:
  instances:
    - {name: web-a, interface: eth0, vrid: 9, priority: 150, vips: [192.0.2.9/24, 192.0.2.49/24]}
    - {name: web-b, interface: eth0, vrid: 10, priority: 100, vips: [192.0.2.10/24]}
    - {name: only-a, interface: eth0, vrid: 11, priority: 100, vips: [192.0.2.11/24]}
services:
  - {name: web, vips: [192.0.2.9, 192.0.2.10], ports: [80], mark: shared, scheduler: wlc, forward: dr, pool: www}
  - {name: dns, protocol: udp, vips: [192.0.2.49], ports: [53], forward: nat, pool: www, maglev_size: 251}
pools:
  www:
    servers: [{address: 198.51.100.11, weight: 1}, {address: 198.51.100.12, weight: 1}]
`
	b := strings.NewReplacer(
		"node: lb-a", "node: lb-b",
		"vrid: 9, priority: 150, vips: [192.0.2.9/24, 192.0.2.49/24]", "vrid: 19, priority: 100, vips: [192.0.2.9/24]",
		"vrid: 10, priority: 100", "vrid: 10, priority: 100",
		"    - {name: only-a, interface: eth0, vrid: 11, priority: 100, vips: [192.0.2.11/24]}\n", "",
		"mark: shared, scheduler: wlc", "mark: per-vip, scheduler: rr",
		"maglev_size: 251", "maglev_size: 257",
		"{address: 198.51.100.12, weight: 1}", "{address: 198.51.100.12, weight: 2}",
	).Replace(a)
	fa, fb := filepath.Join(dir, "lb-a.yaml"), filepath.Join(dir, "lb-b.yaml")
	os.WriteFile(fa, []byte(a), 0o644)
	os.WriteFile(fb, []byte(b), 0o644)
	code, out, errOut := halbCmd(t, "validate", fa, fb)
	if code != 1 || !strings.Contains(out, fa+" and "+fb+": NOT a valid pair (8 errors)") {
		t.Errorf("exit %d, stdout:\n%s", code, out)
	}
	want := []string{
		fb + `:4:44: vrrp.instances[0].vrid: VRID 19 here but 9 in ` + fa,
		fb + `:4:69: vrrp.instances[0].vips: VIPs [192.0.2.9/24] here but [192.0.2.9/24 192.0.2.49/24] in ` + fa,
		fb + `:5:58: vrrp.instances[1].priority: 100 on both nodes, and both preempt`,
		fa + `:6:7: vrrp.instances[2]: VRRP instance "only-a" is not in ` + fb,
		fb + `:7:67: services[0].mark: mark per-vip here but shared in ` + fa,
		fb + `:7:87: services[0].scheduler: scheduler rr here but wlc in ` + fa,
		fb + `:8:103: services[1].maglev_size: Maglev table size 257 here but 251 in ` + fa,
		fb + `:11:14: pools.www.servers: [198.51.100.11:0 weight 1, 198.51.100.12:0 weight 2] here but ` +
			`[198.51.100.11:0 weight 1, 198.51.100.12:0 weight 1] in ` + fa,
	}
	for _, w := range want {
		if !strings.Contains(errOut, w) {
			t.Errorf("stderr lacks %q:\n%s", w, errOut)
		}
	}
	// A file is not its own pair; one file alone is not checked as one.
	if code, _, errOut := halbCmd(t, "validate", fa, fa); code != 1 || !strings.Contains(errOut, `node: both files are node "lb-a"`) {
		t.Errorf("a file paired with itself: exit %d, %s", code, errOut)
	}
	if code, out, _ := halbCmd(t, "validate", fb); code != 0 || out != fb+": valid (1 warnings)\n" {
		t.Errorf("one file: exit %d, %q", code, out)
	}
}
