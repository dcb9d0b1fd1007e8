package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/vishvananda/netns"

	"halb/internal/api"
	"halb/internal/lab/labtest"
	"halb/internal/notify"
	"halb/internal/notify/notifytest"
)

// inNetns runs f on a thread switched into the named network namespace;
// sockets f opens stay there.
func inNetns(name string, f func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return err
	}
	defer orig.Close()
	target, err := netns.GetFromName(name)
	if err != nil {
		return err
	}
	defer target.Close()
	if err := netns.Set(target); err != nil {
		return err
	}
	defer netns.Set(orig)
	return f()
}

// hookReceiver is a webhook endpoint that keeps what it receives.
type hookReceiver struct {
	mu  sync.Mutex
	got []notify.Message
}

func (h *hookReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var m notify.Message
	if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	h.mu.Lock()
	h.got = append(h.got, m)
	h.mu.Unlock()
}

func (h *hookReceiver) messages() []notify.Message {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]notify.Message{}, h.got...)
}

// notifySocket listens as systemd does for sd_notify datagrams.
func notifySocket(t *testing.T) (string, <-chan string) {
	path := filepath.Join(t.TempDir(), "notify.sock")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	out := make(chan string, 64)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			out <- string(buf[:n])
		}
	}()
	return path, out
}

func expectNotify(t *testing.T, ch <-chan string, prefix string, timeout time.Duration) {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case m := <-ch:
			if strings.HasPrefix(m, prefix) {
				return
			}
		case <-deadline:
			t.Fatalf("no %q from halb to systemd within %s", prefix, timeout)
		}
	}
}

