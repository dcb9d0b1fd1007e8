package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"halb/internal/api"
	"halb/internal/event"
	"halb/internal/lab/labtest"
	"halb/internal/notify"
)

// schema compiles one of the JSON Schemas under docs/schema, formats
// (date-time, ipv4, ipv6) asserted.
func schema(t *testing.T, name string) *jsonschema.Schema {
	t.Helper()
	path, err := filepath.Abs(filepath.Join("..", "..", "docs", "schema", name))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	s, err := c.Compile(path)
	if err != nil {
		t.Fatalf("schema %s: %v", name, err)
	}
	return s
}

// conforms fails the test unless doc validates against s.
func conforms(t *testing.T, s *jsonschema.Schema, what string, doc []byte) {
	t.Helper()
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		t.Fatalf("%s is not JSON: %v\n%s", what, err, doc)
	}
	if err := s.Validate(inst); err != nil {
		t.Errorf("%s does not conform to %s:\n%v\n%s", what, s.Location, err, doc)
	}
}

// TestSchemaRejects: the schemas are strict enough to catch what the
// public contract forbids — an untagged Go field, a null list, a
// duration in nanoseconds, a detail object of the wrong kind.
func TestSchemaRejects(t *testing.T) {
	evs := schema(t, "events.schema.json")
	for _, bad := range []string{
		`{"schema_version":1,"events":null}`,
		`{"schema_version":2,"events":[]}`,
		`{"schema_version":1,"events":[{"seq":1,"at":"2026-01-02T03:04:05Z","node":"a","kind":"dataplane","summary":"s","dataplane":{"At":"2026-01-02T03:04:05Z","error":"e"}}]}`,
		`{"schema_version":1,"events":[{"seq":1,"at":"2026-01-02T03:04:05Z","node":"a","kind":"dataplane","summary":"s","dataplane":{"at":"2026-01-02T03:04:05Z","error":"e"},"quorum":null}]}`,
		`{"schema_version":1,"events":[{"seq":1,"at":"2026-01-02T03:04:05Z","node":"a","kind":"health","summary":"s","dataplane":{"at":"2026-01-02T03:04:05Z","error":"e"}}]}`,
		`{"schema_version":1,"events":[{"seq":1,"at":"2026-01-02T03:04:05Z","node":"a","kind":"reload","summary":"s","reload":{"at":"2026-01-02T03:04:05Z","file":"f","applied":true,"changes":null,"errors":[]}}]}`,
		`{"schema_version":1,"events":[{"seq":1,"at":"yesterday","node":"a","kind":"dataplane","summary":"s","dataplane":{"at":"2026-01-02T03:04:05Z","error":"e"}}]}`,
	} {
		inst, err := jsonschema.UnmarshalJSON(strings.NewReader(bad))
		if err != nil {
			t.Fatal(err)
		}
		if evs.Validate(inst) == nil {
			t.Errorf("the events schema accepts %s", bad)
		}
	}
	health := event.Health{At: time.Now(), Pool: "p", Addr: netip.MustParseAddr("198.51.100.1"), Latency: 1961287}
	inst, _ := jsonschema.UnmarshalJSON(strings.NewReader(fmt.Sprintf(`{"schema_version":1,"events":[{"seq":1,"at":"2026-01-02T03:04:05Z","node":"a","kind":"health","summary":"s","health":{"at":"2026-01-02T03:04:05Z","pool":"p","address":"198.51.100.1","port":0,"check":"","up":true,"weight":1,"reason":"","consecutive":1,"latency_ms":1.9,"Latency":%d}}]}`, health.Latency)))
	if evs.Validate(inst) == nil {
		t.Error("the events schema accepts a latency in nanoseconds")
	}
}

