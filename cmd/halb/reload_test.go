package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"halb/internal/api"
	"halb/internal/lab/labtest"
	"halb/internal/lab/netns"
	"halb/internal/notify"
)

// getIn sends a GET for path to addr from inside a namespace and returns
// the body of a 200 answer.
func getIn(ns, addr, path string) (string, error) {
	var body []byte
	err := inNetns(ns, func() error {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(c, "GET %s HTTP/1.0\r\nHost: x\r\n\r\n", path)
		body, err = io.ReadAll(c)
		return err
	})
	if err != nil {
		return "", err
	}
	head, payload, _ := strings.Cut(string(body), "\r\n\r\n")
	if !strings.HasPrefix(head, "HTTP/1.0 200") && !strings.HasPrefix(head, "HTTP/1.1 200") {
		return "", fmt.Errorf("GET %s: %s", path, strings.SplitN(head, "\r\n", 2)[0])
	}
	return payload, nil
}

// hasReload tells whether a message reports a reload, applied or refused.
func hasReload(ms []notify.Message, applied bool) bool {
	for _, m := range ms {
		for _, e := range m.Events {
			if e.Kind == "reload" && e.Reload != nil && (len(e.Reload.Errors) == 0) == applied {
				return true
			}
		}
	}
	return false
}

// TestReloadMovesNotifiersAndMetrics runs the halb binary (dry-run data
// plane) in a lab namespace, checking two servers that refuse
// connections. A SIGHUP with a new webhook URL, a new api.metrics address
// and one server less: the reload's event goes to the new receiver and
// not the old, the new address serves /metrics and the old one is
// closed, and the removed server's series are gone from the scrape. A
// change that needs a restart is refused, with an event.
func TestReloadMovesNotifiersAndMetrics(t *testing.T) {
	lab := labtest.NewLab(t)
	sw := labtest.Switch(t, lab, "sw")
	lb := labtest.Join(t, lab, sw, "lb", "198.51.100.1/24")
	labtest.Join(t, lab, sw, "be", "198.51.100.11/24", "198.51.100.12/24") // nothing listens: checks fail
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()

	// Two webhook receivers in the lab namespace.
	var hooks [2]*hookReceiver
	var urls [2]string
	for i := range hooks {
		hooks[i] = &hookReceiver{}
		var ln net.Listener
		if err := inNetns(lb.Name, func() (err error) { ln, err = net.Listen("tcp", "127.0.0.1:0"); return err }); err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: hooks[i]}
		go srv.Serve(ln)
		t.Cleanup(func() { srv.Close() })
		urls[i] = "http://" + ln.Addr().String() + "/halb"
	}
	const oldMetrics, newMetrics = "127.0.0.1:9471", "127.0.0.1:9472"
	config := func(hook, metrics, servers, table string) string {
		return fmt.Sprintf(`node: lb-a
services:
  - {name: web, vips: [192.0.2.9], ports: [80], forward: nat, pool: www}
pools:
  www:
    check: {type: tcp, port: 80, interval: 200ms, timeout: 150ms, rise: 1, fall: 1}
    servers: [%s]
notify:
  webhooks: [{url: %q, timeout: 2s}]
  group_wait: 100ms
  min_interval: 100ms
nftables: {table: %s}
api: {metrics: %q}
`, servers, hook, table, metrics)
	}
	both := "{address: 198.51.100.11}, {address: 198.51.100.12}"
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "halb.yaml")
	sock := filepath.Join(dir, "halb.sock")
	os.WriteFile(cfgPath, []byte(config(urls[0], oldMetrics, both, "halb")), 0o644)
	halb, _ := startDryRun(ctx, t, lb, cfgPath, sock, dir)
	series := func(addr, name, server string) bool {
		body, err := getIn(lb.Name, addr, "/metrics")
		if err != nil {
			return false
		}
		for _, line := range strings.Split(body, "\n") {
			if strings.HasPrefix(line, name+"{") && strings.Contains(line, `address="`+server+`"`) {
				return true
			}
		}
		return false
	}
	// Both servers fail their checks: their DOWN goes to the first
	// receiver, and both have series.
	waitFor(t, ctx, "the DOWN events at the first receiver", func() bool { return len(hooks[0].messages()) > 0 })
	waitFor(t, ctx, "series of both servers", func() bool {
		return series(oldMetrics, "halb_server_transitions_total", "198.51.100.12") &&
			series(oldMetrics, "halb_server_checks_total", "198.51.100.12") &&
			series(oldMetrics, "halb_server_transitions_total", "198.51.100.11")
	})

	// A change only a restart applies is refused, with an event.
	client := api.NewClient(sock)
	os.WriteFile(cfgPath, []byte(config(urls[1], newMetrics, "{address: 198.51.100.11}", "other")), 0o644)
	halb.Process.Signal(syscall.SIGHUP)
	waitFor(t, ctx, "the refused reload in the events", func() bool {
		evs, _ := client.Events(ctx, 0)
		return len(evs) > 0 && strings.Contains(fmt.Sprint(evs[len(evs)-1].Summary, evs[len(evs)-1].Reload), "nftables: changed; restart halb")
	})
	if _, err := getIn(lb.Name, oldMetrics, "/metrics"); err != nil {
		t.Fatalf("a refused reload moved the metrics listener: %v", err)
	}
	waitFor(t, ctx, "the refused reload at the first receiver", func() bool { return hasReload(hooks[0].messages(), false) })

	// The good reload: new receiver, new address, one server less.
	before := len(hooks[0].messages())
	os.WriteFile(cfgPath, []byte(config(urls[1], newMetrics, "{address: 198.51.100.11}", "halb")), 0o644)
	halb.Process.Signal(syscall.SIGHUP)
	waitFor(t, ctx, "the reload's event at the new receiver", func() bool { return hasReload(hooks[1].messages(), true) })
	if got := hooks[0].messages()[before:]; hasReload(got, true) {
		t.Errorf("the old receiver got the reload that replaced it: %+v", got)
	}
	waitFor(t, ctx, "/metrics on the new address", func() bool {
		_, err := getIn(lb.Name, newMetrics, "/metrics")
		return err == nil
	})
	if _, err := getIn(lb.Name, oldMetrics, "/metrics"); err == nil {
		t.Error("the old metrics address still answers")
	}
	if _, err := getIn(lb.Name, newMetrics, "/"); err != nil {
		t.Errorf("status page on the new address: %v", err)
	}
	for _, name := range []string{"halb_server_transitions_total", "halb_server_checks_total", "halb_server_up"} {
		if series(newMetrics, name, "198.51.100.12") {
			t.Errorf("%s still has the removed server 198.51.100.12", name)
		}
		if !series(newMetrics, name, "198.51.100.11") {
			t.Errorf("%s lost the remaining server 198.51.100.11", name)
		}
	}
	// Events from then on go to the new receiver only.
	n0, n1 := len(hooks[0].messages()), len(hooks[1].messages())
	os.WriteFile(cfgPath, []byte(config(urls[1], newMetrics, "{address: 198.51.100.11, weight: 3}", "halb")), 0o644)
	halb.Process.Signal(syscall.SIGHUP)
	waitFor(t, ctx, "the next reload's event at the new receiver", func() bool { return len(hooks[1].messages()) > n1 })
	if n := len(hooks[0].messages()); n != n0 {
		t.Errorf("the old receiver got %d more messages", n-n0)
	}
}

// startDryRun runs "halb run --dataplane none" with cfgPath in host h,
// its log in dir, env added to its environment. It is killed when the
// test ends, and its log shown if the test failed; exited closes when it
// exits.
func startDryRun(ctx context.Context, t *testing.T, h *netns.Host, cfgPath, sock, dir string, env ...string) (halb *exec.Cmd, exited <-chan struct{}) {
	t.Helper()
	halb = h.Command(ctx, labtest.HalbBinary(t), "run", "--config", cfgPath, "--dataplane", "none", "--socket", sock)
	if len(env) > 0 {
		halb.Env = append(os.Environ(), env...)
	}
	logf, err := os.Create(filepath.Join(dir, "halb.log"))
	if err != nil {
		t.Fatal(err)
	}
	halb.Stdout, halb.Stderr = logf, logf
	if err := halb.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { halb.Wait(); close(done) }()
	t.Cleanup(func() {
		halb.Process.Kill()
		<-done
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "halb.log"))
			t.Logf("halb log:\n%s", b)
		}
	})
	return halb, done
}
