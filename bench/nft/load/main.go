// Command load compares halb's nftables data plane with `nft -f`, in one
// run, each phase in a fresh network namespace: N NAT services of 4
// backends in P pools, programmed by halb from empty; halb's resulting
// ruleset (`nft list ruleset`) loaded by `nft -f`; the same services
// written by hand with one Maglev map per pool and one chain per pool,
// loaded by `nft -f`; a restart of halb's data plane on its own table
// (changes must be 0); one backend's weight changed in one pool (time to
// the kernel); and the process's RSS after programming. Run as root:
//
//	go run ./bench/nft/load -services 1000,10000 -pools 500
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"halb/bench/nft/benchns"
	"halb/internal/dataplane"
	"halb/internal/dataplane/nft"
	"halb/internal/maglev"
)

const backends = 4

func main() {
	services := flag.String("services", "1000,10000", "comma-separated service counts")
	pools := flag.Int("pools", 500, "pools the services are spread over")
	flag.Parse()
	fmt.Printf("%-9s %-6s %-11s %-11s %-11s %-7s %-12s %-9s %-11s %-9s\n",
		"services", "pools", "halb", "nft-f-halb", "nft-f-pool", "ratio", "restart", "changes", "one-change", "rss")
	for _, s := range strings.Split(*services, ",") {
		n, err := strconv.Atoi(s)
		if err != nil {
			fail(err)
		}
		if err := measure(n, min(*pools, n)); err != nil {
			fail(err)
		}
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "load:", err)
	os.Exit(1)
}

// backend j of pool p: 4 backends a pool, each pool its own port.
func backend(p, j int) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 51, 100, byte(1 + (backends*p+j)%250)}), uint16(8000+p))
}

// vip of service i: 250 addresses, ports from 1000.
func vip(i int) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{203, 0, 113, byte(1 + i%250)}), uint16(1000+i/250))
}

// state has n NAT services, service i in pool i mod pools.
func state(n, pools int) dataplane.State {
	var st dataplane.State
	for i := range n {
		v := vip(i)
		vs := dataplane.VirtualService{Key: dataplane.ServiceKey{Family: 4, Protocol: "tcp", Addr: v.Addr(), Port: v.Port()}, Service: fmt.Sprintf("svc%d", i)}
		for j := range backends {
			b := backend(i%pools, j)
			vs.Reals = append(vs.Reals, dataplane.Real{Addr: b.Addr(), Port: b.Port(), Weight: 1, Forward: "nat"})
		}
		st.Services = append(st.Services, vs)
	}
	st.Sort()
	return st
}

func measure(n, pools int) error {
	st := state(n, pools)
	changed := state(n, pools)
	for i := range changed.Services { // one server of pool 0 gets weight 2
		for j, r := range changed.Services[i].Reals {
			if netip.AddrPortFrom(r.Addr, r.Port) == backend(0, 0) {
				changed.Services[i].Reals[j].Weight = 2
			}
		}
	}
	dir, err := os.MkdirTemp("", "halbload")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	ns, err := benchns.New("halbload")
	if err != nil {
		return err
	}
	defer ns.Close()
	ctx := context.Background()
	d, err := dataplaneIn(ns)
	if err != nil {
		return err
	}
	t0 := time.Now()
	if err := d.Reconcile(ctx, st); err != nil {
		return fmt.Errorf("halb from empty: %w", err)
	}
	halb := time.Since(t0)
	rss := rssKiB()
	listed, err := ns.Run("nft", "list", "ruleset")
	if err != nil {
		return err
	}
	restarted, err := dataplaneIn(ns)
	if err != nil {
		return err
	}
	// The states numbered, and the change told, as the engine does.
	since, _ := dataplane.Since(st, changed)
	st.Delta, changed.Delta = &dataplane.Delta{Gen: 1}, &dataplane.Delta{From: 1, Gen: 2, Services: since}
	t0 = time.Now()
	if err := restarted.Reconcile(ctx, st); err != nil {
		return fmt.Errorf("restart: %w", err)
	}
	restart, changes := time.Since(t0), restarted.Changes()
	t0 = time.Now()
	if err := restarted.Reconcile(ctx, changed); err != nil {
		return fmt.Errorf("one change: %w", err)
	}
	oneChange := time.Since(t0)

	own := filepath.Join(dir, "halb.nft")
	if err := os.WriteFile(own, listed, 0o600); err != nil {
		return err
	}
	pool := filepath.Join(dir, "pool.nft")
	ref, err := perPool(st, pools)
	if err != nil {
		return err
	}
	if err := os.WriteFile(pool, ref, 0o600); err != nil {
		return err
	}
	nftHalb, err := nftLoad(own)
	if err != nil {
		return fmt.Errorf("nft -f of halb's ruleset: %w", err)
	}
	nftPool, err := nftLoad(pool)
	if err != nil {
		return fmt.Errorf("nft -f of the one-map-per-pool ruleset: %w", err)
	}
	fmt.Printf("%-9d %-6d %-11s %-11s %-11s %-7s %-12s %-9d %-11s %-9s\n", n, pools, halb.Round(time.Millisecond),
		nftHalb.Round(time.Millisecond), nftPool.Round(time.Millisecond), fmt.Sprintf("%.2f×", float64(halb)/float64(nftPool)),
		restart.Round(time.Millisecond), changes, oneChange.Round(10*time.Microsecond), fmt.Sprintf("%d MiB", rss/1024))
	return nil
}

