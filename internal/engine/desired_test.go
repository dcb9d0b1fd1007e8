package engine

import (
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"halb/internal/config"
	"halb/internal/dataplane"
	"halb/internal/vrrp/fsm"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func load(t *testing.T, path string) *config.Config {
	t.Helper()
	c, diags := config.Load(path, config.Options{Hostname: "test"})
	if c == nil {
		t.Fatalf("%s: %v", path, diags)
	}
	return c
}

func loadString(t *testing.T, src string) *config.Config {
	t.Helper()
	c, diags := config.Parse("t.yaml", []byte(src), config.Options{Hostname: "test"})
	if c == nil {
		t.Fatal(diags)
	}
	return c
}

// renderPlan writes the mark plan and the desired state as text.
func renderPlan(c *config.Config, ev Evaluation) string {
	var b strings.Builder
	b.WriteString("# mark plan\n")
	for _, m := range c.MarkPlan() {
		var ports []string
		for _, p := range m.Ports {
			ports = append(ports, p.String())
		}
		var vips []string
		for _, v := range m.VIPs {
			vips = append(vips, v.String())
		}
		fmt.Fprintf(&b, "%s mark %d (0x%x) %s %s port %s\n", m.Service, m.Mark, m.Mark, m.Protocol,
			strings.Join(vips, ","), strings.Join(ports, ","))
	}
	b.WriteString("# desired state\n")
	b.WriteString(dataplane.Render(ev.State))
	return b.String()
}

func TestGoldenExamples(t *testing.T) {
	files, err := filepath.Glob("../../examples/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples: %v", err)
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".yaml")
		t.Run(name, func(t *testing.T) {
			c := load(t, f)
			got := renderPlan(c, Desired(Inputs{Config: c}))
			golden := filepath.Join("testdata", name+".golden")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("%s differs from %s (run with -update if the change is intended):\n%s", f, golden, got)
			}
		})
	}
}

func TestBothNodesOfThePairDeriveTheSameState(t *testing.T) {
	a := Desired(Inputs{Config: load(t, "../../examples/site-lb-a.yaml")}).State
	b := Desired(Inputs{Config: load(t, "../../examples/site-lb-b.yaml")}).State
	if dataplane.Render(a) != dataplane.Render(b) {
		t.Fatal("lb-a and lb-b derive different data plane states; connection sync and failover need identical marks and services")
	}
}

func TestAddingAServiceKeepsExistingMarks(t *testing.T) {
	c := load(t, "../../examples/site-lb-a.yaml")
	before := map[string]uint32{}
	for _, m := range c.MarkPlan() {
		before[fmt.Sprint(m.Service, m.VIPs)] = m.Mark
	}
	src, err := os.ReadFile("../../examples/site-lb-a.yaml")
	if err != nil {
		t.Fatal(err)
	}
	extra := strings.Replace(string(src), "services:\n", `services:
  - name: smtp
    vips: [192.0.2.9, 192.0.2.10]
    ports: [25, 587]
    mark: per-vip
    pool: www
`, 1)
	c2 := loadString(t, extra)
	n := 0
	for _, m := range c2.MarkPlan() {
		if old, ok := before[fmt.Sprint(m.Service, m.VIPs)]; ok {
			n++
			if old != m.Mark {
				t.Errorf("%s %v: mark changed from %d to %d when another service was added", m.Service, m.VIPs, old, m.Mark)
			}
		}
	}
	if n != len(before) {
		t.Fatalf("only %d of %d marks found again", n, len(before))
	}
}

const poolConfig = `node: t
services:
  - {name: web, vips: [192.0.2.9], ports: [80], forward: nat, pool: web}
pools:
  web:
    quorum: 2
    hysteresis: 1
    on_failure: %s
    sorry_server: 203.0.113.99:8080
    check: {type: tcp}
    servers:
      - {address: 198.51.100.1, weight: 2}
      - {address: 198.51.100.2, weight: 1}
      - {address: 198.51.100.3, weight: 1}
`

func realsText(ev Evaluation) string {
	var out []string
	for _, r := range ev.State.Services[0].Reals {
		out = append(out, fmt.Sprintf("%s=%d", r.AddrPort(), r.Weight))
	}
	return strings.Join(out, " ")
}

func ref(addr string) ServerRef {
	return ServerRef{Pool: "web", Addr: netip.MustParseAddr(addr)}
}