// TestEveryEventKindConforms: one event of each kind, as the status
// socket serves it, conforms to the events schema, keeps "<" as is, and
// reads back as it was.
func TestEveryEventKindConforms(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC)
	recs := []event.Record{
		{Kind: "vrrp", Summary: "web-a now MASTER", VRRP: &event.VRRP{At: at, Instance: "web-a", VRID: 9, Interface: "eth0",
			Old: "BACKUP", New: "MASTER", Priority: 150, EffectivePriority: 140, Reason: "master down timer expired"}},
		{Kind: "health", Summary: "198.51.100.12 DOWN", Health: &event.Health{At: at, Pool: "www", Addr: netip.MustParseAddr("2001:db8::12"),
			Port: 8080, Check: "http :80 /healthz", Weight: -1, Reason: "HTTP 503 <html>, 3rd failure in a row", Consecutive: 3, Latency: 1961 * time.Microsecond}},
		{Kind: "quorum", Summary: "pool www lost its quorum", Quorum: &event.Quorum{At: at, Pool: "www", HealthyWeight: 1, Quorum: 2, SorryActive: true}},
		{Kind: "reload", Summary: "reload refused", Reload: &event.Reload{At: at, File: "/etc/halb/halb.yaml", Errors: []string{"x: bad"}}},
		{Kind: "reload", Summary: "reloaded", Reload: &event.Reload{At: at, File: "/etc/halb/halb.yaml", Applied: true}},
		{Kind: "dataplane", Summary: "data plane update failed", Dataplane: &event.DataplaneError{At: at, Err: "netlink: <busy>"}},
		{Kind: "dataplane_restored", Summary: "data plane restored", Restored: &event.Restored{At: at, Reason: "table halb changed by nft (pid 42)", Changes: 12}},
	}
	for i := range recs {
		recs[i].Seq, recs[i].At, recs[i].Node = uint64(i+1), at, "lb-a"
	}
	srv := httptest.NewServer(api.Handler(
		func(context.Context) (api.Status, error) { return api.Status{}, nil },
		func(context.Context, int) ([]event.Record, error) { return recs, nil }, nil))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/events")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	conforms(t, schema(t, "events.schema.json"), "every kind of event", body)
	if !bytes.Contains(body, []byte("HTTP 503 <html>")) || !bytes.Contains(body, []byte(`"latency_ms": 1.961`)) {
		t.Errorf("HTML escaped or latency not in ms:\n%s", body)
	}
	var back api.Events
	if err := json.Unmarshal(body, &back); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(back.Events[1].Health) != fmt.Sprint(recs[1].Health) {
		t.Errorf("a health event reads back as %+v, want %+v", back.Events[1].Health, recs[1].Health)
	}

	// The notify program's input carries an event too.
	in, err := event.Marshal(notify.HookInput{SchemaVersion: event.SchemaVersion, Args: []string{"INSTANCE", "web-a", "MASTER", "150"}, Event: recs[0],
		Instance: &api.Instance{Name: "web-a", VRID: 9, State: "MASTER", Since: at, VIPs: []string{}}})
	if err != nil {
		t.Fatal(err)
	}
	conforms(t, schema(t, "webhook.schema.json#/$defs/program_input"), "a notify program's input", in)
}

// rawHooks keeps the bodies a webhook receives, as they came.
type rawHooks struct {
	mu     sync.Mutex
	bodies [][]byte
}

func (h *rawHooks) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	h.mu.Lock()
	h.bodies = append(h.bodies, b)
	h.mu.Unlock()
}

func (h *rawHooks) all() [][]byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.bodies)
}

