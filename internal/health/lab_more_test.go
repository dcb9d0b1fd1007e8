package health

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"halb/internal/lab/labtest"
	ns "halb/internal/lab/netns"
)

// daemon runs a server in the backend namespace until the test ends.
type daemon struct {
	t    *testing.T
	name string
	cmd  *exec.Cmd
	out  *strings.Builder
	done chan struct{}
}

func startDaemon(t *testing.T, h *ns.Host, name string, args ...string) *daemon {
	t.Helper()
	labtest.RequireTool(t, name)
	d := &daemon{t: t, name: name, out: &strings.Builder{}, done: make(chan struct{})}
	d.cmd = h.Command(context.Background(), name, args...)
	d.cmd.Stdout, d.cmd.Stderr = d.out, d.out
	// Its own process group, so that kill takes forked children too.
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	go func() { d.cmd.Wait(); close(d.done) }()
	t.Cleanup(d.kill)
	return d
}

func (d *daemon) kill() {
	if d.cmd == nil {
		return
	}
	syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-d.done:
	case <-time.After(5 * time.Second):
		d.t.Errorf("%s did not exit after SIGKILL", d.name)
	}
	d.cmd = nil
}

const eximConf = `primary_hostname = mx.example.org
exim_user = Debian-exim
exim_group = Debian-exim
spool_directory = DIR/spool
log_file_path = DIR/%slog
pid_file_path = DIR/exim.pid
daemon_smtp_ports = 2525 : 2526
host_lookup =
rfc1413_hosts =
rfc1413_query_timeout = 0s
tls_advertise_hosts =
local_interfaces = 198.51.100.11
acl_smtp_connect = acl_connect
acl_smtp_helo = acl_helo
begin acl
acl_connect:
  deny message = maintenance, come back later
       condition = ${if eq{$received_port}{2526}}
  accept
acl_helo:
  deny message = no such client
       condition = ${if eq{$sender_helo_name}{bad.example.org}}
  accept
`

