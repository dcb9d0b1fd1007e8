// Command reload times, at N NAT services of 4 backends in P pools, what
// one change costs to reach the kernel, next to `nft -f` of the same
// change to one map:
//
//   - sighup: the real daemon (`halb run --dataplane nftables` in a
//     network namespace) is sent SIGHUP after one server's weight changed
//     in its configuration; the time until the kernel's Maglev map of the
//     server's pool holds the new slots, polled over netlink;
//   - one-change: one server of a pool goes down or comes back (a health
//     transition), through the engine's evaluation and the nftables data
//     plane, in process, against the kernel of another namespace;
//   - nft-f: `nft -f` of a file that changes the same slots of a copy of
//     the map.
//
// Each is the median of R repetitions (the weight or the health flips
// each time). Run as root:
//
//	go run ./bench/nft/reload -services 10000 -pools 500 -runs 11
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/google/nftables"

	"halb/bench/nft/benchns"
	"halb/internal/config"
	"halb/internal/dataplane"
	"halb/internal/dataplane/nft"
	"halb/internal/engine"
	"halb/internal/maglev"
)

const backends = 4

func main() {
	services := flag.Int("services", 10000, "NAT services")
	pools := flag.Int("pools", 500, "pools the services are spread over")
	runs := flag.Int("runs", 11, "repetitions (the median is printed)")
	flag.Parse()
	if err := measure(*services, min(*pools, *services), *runs); err != nil {
		fmt.Fprintln(os.Stderr, "reload:", err)
		os.Exit(1)
	}
}

// backend j of pool p: 4 backends a pool, each pool its own port.
func backend(p, j int) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 51, 100, byte(1 + (backends*p+j)%250)}), uint16(8000+p))
}

// vip of service i: 250 addresses, ports from 1000.
func vip(i int) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{203, 0, 113, byte(1 + i%250)}), uint16(1000+i/250))
}

// configText has n services, service i in pool i mod pools; backend 0 of
// pool 0 has weight w. checked gives the pools a health check.
func configText(dir string, n, pools, w int, checked bool) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "node: lb\nstate_dir: %s\napi: {socket: %s/halb.sock}\nservices:\n", dir, dir)
	for i := range n {
		v := vip(i)
		fmt.Fprintf(&b, "  - {name: s%d, protocol: tcp, vips: [%s], ports: [%d], mark: none, forward: nat, pool: p%d}\n", i, v.Addr(), v.Port(), i%pools)
	}
	b.WriteString("pools:\n")
	for p := range pools {
		fmt.Fprintf(&b, "  p%d:\n", p)
		if checked {
			b.WriteString("    check: {type: tcp}\n")
		}
		b.WriteString("    servers:\n")
		for j := range backends {
			weight := 1
			if p == 0 && j == 0 {
				weight = w
			}
			fmt.Fprintf(&b, "      - {address: %s, port: %d, weight: %d}\n", backend(p, j).Addr(), backend(p, j).Port(), weight)
		}
	}
	return b.Bytes()
}

func measure(n, pools, runs int) error {
	dir, err := os.MkdirTemp("", "halbreload")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "halb")
	build := exec.Command("go", "build", "-o", bin, "./cmd/halb")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %v: %s", err, out)
	}
	sighup, nftHup, err := reloads(bin, dir, n, pools, runs)
	if err != nil {
		return err
	}
	change, nftChange, err := healthChanges(dir, n, pools, runs)
	if err != nil {
		return err
	}
	load, _ := os.ReadFile("/proc/loadavg")
	fmt.Printf("%-9s %-6s %-5s %-11s %-11s %-11s %-11s %s\n", "services", "pools", "runs", "sighup", "nft-f", "one-change", "nft-f", "load (1 5 15 min)")
	fmt.Printf("%-9d %-6d %-5d %-11s %-11s %-11s %-11s %s\n", n, pools, runs, ms(median(sighup)), ms(median(nftHup)),
		ms(median(change)), ms(median(nftChange)), strings.Join(strings.Fields(string(load))[:3], " "))
	return nil
}