// TestRealOutputConformsToTheSchemas runs the halb binary (dry-run data
// plane) in a lab namespace with a VRRP instance, a pool that loses one
// of its two servers and its quorum, a port range and a webhook, and
// reloads it twice (refused, applied). What `halb status --json` and
// `halb events --json` print and every webhook body conform to the
// schemas under docs/schema.
func TestRealOutputConformsToTheSchemas(t *testing.T) {
	lab := labtest.NewLab(t)
	sw := labtest.Switch(t, lab, "sw")
	lb := labtest.Join(t, lab, sw, "lb", "198.51.100.1/24")
	be := labtest.Join(t, lab, sw, "be", "198.51.100.11/24", "198.51.100.12/24")
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()

	var backend net.Listener // .12 answers, .11 refuses
	if err := inNetns(be.Name, func() (err error) { backend, err = net.Listen("tcp", "198.51.100.12:80"); return err }); err != nil {
		t.Fatal(err)
	}
	defer backend.Close()
	go func() {
		for {
			c, err := backend.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	hooks := &rawHooks{}
	var hookLn net.Listener
	if err := inNetns(lb.Name, func() (err error) { hookLn, err = net.Listen("tcp", "127.0.0.1:0"); return err }); err != nil {
		t.Fatal(err)
	}
	hookSrv := &http.Server{Handler: hooks}
	go hookSrv.Serve(hookLn)
	defer hookSrv.Close()

	config := func(weight string) string {
		return fmt.Sprintf(`node: lb-a
vrrp:
  instances:
    - {name: web-a, interface: eth0, vrid: 9, priority: 150, advert_interval: 100ms, vips: [192.0.2.9/24]}
services:
  - {name: web, vips: [192.0.2.9], ports: [80], forward: nat, pool: www}
  - {name: ftp, vips: [192.0.2.9], ports: ["10000-10100"], mark: per-vip, forward: nat, pool: www}
pools:
  www:
    quorum: 2
    check: {type: tcp, port: 80, interval: 200ms, timeout: 150ms, rise: 1, fall: 1}
    servers: [{address: 198.51.100.11, weight: %s}, {address: 198.51.100.12, port: 80}]
notify:
  webhooks: [{url: "http://%s/halb", timeout: 2s}]
  group_wait: 100ms
  min_interval: 100ms
`, weight, hookLn.Addr())
	}
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "halb.yaml")
	sock := filepath.Join(dir, "halb.sock")
	os.WriteFile(cfgPath, []byte(config("1")), 0o644)
	halb, _ := startDryRun(ctx, t, lb, cfgPath, sock, dir)
	client := api.NewClient(sock)
	kinds := func() map[string]int {
		evs, _ := client.Events(ctx, 0)
		out := map[string]int{}
		for _, e := range evs {
			out[e.Kind]++
		}
		return out
	}
	waitFor(t, ctx, "MASTER, health and quorum events", func() bool {
		k := kinds()
		st, err := client.Status(ctx)
		return err == nil && st.VRRP[0].State == "MASTER" && k["health"] > 1 && k["quorum"] > 0
	})
	// A follower from here on sees the reloads, a document a line.
	follower := exec.Command(labtest.HalbBinary(t), "events", "--follow", "--json", "-n", "1", "--socket", sock)
	out, err := follower.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := follower.Start(); err != nil {
		t.Fatal(err)
	}
	defer follower.Process.Kill()
	followed := make(chan string, 100)
	go func() {
		defer close(followed)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			followed <- sc.Text()
		}
	}()
	lines := []string{<-followed} // following
	os.WriteFile(cfgPath, []byte(config("-3")), 0o644)
	halb.Process.Signal(syscall.SIGHUP)
	waitFor(t, ctx, "the refused reload", func() bool { return kinds()["reload"] == 1 })
	refused, err := exec.Command(labtest.HalbBinary(t), "status", "--json", "--socket", sock).Output()
	if err != nil {
		t.Fatalf("halb status --json: %v", err)
	}
	conforms(t, schema(t, "status.schema.json"), "halb status --json after a refused reload", refused)
	if !bytes.Contains(refused, []byte(`"applied": false`)) || !bytes.Contains(refused, []byte(`weight: -3 is not from 0 to 65535"`)) {
		t.Errorf("halb status --json does not show the refused reload:\n%s", refused)
	}
	os.WriteFile(cfgPath, []byte(config("2")), 0o644)
	halb.Process.Signal(syscall.SIGHUP)
	waitFor(t, ctx, "the applied reload", func() bool { return kinds()["reload"] == 2 })
	waitFor(t, ctx, "webhook posts", func() bool { return len(hooks.all()) > 1 })

	bin := labtest.HalbBinary(t)
	status, err := exec.Command(bin, "status", "--json", "--socket", sock).Output()
	if err != nil {
		t.Fatalf("halb status --json: %v", err)
	}
	conforms(t, schema(t, "status.schema.json"), "halb status --json", status)
	for _, key := range []string{`"port_end": 10100`, `"state": "MASTER"`, `"master": "198.51.100.1"`, `"quorum_up": false`,
		`"last_check": "failed"`, `"last_check": "ok"`, `failure in a row"`} {
		if !bytes.Contains(status, []byte(key)) {
			t.Errorf("halb status --json lacks %s:\n%s", key, status)
		}
	}
	events, err := exec.Command(bin, "events", "--json", "-n", "0", "--socket", sock).Output()
	if err != nil {
		t.Fatalf("halb events --json: %v", err)
	}
	conforms(t, schema(t, "events.schema.json"), "halb events --json", events)
	follower.Process.Signal(syscall.SIGINT)
	for line := range followed {
		lines = append(lines, line)
	}
	if err := follower.Wait(); err != nil {
		t.Errorf("halb events --follow on SIGINT: %v", err)
	}
	reloads := 0
	for i, line := range lines {
		conforms(t, schema(t, "events.schema.json"), fmt.Sprintf("halb events --follow --json, line %d", i+1), []byte(line))
		reloads += strings.Count(line, `"kind":"reload"`)
	}
	if len(lines) < 3 || reloads != 2 {
		t.Errorf("halb events --follow printed %d lines with %d reloads, want the last event and both reloads:\n%s", len(lines), reloads, strings.Join(lines, "\n"))
	}
	webhook := schema(t, "webhook.schema.json")
	for i, b := range hooks.all() {
		conforms(t, webhook, fmt.Sprintf("webhook body %d", i+1), b)
	}
}