func TestHealthWeightsAndQuorum(t *testing.T) {
	inhibit := loadString(t, fmt.Sprintf(poolConfig, "inhibit"))
	remove := loadString(t, fmt.Sprintf(poolConfig, "remove"))
	down := func(addrs ...string) map[ServerRef]ServerHealth {
		h := map[ServerRef]ServerHealth{}
		for _, a := range addrs {
			h[ref(a)] = ServerHealth{Up: false, Reason: "connect refused"}
		}
		return h
	}
	tests := []struct {
		name   string
		cfg    *config.Config
		health map[ServerRef]ServerHealth
		prevUp map[string]bool
		want   string
		quorum bool
	}{
		{"all up", inhibit, nil, nil, "198.51.100.1:80=2 198.51.100.2:80=1 198.51.100.3:80=1", true},
		{"inhibit keeps a down server at weight 0", inhibit, down("198.51.100.2"), nil, "198.51.100.1:80=2 198.51.100.2:80=0 198.51.100.3:80=1", true},
		{"remove drops a down server", remove, down("198.51.100.2"), nil, "198.51.100.1:80=2 198.51.100.3:80=1", true},
		{"slow start weight", inhibit, map[ServerRef]ServerHealth{ref("198.51.100.1"): {Up: true, Weight: 1}}, nil,
			"198.51.100.1:80=1 198.51.100.2:80=1 198.51.100.3:80=1", true},
		// quorum 2, hysteresis 1: lost below 1, regained at 3.
		{"weight 1 keeps quorum with hysteresis", inhibit, down("198.51.100.1", "198.51.100.2"), nil,
			"198.51.100.1:80=0 198.51.100.2:80=0 198.51.100.3:80=1", true},
		{"weight 0 loses quorum: sorry server", inhibit, down("198.51.100.1", "198.51.100.2", "198.51.100.3"), nil, "203.0.113.99:8080=1", false},
		{"weight 2 does not regain quorum", inhibit, down("198.51.100.2", "198.51.100.3"), map[string]bool{"web": false}, "203.0.113.99:8080=1", false},
		{"weight 3 regains quorum", inhibit, down("198.51.100.3"), map[string]bool{"web": false},
			"198.51.100.1:80=2 198.51.100.2:80=1 198.51.100.3:80=0", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := Desired(Inputs{Config: tt.cfg, Health: tt.health, QuorumUp: tt.prevUp})
			if got := realsText(ev); got != tt.want {
				t.Errorf("reals: got %s, want %s", got, tt.want)
			}
			if ev.Pools["web"].QuorumUp != tt.quorum {
				t.Errorf("quorum up: got %v, want %v", ev.Pools["web"].QuorumUp, tt.quorum)
			}
		})
	}
}

func TestInitialStateDown(t *testing.T) {
	c := loadString(t, strings.Replace(fmt.Sprintf(poolConfig, "inhibit"), "quorum: 2\n    hysteresis: 1\n", "initial_state: down\n    quorum: 0\n", 1))
	ev := Desired(Inputs{Config: c})
	if got, want := realsText(ev), "198.51.100.1:80=0 198.51.100.2:80=0 198.51.100.3:80=0"; got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
}

func TestSyncDaemonsFollowVRRP(t *testing.T) {
	src := `node: t
vrrp:
  instances:
    - {name: a, interface: eth0, vrid: 9, priority: 100, vips: [192.0.2.9/24]}
ipvs_sync: {instance: a, interface: eth0}
`
	c := loadString(t, src)
	for state, want := range map[string]string{fsm.Master.String(): "master", fsm.Backup.String(): "backup", fsm.Fault.String(): "none", fsm.Init.String(): "none"} {
		s := Desired(Inputs{Config: c, VRRP: map[string]string{"a": state}}).State.Sync
		got := "none"
		if s != nil && s.Master {
			got = "master"
		} else if s != nil && s.Backup {
			got = "backup"
		}
		if got != want {
			t.Errorf("%s: sync daemons %s, want %s", state, got, want)
		}
		if s != nil && s.SyncID != 9 {
			t.Errorf("sync id %d, want the instance's VRID 9", s.SyncID)
		}
	}
}

// TestServerWithoutChecks: a server whose own check list is empty is not
// checked, so it stays up while the pool's checks hold the others down.
func TestServerWithoutChecks(t *testing.T) {
	c := loadString(t, strings.Replace(fmt.Sprintf(poolConfig, "inhibit"),
		"{address: 198.51.100.3, weight: 1}", "{address: 198.51.100.3, weight: 1, check: []}", 1))
	ev := Desired(Inputs{Config: c, Health: map[ServerRef]ServerHealth{}})
	st := ev.Pools["web"].Servers
	if st[2].Reason != "no health check" || !st[2].Healthy {
		t.Errorf("server with check: []: %+v, want healthy with no health check", st[2])
	}
	if st[0].Reason == "no health check" {
		t.Errorf("server with the pool's checks: %+v, want it checked", st[0])
	}
}

// TestServerOptions: a server's own on_failure overrides the pool's, and
// its connection thresholds reach the data plane's real server.
func TestServerOptions(t *testing.T) {
	c := loadString(t, strings.NewReplacer(
		"{address: 198.51.100.2, weight: 1}", "{address: 198.51.100.2, weight: 1, on_failure: remove}",
		"{address: 198.51.100.3, weight: 1}", "{address: 198.51.100.3, weight: 1, max_connections: 100, min_connections: 90}",
	).Replace(fmt.Sprintf(poolConfig, "inhibit")))
	health := map[ServerRef]ServerHealth{
		ref("198.51.100.1"): {Up: false, Reason: "down"},
		ref("198.51.100.2"): {Up: false, Reason: "down"},
		ref("198.51.100.3"): {Up: true, Weight: -1},
	}
	ev := Desired(Inputs{Config: c, Health: health})
	if got, want := realsText(ev), "198.51.100.1:80=0 198.51.100.3:80=1"; got != want {
		t.Errorf("reals %s, want %s (the pool inhibits, 198.51.100.2 is removed)", got, want)
	}
	for _, r := range ev.State.Services[0].Reals {
		if r.Addr.String() == "198.51.100.3" && (r.MaxConns != 100 || r.MinConns != 90) {
			t.Errorf("thresholds %d/%d, want 100/90", r.MaxConns, r.MinConns)
		}
	}
}