// reloads runs halb on the services and times SIGHUPs that flip the
// weight of backend 0 of pool 0 between 1 and 2, and nft -f of the same
// slots on a copy of the pool's map.
func reloads(bin, dir string, n, pools, runs int) (hup, ref []time.Duration, err error) {
	ns, err := benchns.New("halbreload")
	if err != nil {
		return nil, nil, err
	}
	defer ns.Close()
	cfg := filepath.Join(dir, "halb.yaml")
	if err := os.WriteFile(cfg, configText(dir, n, pools, 1, false), 0o600); err != nil {
		return nil, nil, err
	}
	logf, err := os.Create(filepath.Join(dir, "halb.log"))
	if err != nil {
		return nil, nil, err
	}
	defer func() { _ = logf.Close() }() // halb wrote it; its lines are read back below
	cmd := exec.Command("ip", "netns", "exec", ns.Name, bin, "run", "--config", cfg, "--dataplane", "nftables")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM) // it may have exited; its exit is waited for below
		if werr := <-exited; werr != nil && err == nil {
			err = fmt.Errorf("halb run: %w", werr)
		}
		if err != nil {
			log, _ := os.ReadFile(logf.Name())
			err = fmt.Errorf("%w; halb's log:\n%s", err, log)
		}
	}()
	c, err := nftables.New(nftables.WithNetNSFd(ns.Fd()))
	if err != nil {
		return nil, nil, err
	}
	var m *nftables.Set
	for deadline := time.Now().Add(5 * time.Minute); m == nil; {
		select {
		case err := <-exited:
			exited <- err
			return nil, nil, fmt.Errorf("halb exited: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			return nil, nil, errors.New("halb did not program its table in 5 minutes")
		}
		m, err = poolMap(c, pools)
		if err != nil {
			return nil, nil, err
		}
		if m == nil {
			time.Sleep(100 * time.Millisecond)
		}
	}
	copyMap, err := refMap(ns, c, m)
	if err != nil {
		return nil, nil, err
	}
	weight := 1
	for r := range runs {
		from, to := weight, 3-weight
		weight = to
		if err := os.WriteFile(cfg, configText(dir, n, pools, to, false), 0o600); err != nil {
			return nil, nil, err
		}
		want := slotsOf(maglevSlots(0, to))
		t0 := time.Now()
		if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
			return nil, nil, err
		}
		for {
			got, err := elements(c, m)
			if err != nil {
				return nil, nil, err
			}
			if got == want {
				break
			}
			if time.Since(t0) > time.Minute {
				return nil, nil, fmt.Errorf("run %d: the kernel's map did not change in a minute", r)
			}
			time.Sleep(time.Millisecond)
		}
		hup = append(hup, time.Since(t0))
		d, err := nftChange(ns, dir, copyMap, maglevSlots(0, from), maglevSlots(0, to))
		if err != nil {
			return nil, nil, err
		}
		ref = append(ref, d)
		time.Sleep(time.Second) // halb ends its reload (events, status) before the next
	}
	return hup, ref, nil
}

// healthChanges programs the services in a namespace through the
// engine's evaluation and the nftables data plane, then times backend 0
// of pool 0 going down and coming back, and nft -f of the same slots on
// a copy of the pool's map.
func healthChanges(dir string, n, pools, runs int) (change, ref []time.Duration, err error) {
	ns, err := benchns.New("halbreload")
	if err != nil {
		return nil, nil, err
	}
	defer ns.Close()
	cfg, diags := config.Parse("bench.yaml", configText(dir, n, pools, 1, true), config.Options{Hostname: "lb"})
	if cfg == nil {
		return nil, nil, fmt.Errorf("configuration: %v", diags)
	}
	d, err := nft.New(nft.WithMode(nft.LoadBalance), nft.WithNetNS(ns.Fd()))
	if err != nil {
		return nil, nil, err
	}
	ref0 := engine.ServerRef{Pool: "p0", Addr: backend(0, 0).Addr(), Port: backend(0, 0).Port()}
	health := map[engine.ServerRef]engine.ServerHealth{}
	for p := range pools {
		for j := range backends {
			b := backend(p, j)
			health[engine.ServerRef{Pool: fmt.Sprintf("p%d", p), Addr: b.Addr(), Port: b.Port()}] = engine.ServerHealth{Up: true, Weight: -1}
		}
	}
	in := engine.Inputs{Config: cfg, Health: health}
	ev := engine.Desired(in)
	ctx := context.Background()
	gen := uint64(1)
	st := ev.State
	st.Delta = &dataplane.Delta{Gen: gen}
	if err := d.Reconcile(ctx, st); err != nil {
		return nil, nil, err
	}
	c, err := nftables.New(nftables.WithNetNSFd(ns.Fd()))
	if err != nil {
		return nil, nil, err
	}
	m, err := poolMap(c, pools)
	if err != nil || m == nil {
		return nil, nil, fmt.Errorf("the map of pool 0: %v", err)
	}
	copyMap, err := refMap(ns, c, m)
	if err != nil {
		return nil, nil, err
	}
	up := true
	for range runs {
		up = !up
		health[ref0] = engine.ServerHealth{Up: up, Weight: -1}
		t0 := time.Now()
		changed := ev.Update(in, []string{"p0"})
		st := ev.State
		st.Delta = &dataplane.Delta{From: gen, Gen: gen + 1, Services: changed}
		gen++
		if err := d.Reconcile(ctx, st); err != nil {
			return nil, nil, err
		}
		change = append(change, time.Since(t0))
		was, is := maglevSlots(0, 0), maglevSlots(0, 1)
		if up {
			was, is = is, was
		}
		dt, err := nftChange(ns, dir, copyMap, was, is)
		if err != nil {
			return nil, nil, err
		}
		ref = append(ref, dt)
	}
	last := 0 // the weight the server has now
	if up {
		last = 1
	}
	if got, err := elements(c, m); err != nil || got != slotsOf(maglevSlots(0, last)) {
		return nil, nil, fmt.Errorf("the kernel's map is not the pool's after the last change (%v)", err)
	}
	return change, ref, nil
}