// TestKilledBackendIsReported is the operator's view of a failure, end to
// end with real parts: halb (the binary, dry-run data plane) checks three
// real HTTP servers in a network namespace lab; one is killed. Then a real
// MTA holds exactly one mail saying so, the webhook got the same, halb
// events lists it, the metrics show it and the status page in Chromium
// shows it. systemd's notifications are checked on the way.
func TestKilledBackendIsReported(t *testing.T) {
	labtest.RequireTool(t, "busybox", "exim4", "chromium")
	lab := labtest.NewLab(t)
	sw := labtest.Switch(t, lab, "sw")
	lb := labtest.Join(t, lab, sw, "lb", "198.51.100.1/24")
	be := labtest.Join(t, lab, sw, "be", "198.51.100.11/24", "198.51.100.12/24", "198.51.100.13/24")
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()

	// Three real HTTP servers, one per address.
	www := t.TempDir()
	os.WriteFile(filepath.Join(www, "index.html"), []byte("ok\n"), 0o644)
	servers := map[string]*exec.Cmd{}
	for _, last := range []string{"11", "12", "13"} {
		cmd := be.Command(ctx, "busybox", "httpd", "-f", "-p", "198.51.100."+last+":80", "-h", www)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		servers[last] = cmd
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	}

	mta := notifytest.Start(t, lb.Name)
	hooks := &hookReceiver{}
	var hookLn net.Listener
	if err := inNetns(lb.Name, func() (err error) { hookLn, err = net.Listen("tcp", "127.0.0.1:8080"); return err }); err != nil {
		t.Fatal(err)
	}
	hookSrv := &http.Server{Handler: hooks}
	go hookSrv.Serve(hookLn)
	defer hookSrv.Close()

	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "halb.yaml")
	sock := filepath.Join(dir, "halb.sock")
	os.WriteFile(cfgPath, []byte(fmt.Sprintf(`node: lb-a
services:
  - {name: web, vips: [192.0.2.9], ports: [80], forward: nat, pool: www}
pools:
  www:
    check: {type: http, port: 80, path: /index.html, interval: 300ms, timeout: 250ms, rise: 1, fall: 2}
    servers:
      - {address: 198.51.100.11}
      - {address: 198.51.100.12}
      - {address: 198.51.100.13}
api: {metrics: "127.0.0.1:9470"}
notify:
  smtp: {server: "127.0.0.1:%s", from: "halb@lb-a.example.org", to: ["ops@example.org"],
         starttls: required, ca_file: %q, username: halb, password_file: %q}
  webhooks: [{url: "http://127.0.0.1:8080/halb", timeout: 2s}]
  group_wait: 1s
  min_interval: 10s
`, mta.Port, mta.CA, mta.PasswordFile)), 0o644)

	notifyPath, sd := notifySocket(t)
	halb, exited := startDryRun(ctx, t, lb, cfgPath, sock, dir, "NOTIFY_SOCKET="+notifyPath)
	expectNotify(t, sd, "READY=1", 10*time.Second)

	checkedHealthy := func() int {
		out, _ := exec.Command(labtest.HalbBinary(t), "status", "--json", "--socket", sock).Output()
		var st api.Status
		json.Unmarshal(out, &st)
		n := 0
		for _, s := range st.Services {
			for _, srv := range s.Servers {
				if strings.HasPrefix(srv.Reason, "HTTP 200") {
					n++
				}
			}
		}
		return n
	}
	waitFor(t, ctx, "three servers checked healthy", func() bool { return checkedHealthy() == 3 })

	// Kill one backend: fall 2 × interval 300 ms + group_wait 1 s; allow
	// twice that and a second, and more for a loaded machine.
	killed := time.Now()
	servers["12"].Process.Kill()
	mails := mta.Wait(t, "ops", 1, 20*time.Second)
	t.Logf("mail after %s: %s", time.Since(killed).Round(time.Millisecond), mails[0].Subject)
	subject := mails[0].Subject
	if want := "lb-a: 198.51.100.12 DOWN in pool www (HTTP /index.html: connection refused), 2/3 up"; subject != want {
		t.Errorf("subject %q, want %q", subject, want)
	}
	for _, s := range []string{"Pool www now: 2/3 servers up", "198.51.100.12  DOWN", "198.51.100.11  UP", "198.51.100.13  UP",
		"check http 198.51.100.12:80 /index.html", "Services: web tcp 192.0.2.9:80"} {
		if !strings.Contains(mails[0].Body, s) {
			t.Errorf("mail body lacks %q:\n%s", s, mails[0].Body)
		}
	}

	waitFor(t, ctx, "the webhook post", func() bool { return len(hooks.messages()) == 1 })
	if h := hooks.messages()[0]; h.Subject != subject || len(h.Events) != 1 || h.Events[0].Health == nil || h.Events[0].Health.Up {
		t.Errorf("webhook got %q with %+v, want the mail's subject and the DOWN event", h.Subject, h.Events)
	}

	evOut, err := exec.Command(labtest.HalbBinary(t), "events", "--json", "--socket", sock).Output()
	if err != nil {
		t.Fatal(err)
	}
	var evs api.Events
	json.Unmarshal(evOut, &evs)
	found := false
	for _, e := range evs.Events {
		found = found || (e.Health != nil && e.Health.Addr.String() == "198.51.100.12" && !e.Health.Up)
	}
	if !found {
		t.Errorf("halb events lacks the DOWN of 198.51.100.12:\n%s", evOut)
	}

	// Metrics, scraped inside the lab and parsed. The mail counts as sent
	// once halb has its relay's answer to QUIT, which may come after the
	// delivery: scrape until it does.
	var fams map[string]*dto.MetricFamily
	scrape := func() map[string]*dto.MetricFamily {
		var body []byte
		err := inNetns(lb.Name, func() error {
			c, err := net.Dial("tcp", "127.0.0.1:9470")
			if err != nil {
				return err
			}
			defer c.Close()
			fmt.Fprintf(c, "GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
			body, err = io.ReadAll(c)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		_, payload, _ := strings.Cut(string(body), "\r\n\r\n")
		parser := expfmt.NewTextParser(model.UTF8Validation)
		f, err := parser.TextToMetricFamilies(strings.NewReader(payload))
		if err != nil {
			t.Fatalf("metrics: %v", err)
		}
		return f
	}
	smtpName := "smtp 127.0.0.1:" + mta.Port
	waitFor(t, ctx, "the mail counted as sent", func() bool {
		fams = scrape()
		for _, m := range fams["halb_notifications_sent_total"].GetMetric() {
			if m.GetLabel()[0].GetValue() == smtpName && m.GetCounter().GetValue() > 0 {
				return true
			}
		}
		return false
	})
	sample := func(name, label, value string) float64 {
		for _, m := range fams[name].GetMetric() {
			for _, l := range m.Label {
				if l.GetName() == label && l.GetValue() == value {
					return m.GetGauge().GetValue() + m.GetCounter().GetValue()
				}
			}
		}
		t.Errorf("no %s{%s=%q}", name, label, value)
		return -1
	}
	if v := sample("halb_server_up", "address", "198.51.100.12"); v != 0 {
		t.Errorf("halb_server_up for the killed server = %v", v)
	}
	if v := sample("halb_server_up", "address", "198.51.100.11"); v != 1 {
		t.Errorf("halb_server_up for a live server = %v", v)
	}
	if v := sample("halb_server_check_latency_seconds", "address", "198.51.100.11"); v <= 0 || v > 1 {
		t.Errorf("last check latency of a live server = %vs", v)
	}
	if v := sample("halb_notifications_sent_total", "notifier", smtpName); v != 1 {
		t.Errorf("mails sent = %v", v)
	}

	// The status page in a real browser, inside the lab.
	shot := filepath.Join(t.ArtifactDir(), "status-page-killed-backend.png")
	chrome := func(args ...string) string {
		base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
			"--disable-sync", "--no-first-run", "--user-data-dir=" + t.TempDir()}
		out, err := lb.Command(ctx, "chromium", append(base, args...)...).Output()
		if err != nil {
			t.Fatalf("chromium: %v", err)
		}
		return string(out)
	}
	dom := chrome("--dump-dom", "http://127.0.0.1:9470/")
	if !strings.Contains(dom, `data-server="198.51.100.12"`) || !strings.Contains(dom, `<td class="down">DOWN</td>`) ||
		!strings.Contains(dom, "198.51.100.12 DOWN in pool www") {
		t.Errorf("status page DOM does not show the killed server:\n%s", dom)
	}
	chrome("--window-size=1280,800", "--screenshot="+shot, "http://127.0.0.1:9470/")
	if fi, err := os.Stat(shot); err != nil || fi.Size() == 0 {
		t.Errorf("no screenshot: %v", err)
	}

	// Still one mail: the outage was one event.
	time.Sleep(2 * time.Second)
	if n := len(mta.Mailbox(t, "ops")); n != 1 {
		t.Errorf("%d mails for one killed backend, want 1", n)
	}

	// Reload and stop, as systemd would.
	halb.Process.Signal(syscall.SIGHUP)
	expectNotify(t, sd, "RELOADING=1", 10*time.Second)
	expectNotify(t, sd, "READY=1", 10*time.Second)
	halb.Process.Signal(syscall.SIGTERM)
	expectNotify(t, sd, "STOPPING=1", 10*time.Second)
	<-exited
	if !halb.ProcessState.Success() {
		t.Errorf("halb after SIGTERM: %v", halb.ProcessState)
	}
}

// TestFailoverOfSixIsOneMail: a node taking over six VRRP instances at
// once (real VRRP in a lab) sends one mail, not twelve.
func TestFailoverOfSixIsOneMail(t *testing.T) {
	labtest.RequireTool(t, "exim4")
	lab := labtest.NewLab(t)
	sw := labtest.Switch(t, lab, "sw")
	lb := labtest.Join(t, lab, sw, "lb", "192.0.2.2/24")
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	mta := notifytest.Start(t, lb.Name)
	var instances strings.Builder
	for i := 1; i <= 6; i++ {
		fmt.Fprintf(&instances, "    - {name: v%d, interface: eth0, vrid: %d, priority: 100, advert_interval: 100ms, vips: [192.0.2.%d/24]}\n", i, 10+i, 10+i)
	}
	dir := t.TempDir()
	cfgPath, sock := filepath.Join(dir, "halb.yaml"), filepath.Join(dir, "halb.sock")
	os.WriteFile(cfgPath, []byte(fmt.Sprintf(`node: lb-b
vrrp:
  instances:
%snotify:
  smtp: {server: "127.0.0.1:%s", from: "halb@lb-b.example.org", to: ["oncall@example.org"],
         ca_file: %q, username: halb, password_file: %q}
  group_wait: 2s
  min_interval: 30s
`, instances.String(), mta.Port, mta.CA, mta.PasswordFile)), 0o644)
	halb, exited := startDryRun(ctx, t, lb, cfgPath, sock, dir)
	// Alone on the link, the node becomes master of all six after the
	// master-down interval (0.36 s at 100 ms adverts). The first mail
	// carries all six takeovers (checked below), so no later mail can
	// carry one.
	mails := mta.Wait(t, "oncall", 1, 20*time.Second)
	if len(mails) != 1 {
		for _, m := range mails {
			t.Logf("mail: %s", m.Subject)
		}
		t.Fatalf("%d mails for one takeover of six instances, want 1", len(mails))
	}
	t.Logf("the one mail: %s", mails[0].Subject)
	if want := "lb-b: v1, v2, v3 +3 now MASTER"; !strings.HasPrefix(mails[0].Subject, want) {
		t.Errorf("subject %q, want it to start with %q", mails[0].Subject, want)
	}
	for i := 1; i <= 6; i++ {
		if !strings.Contains(mails[0].Body, fmt.Sprintf("v%d (VRID %d): BACKUP -> MASTER", i, 10+i)) {
			t.Errorf("body lacks v%d's takeover:\n%s", i, mails[0].Body)
		}
	}
	halb.Process.Signal(syscall.SIGTERM)
	<-exited
	if !halb.ProcessState.Success() {
		t.Errorf("halb after SIGTERM: %v", halb.ProcessState)
	}
}
