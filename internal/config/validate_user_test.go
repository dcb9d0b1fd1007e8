package config

import (
	"strings"
	"testing"
)

// programs is a configuration with every kind of configured program; the
// placeholders are replaced by each case's user keys.
const programs = `node: lb-a
SCRIPT_USER
vrrp:
  scripts:
    - {name: chk, command: [/bin/true] TRACK_USER}
  instances:
    - name: web-a
      interface: eth0
      vrid: 9
      priority: 150
      vips: [192.0.2.9/24]
      track_scripts: [{name: chk}]
      notify: /usr/local/sbin/vrrp-notify
      NOTIFY_USER
pools:
  www:
    check: {type: exec, command: [/bin/true] CHECK_USER}
    servers:
      - {address: 198.51.100.11}
notify:
  exec: /usr/local/sbin/halb-notify
  EXEC_USER
`

// TestProgramUsers: each program runs as its own user, else script_user;
// none is a located error naming the key, root a located warning.
func TestProgramUsers(t *testing.T) {
	fill := func(scriptUser, track, notify, check, exec string) string {
		return strings.NewReplacer("SCRIPT_USER", scriptUser, "TRACK_USER", track, "NOTIFY_USER", notify,
			"CHECK_USER", check, "EXEC_USER", exec).Replace(programs)
	}
	own := fill("", ", user: halb", "notify_user: halb", ", user: nobody", "exec_user: nobody")
	c, diags := Parse("p.yaml", []byte(own), Options{})
	if c == nil || len(diags) != 0 {
		t.Fatalf("every program with its own user: %v", diags)
	}
	if c.VRRP.Scripts[0].User != "halb" || c.VRRP.Instances[0].NotifyUser != "halb" || c.Pools["www"].Checks[0].User != "nobody" || c.Notify.ExecUser != "nobody" {
		t.Errorf("decoded users: %+v %+v %+v %+v", c.VRRP.Scripts[0], c.VRRP.Instances[0], c.Pools["www"].Checks[0], c.Notify)
	}
	if c, diags := Parse("p.yaml", []byte(fill("script_user: halb", "", "", "", "")), Options{}); c == nil || len(diags) != 0 {
		t.Errorf("every program as script_user: %v", diags)
	}
	_, diags = Parse("p.yaml", []byte(fill("", "", "", "", "")), Options{})
	want := []string{
		"p.yaml:5:7: vrrp.scripts[0]: a tracking script needs user (or the top-level script_user), the user it runs as",
		"p.yaml:13:15: vrrp.instances[0].notify: the notify program needs notify_user (or the top-level script_user), the user it runs as",
		"p.yaml:17:12: pools.www.check[0]: an exec check needs user (or the top-level script_user), the user it runs as",
		"p.yaml:21:9: notify.exec: the notify program needs notify.exec_user (or the top-level script_user), the user it runs as",
	}
	if got := diags.String(); got != strings.Join(want, "\n")+"\n" {
		t.Errorf("no users:\n%s\nwant:\n%s", got, strings.Join(want, "\n")+"\n")
	}
	// Root as written: allowed, with a warning at the key that says so.
	c, diags = Parse("p.yaml", []byte(fill("", ", user: root", "notify_user: root", ", user: root", "exec_user: root")), Options{})
	want = []string{
		"p.yaml:5:48: warning: vrrp.scripts[0].user: root: halb runs a tracking script as root, with every privilege",
		"p.yaml:14:20: warning: vrrp.instances[0].notify_user: root: halb runs the notify program as root, with every privilege",
		"p.yaml:17:54: warning: pools.www.check[0].user: root: halb runs an exec check as root, with every privilege",
		"p.yaml:22:14: warning: notify.exec_user: root: halb runs the notify program as root, with every privilege",
	}
	if got := diags.String(); c == nil || got != strings.Join(want, "\n")+"\n" {
		t.Errorf("own users root:\n%s\nwant:\n%s", got, strings.Join(want, "\n")+"\n")
	}
	_, diags = Parse("p.yaml", []byte(strings.Replace(own, "      notify: /usr/local/sbin/vrrp-notify\n", "", 1)), Options{})
	if want := "p.yaml:13:20: warning: vrrp.instances[0].notify_user: set without notify\n"; diags.String() != want {
		t.Errorf("notify_user alone: %q, want %q", diags, want)
	}
	// A root script_user: one warning naming the programs that use it.
	c, diags = Parse("p.yaml", []byte(fill("script_user: root", "", "notify_user: halb", "", "")), Options{})
	want = []string{"p.yaml:2:14: warning: script_user: root: halb runs vrrp.scripts[0], pools.www.check[0], notify.exec as root, with every privilege"}
	if got := diags.String(); c == nil || got != strings.Join(want, "\n")+"\n" {
		t.Errorf("script_user root:\n%s\nwant:\n%s", got, strings.Join(want, "\n")+"\n")
	}
}

// TestServerExecCheckUser: a server's own exec check needs a user as the
// pool's do.
func TestServerExecCheckUser(t *testing.T) {
	const cfg = `node: lb-a
pools:
  www:
    servers:
      - {address: 198.51.100.11, check: [{type: exec, command: [/bin/true]}]}
`
	_, diags := Parse("s.yaml", []byte(cfg), Options{})
	want := "s.yaml:5:42: pools.www.servers[0].check[0]: an exec check needs user (or the top-level script_user), the user it runs as\n"
	if got := diags.String(); got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
	if _, diags := Parse("s.yaml", []byte("script_user: nobody\n"+cfg), Options{}); len(diags) != 0 {
		t.Errorf("with script_user: %v", diags)
	}
}