// maglevSlots is the Maglev table of pool p with backend 0 at weight w,
// as halb computes it.
func maglevSlots(p, w int) []netip.AddrPort {
	var bs []maglev.Backend
	for j := range backends {
		weight := 1
		if j == 0 {
			weight = w
		}
		bs = append(bs, maglev.Backend{ID: backend(p, j).String(), Weight: weight})
	}
	tab, err := maglev.New(bs, maglev.DefaultSize(backends))
	if err != nil {
		panic(err) // four backends and the default size: always valid
	}
	out := make([]netip.AddrPort, len(tab.Entries))
	for i, e := range tab.Entries {
		out[i] = netip.MustParseAddrPort(tab.Backends[e].ID)
	}
	return out
}

// slotsOf renders slots as elements reads them.
func slotsOf(slots []netip.AddrPort) string {
	var b strings.Builder
	for i, ap := range slots {
		fmt.Fprintf(&b, "%d:%s ", i, ap)
	}
	return b.String()
}

// elements reads a Maglev map of address . port data, in slot order.
func elements(c *nftables.Conn, m *nftables.Set) (string, error) {
	els, err := c.GetSetElements(m)
	if err != nil {
		return "", fmt.Errorf("elements of %s: %w", m.Name, err)
	}
	slots := make([]netip.AddrPort, maglev.DefaultSize(backends))
	for _, e := range els {
		i := int(nativeU32(e.Key))
		if i >= len(slots) || len(e.Val) < 6 {
			return "", fmt.Errorf("map %s: element %x : %x", m.Name, e.Key, e.Val)
		}
		slots[i] = netip.AddrPortFrom(netip.AddrFrom4([4]byte(e.Val[:4])), uint16(e.Val[4])<<8|uint16(e.Val[5]))
	}
	return slotsOf(slots), nil
}

func nativeU32(b []byte) uint32 {
	var v uint32
	for i := len(b) - 1; i >= 0; i-- { // little-endian hosts
		v = v<<8 | uint32(b[i])
	}
	return v
}

// poolMap finds the Maglev map of pool 0 once halb has written all the
// pools' maps: the one whose slots hold backend 0 of pool 0.
func poolMap(c *nftables.Conn, pools int) (*nftables.Set, error) {
	t := &nftables.Table{Name: nft.DefaultTable, Family: nftables.TableFamilyINet}
	sets, err := c.GetSets(t)
	if err != nil {
		return nil, nil // no table yet
	}
	var maps []*nftables.Set
	for _, s := range sets {
		if strings.HasPrefix(s.Name, "slots-") {
			maps = append(maps, s)
		}
	}
	if len(maps) < pools {
		return nil, nil
	}
	want := slotsOf(maglevSlots(0, 1))
	for _, s := range maps {
		if got, err := elements(c, s); err == nil && got == want {
			return s, nil
		}
	}
	return nil, errors.New("no map holds pool 0's slots")
}

// refMap creates, in ns, table inet ref with a copy of map m (its type and
// elements), for nft -f to change.
func refMap(ns *benchns.NS, c *nftables.Conn, m *nftables.Set) (string, error) {
	els, err := c.GetSetElements(m)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "table inet ref {\n\tmap pool0 {\n\t\ttypeof numgen inc mod %d : ip daddr . th dport\n\t\telements = {", maglev.DefaultSize(backends))
	for i, e := range els {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, " %d : %s . %d", nativeU32(e.Key), netip.AddrFrom4([4]byte(e.Val[:4])), uint16(e.Val[4])<<8|uint16(e.Val[5]))
	}
	b.WriteString(" }\n\t}\n}\n")
	return "pool0", ns.NFT(b.String())
}

// nftChange times nft -f of the slots that differ from was to is, on
// the copy of the map: each deleted and added again, as halb sends them.
func nftChange(ns *benchns.NS, dir, name string, was, is []netip.AddrPort) (time.Duration, error) {
	var del, add []string
	for i := range is {
		if was[i] != is[i] {
			del = append(del, fmt.Sprint(i))
			add = append(add, fmt.Sprintf("%d : %s . %d", i, is[i].Addr(), is[i].Port()))
		}
	}
	if len(del) == 0 {
		return 0, errors.New("no slot changes")
	}
	text := fmt.Sprintf("delete element inet ref %s { %s }\nadd element inet ref %s { %s }\n", name, strings.Join(del, ", "), name, strings.Join(add, ", "))
	file := filepath.Join(dir, "change.nft")
	if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
		return 0, err
	}
	t0 := time.Now()
	if _, err := ns.Run("nft", "-f", file); err != nil {
		return 0, err
	}
	return time.Since(t0), nil
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func ms(d time.Duration) string { return d.Round(10 * time.Microsecond).String() }