// perPool writes the services as one would by hand: a verdict map from
// VIP . protocol . port to a pool's chain, which DNATs by the flow's
// jhash through the pool's Maglev map (the same slots halb computes).
func perPool(st dataplane.State, pools int) ([]byte, error) {
	var b bytes.Buffer
	size := maglev.DefaultSize(backends)
	b.WriteString("table inet ref {\n")
	for p := range pools {
		var bs []maglev.Backend
		for j := range backends {
			bs = append(bs, maglev.Backend{ID: backend(p, j).String(), Weight: 1})
		}
		tab, err := maglev.New(bs, size)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(&b, "\tmap pool%d {\n\t\ttypeof numgen inc mod %d : ip daddr . th dport\n\t\telements = {", p, size)
		for slot, e := range tab.Entries {
			ap, _ := netip.ParseAddrPort(tab.Backends[e].ID)
			if slot > 0 {
				b.WriteString(",")
			}
			fmt.Fprintf(&b, " %d : %s . %d", slot, ap.Addr(), ap.Port())
		}
		b.WriteString(" }\n\t}\n")
		fmt.Fprintf(&b, "\tchain pool%d {\n\t\tmeta l4proto tcp dnat ip to jhash ip saddr . tcp sport . ip daddr . tcp dport mod %d seed 0x%x map @pool%d\n\t}\n", p, size, 1+p, p)
	}
	b.WriteString("\tmap svc4 {\n\t\ttype ipv4_addr . inet_proto . inet_service : verdict\n\t\telements = {")
	for i, vs := range st.Services {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, " %s . tcp . %d : goto pool%d", vs.Key.Addr, vs.Key.Port, poolOf(vs))
	}
	b.WriteString(" }\n\t}\n")
	b.WriteString("\tchain balance {\n\t\ttype nat hook prerouting priority dstnat; policy accept;\n\t\tip daddr . meta l4proto . th dport vmap @svc4\n\t}\n}\n")
	return b.Bytes(), nil
}

// poolOf is the pool of a service: its backends' port tells.
func poolOf(vs dataplane.VirtualService) int { return int(vs.Reals[0].Port) - 8000 }

// nftLoad times `nft -f file` in a fresh namespace.
func nftLoad(file string) (time.Duration, error) {
	ns, err := benchns.New("halbload")
	if err != nil {
		return 0, err
	}
	defer ns.Close()
	t0 := time.Now()
	if _, err := ns.Run("nft", "-f", file); err != nil {
		return 0, err
	}
	return time.Since(t0), nil
}

// dataplaneIn is a load-balancing nftables data plane in ns.
func dataplaneIn(ns *benchns.NS) (*nft.Dataplane, error) {
	return nft.New(nft.WithMode(nft.LoadBalance), nft.WithNetNS(ns.Fd()))
}

// rssKiB is the process's resident set, after a collection.
func rssKiB() int {
	runtime.GC()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			v, _ := strconv.Atoi(f[1])
			return v
		}
	}
	return 0
}
