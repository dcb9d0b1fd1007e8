package nft

import (
	"fmt"
	"math"
	"regexp"
	"strings"
	"testing"

	"halb/internal/config"
	"halb/internal/engine"
)

// TestSharedMapBalancesEachService: two services of one pool (two VIPs)
// share one Maglev map, and each spreads its connections over the
// backends by weight, as with a map of its own.
func TestSharedMapBalancesEachService(t *testing.T) {
	l := newNATLab(t, 3)
	if err := l.lb.IP("addr", "add", "203.0.113.11/24", "dev", "eth0"); err != nil {
		t.Fatal(err)
	}
	conf := strings.Replace(fmt.Sprintf(natConfig, "", "inhibit", 1, 2, 3), "vips: [203.0.113.10]", "vips: [203.0.113.10, 203.0.113.11]", 1)
	cfg, diags := config.Parse("nat.yaml", []byte(conf), config.Options{Hostname: "lb"})
	if cfg == nil {
		t.Fatalf("config: %s", diags)
	}
	in := engine.Inputs{Config: cfg, Health: map[engine.ServerRef]engine.ServerHealth{}}
	for _, s := range cfg.Pools["web"].Servers {
		in.Health[engine.ServerRef{Pool: "web", Addr: s.Address, Port: s.Port}] = engine.ServerHealth{Up: true, Weight: -1}
	}
	st := engine.Desired(in).State
	if len(st.Services) != 2 {
		t.Fatalf("%d services, want 2", len(st.Services))
	}
	reconcile(t, nsDataplane(t, l.lb, WithMode(LoadBalance)), st)
	table := listTable(t, l.lb, DefaultTable)
	if maps := regexp.MustCompile(`map slots-[0-9a-f]+ \{`).FindAllString(table, -1); len(maps) != 1 {
		t.Errorf("%d Maglev maps for two services of one pool, want 1:\n%s", len(maps), table)
	}
	cl := newDialer(t, l.client)
	const n = 600
	for _, vip := range []string{"203.0.113.10", "203.0.113.11"} {
		count := map[string]int{}
		for i := range n {
			name, err := cl.hit("", vip+":80")
			if err != nil {
				t.Fatalf("%s: connection %d: %v", vip, i, err)
			}
			count[name]++
		}
		t.Logf("%s: distribution over %d connections: %v", vip, n, count)
		for i, w := range []float64{1, 2, 3} {
			name := fmt.Sprintf("198.51.100.%d", 21+i)
			if got, want := float64(count[name]), n*w/6; math.Abs(got-want) > 0.07*n {
				t.Errorf("%s: %s (weight %v) got %v connections, want %v ± %v", vip, name, w, got, want, 0.07*n)
			}
		}
	}
}