// startExim runs a real Exim on 198.51.100.11: port 2525 takes mail,
// port 2526 refuses every connection, and HELO bad.example.org is refused.
func (r *rig) startExim() *daemon {
	labtest.RequireTool(r.t, "exim4")
	u, err := user.Lookup("Debian-exim")
	if err != nil {
		r.t.Fatalf("exim's user: %v (package exim4-daemon-light creates it)", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	dir, err := os.MkdirTemp("", "halb-health-exim-")
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { os.RemoveAll(dir) })
	os.MkdirAll(filepath.Join(dir, "spool"), 0o750)
	for _, p := range []string{dir, filepath.Join(dir, "spool")} {
		os.Chown(p, uid, gid)
	}
	conf := filepath.Join(dir, "exim.conf")
	if err := os.WriteFile(conf, []byte(strings.ReplaceAll(eximConf, "DIR", dir)), 0o644); err != nil {
		r.t.Fatal(err)
	}
	d := startDaemon(r.t, r.be, "exim4", "-C", conf, "-bdf")
	waitListening(r.t, r.be, "198.51.100.11:2525", d.done, func() string {
		log, _ := os.ReadFile(filepath.Join(dir, "paniclog"))
		return d.out.String() + string(log)
	})
	return d
}

// TestLabOtherCheckers runs smtp (Exim), dns (dnsmasq), udp (socat echo),
// ping and exec checks against real servers and processes, each case a
// transition from the opposite initial state, and then kills the servers
// and checks that the checks notice, with the reason.
func TestLabOtherCheckers(t *testing.T) {
	r := newRig(t)
	exim := r.startExim()
	dnsmasq := startDaemon(t, r.be, "dnsmasq", "--no-daemon", "--no-resolv", "--no-hosts", "--bind-interfaces",
		"--listen-address=198.51.100.11", "--except-interface=lo", "--user=nobody", "--group=nogroup", "--pid-file=",
		"--local=/example.org/", "--address=/www.example.org/198.51.100.21", "--address=/www.example.org/2001:db8:1::21",
		"--txt-record=example.org,v=halb-ok", "--cname=alias.example.org,www.example.org")
	waitListening(t, r.be, "198.51.100.11:53", dnsmasq.done, dnsmasq.out.String)
	socat := startDaemon(t, r.be, "socat", "UDP4-RECVFROM:7,bind=198.51.100.11,fork", "PIPE")

	// The script must be reachable by nobody: not under t.TempDir (0700).
	dir, err := os.MkdirTemp("", "halb-health-exec-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	script := filepath.Join(dir, "check.sh")
	os.WriteFile(script, []byte(`#!/bin/sh
test "$(id -un)" = nobody || { echo "running as $(id -un), not nobody"; exit 2; }
test "$HALB_CHECK_ADDRESS" = 198.51.100.11 || { echo "HALB_CHECK_ADDRESS=$HALB_CHECK_ADDRESS"; exit 3; }
case "$1" in
weight) echo 7 ;;
fail) echo "backend says no"; exit 1 ;;
sleep) sleep 5 ;;
esac
`), 0o755)

	timing := "interval: 2s, timeout: 1500ms, rise: 1, fall: 1"
	cases := []struct {
		pool, check string
		up          bool
		reason      string
	}{
		{"smtp", `{type: smtp, port: 2525, helo_name: lb.example.org}`, true, "SMTP 198.51.100.11:2525: banner and EHLO lb.example.org accepted"},
		{"smtpbanner", `{type: smtp, port: 2526}`, false, "SMTP 198.51.100.11:2526: banner refused: 55"},
		{"smtphelo", `{type: smtp, port: 2525, helo_name: bad.example.org}`, false, "SMTP 198.51.100.11:2525: EHLO bad.example.org refused: 550"},
		{"httpsmtp", `{type: http, port: 2525, path: /}`, false, `HTTP 198.51.100.11:2525 /: response: malformed status line "220 `},
		{"dnsa", `{type: dns, port: 53, query: www.example.org, expect: 198.51.100.21}`, true, "DNS A www.example.org from 198.51.100.11:53/udp: 198.51.100.21"},
		{"dnsaaaa", `{type: dns, port: 53, query: www.example.org, query_type: AAAA, tcp: true}`, true, "DNS AAAA www.example.org from 198.51.100.11:53/tcp: 2001:db8:1::21"},
		{"dnstxt", `{type: dns, port: 53, query: example.org, query_type: TXT, expect: v=halb-ok}`, true, "v=halb-ok"},
		{"dnscname", `{type: dns, port: 53, query: alias.example.org, query_type: CNAME, expect: www.example.org}`, true, "www.example.org."},
		{"dnswrong", `{type: dns, port: 53, query: www.example.org, expect: 198.51.100.99}`, false, "answer 198.51.100.21, expected 198.51.100.99"},
		{"nxdomain", `{type: dns, port: 53, query: nope.example.org}`, false, "DNS A nope.example.org from 198.51.100.11:53/udp: NXDOMAIN"},
		{"udpecho", `{type: udp, port: 7, payload: "hello halb", expect_reply: "halb"}`, true, "UDP 198.51.100.11:7: reply of 10 bytes"},
		{"udpwrong", `{type: udp, port: 7, payload: "hello", expect_reply: "pong"}`, false, `UDP 198.51.100.11:7: reply "hello" does not contain "pong"`},
		{"udpopen", `{type: udp, port: 7, payload: "x", no_icmp_unreachable: true}`, true, "UDP 198.51.100.11:7"},
		{"udpclosed", `{type: udp, port: 9, payload: "x", no_icmp_unreachable: true}`, false, "UDP 198.51.100.11:9: ICMP port unreachable"},
		{"ping", `{type: ping}`, true, "ping 198.51.100.11: echo reply"},
		{"ping6", `{type: ping, connect_address: "2001:db8:1::11"}`, true, "ping 2001:db8:1::11: echo reply"},
		{"pingnone", `{type: ping, connect_address: 198.51.100.99}`, false, "ping 198.51.100.99: "},
		{"exec", fmt.Sprintf(`{type: exec, command: [%s], user: nobody}`, script), true, "exec check.sh: exit status 0"},
		{"execweight", fmt.Sprintf(`{type: exec, command: [%s, weight], user: nobody}`, script), true, "exec check.sh: exit status 0, weight 7"},
		{"execfail", fmt.Sprintf(`{type: exec, command: [%s, fail], user: nobody}`, script), false, "exec check.sh: exit status 1: backend says no"},
		{"exectimeout", fmt.Sprintf(`{type: exec, command: [%s, sleep], user: nobody}`, script), false, "exec check.sh: timeout after 1.5s, killed"},
		{"mark", `{type: tcp, port: 2525, fwmark: 7, source: 198.51.100.1}`, true, "TCP connect to 198.51.100.11:2525"},
		{"device", `{type: tcp, port: 2525, source: eth0}`, true, "TCP connect to 198.51.100.11:2525"},
		{"nodevice", `{type: tcp, port: 2525, source: eth9}`, false, "binding to interface eth9"},
		{"markdrop", `{type: tcp, port: 2525, fwmark: 9}`, false, "TCP 198.51.100.11:2525: connect timeout after 1.5s"},
		{"badsource", `{type: tcp, port: 2525, source: 198.51.100.77}`, false, "cannot assign requested address"},
	}
	// Several udp and dns checks to one host draw ICMP port unreachables
	// from it: lift the kernel's rate limit (one a second by default), or
	// some checks see silence instead.
	r.run(r.be, "sysctl", "-q", "-w", "net.ipv4.icmp_ratelimit=0", "net.ipv6.icmp.ratelimit=0")
	// Packets marked 9 are dropped on their way out: only a socket that
	// really carries the mark is affected.
	r.run(r.lb, "nft", "add table inet halbtest; add chain inet halbtest out { type filter hook output priority 0; policy accept; }; add rule inet halbtest out meta mark 9 drop")
	var b strings.Builder
	b.WriteString("pools:\n")
	for _, c := range cases {
		initial := "down"
		if !c.up {
			initial = "up"
		}
		check := strings.TrimSuffix(c.check, "}") + ", " + timing + "}"
		fmt.Fprintf(&b, "  %s:\n    initial_state: %s\n    check: %s\n    servers: [{address: 198.51.100.11}]\n", c.pool, initial, check)
	}
	rec := r.check(parse(t, b.String()))
	for _, c := range cases {
		ev, _ := rec.wait(0, c.pool, c.up, 8*time.Second)
		t.Logf("%-12s %s: %s", c.pool, upText(ev.Up), ev.Reason)
		if !strings.Contains(ev.Reason, c.reason) {
			t.Errorf("pool %s: reason %q does not contain %q", c.pool, ev.Reason, c.reason)
		}
		if c.pool == "execweight" && ev.Weight != 7 {
			t.Errorf("exec weight: event weight %d, want 7", ev.Weight)
		}
	}

	// Now the servers die: each check that was up must go down, saying why.
	from := rec.mark()
	exim.kill()
	dnsmasq.kill()
	socat.kill()
	downs := map[string]string{
		"smtp":    "SMTP 198.51.100.11:2525: connection refused",
		"dnsa":    "DNS A www.example.org from 198.51.100.11:53/udp: ICMP port unreachable",
		"dnsaaaa": "DNS AAAA www.example.org from 198.51.100.11:53/tcp: connection refused",
		"udpecho": "UDP 198.51.100.11:7: ICMP port unreachable",
	}
	waitDown(t, rec, from, downs)
	// The host goes off the network: ping notices.
	from = rec.mark()
	r.run(r.be, "ip", "link", "set", "eth0", "down")
	waitDown(t, rec, from, map[string]string{"ping": "ping 198.51.100.11: no echo reply within 1.5s"})
}

func waitDown(t *testing.T, rec *recorder, from int, reasons map[string]string) {
	t.Helper()
	for pool, reason := range reasons {
		ev, _ := rec.wait(from, pool, false, 8*time.Second)
		t.Logf("%-12s %s: %s", pool, upText(ev.Up), ev.Reason)
		// A check in flight when the server died may have timed out
		// instead; the status shows the following checks' reason.
		got := ev.Reason
		for deadline := time.Now().Add(8 * time.Second); got != reason && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			for _, st := range rec.c.Status() {
				if st.Pool == pool {
					got = st.Last.Detail
				}
			}
		}
		if got != reason {
			t.Errorf("pool %s: reason %q, want %q", pool, got, reason)
		}
	}
}
