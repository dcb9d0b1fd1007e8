package faults

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"syscall"
	"time"

	"halb/internal/api"
	"halb/internal/lab/site"
	"halb/internal/lab/traffic"
)

// Data-plane continuity: what a pool change and a restart do to the
// connections and pins the data plane holds.

// outServer is the www pool's server the pool-change row removes: web3.
const outServer = "198.51.100.13"

// poolChange removes web3 from the www pool on both nodes by a reload
// under traffic, then puts it back.
func poolChange(ctx context.Context, e *env) (string, bool, error) {
	without, err := e.withoutServer()
	if err != nil {
		return "", false, err
	}
	name := backendName(e, outServer)
	g := &traffic.Generator{Dial: e.s.Client.DialContext, VIPs: site.AllVIPs(), Port: 80,
		Interval: 100 * time.Millisecond, Timeout: 3 * time.Second, Persistent: 3}
	gctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { g.Run(gctx); close(done) }()
	defer func() { cancel(); <-done }()
	if err := sleep(ctx, 1500*time.Millisecond); err != nil {
		return "", false, err
	}
	before := g.Conns()
	if err := e.reloadAll(without); err != nil {
		return "", false, err
	}
	out, err := e.waitServer(ctx, false, 5*time.Second)
	if err != nil {
		return "", false, err
	}
	if err := sleep(ctx, 2*time.Second); err != nil {
		return "", false, err
	}
	outWin := g.Summary(out, time.Now())
	returned := time.Now()
	if err := e.reloadAll(e.config); err != nil {
		return "", false, err
	}
	back, err := e.waitServer(ctx, true, 10*time.Second)
	if err != nil {
		return "", false, err
	}
	if err := sleep(ctx, 2*time.Second); err != nil {
		return "", false, err
	}
	backWin := g.Summary(back, time.Now())
	others, othersKept, own, ownKept, why, ownWhy := splitConns(before, g.Conns(), name)
	text := fmt.Sprintf("%d/%d connections to the other backends kept", othersKept, others)
	if othersKept < others {
		text += " (" + why + ")"
	}
	text += fmt.Sprintf("; %d/%d connections to %s itself kept", ownKept, own, name)
	if ownWhy != "" {
		text += " (" + ownWhy + ")"
	}
	text += fmt.Sprintf("; while out %d/%d new connections reached %s (%d failed)",
		outWin.ByBackend[name], outWin.Requests, name, outWin.Failed)
	text += fmt.Sprintf("; healthy in the pool %s after the reload that returned it, then %d/%d new connections reached it",
		secs(back.Sub(returned)), backWin.ByBackend[name], backWin.Requests)
	ok := others > 0 && othersKept == others && outWin.ByBackend[name] == 0 && outWin.Failed == 0 &&
		backWin.ByBackend[name] > 0 && backWin.Failed == 0
	return text, ok, nil
}

// splitConns counts the long-lived connections open at before by whether
// their backend was name, and how many of each kind are unbroken now,
// with the first reason one of each kind broke.
func splitConns(before, now []traffic.Conn, name string) (others, othersKept, own, ownKept int, why, ownWhy string) {
	for i, c := range before {
		if c.Backend == "" || c.Broken != "" {
			continue
		}
		kept := now[i].Broken == ""
		switch {
		case c.Backend == name:
			own++
			if kept {
				ownKept++
			} else if ownWhy == "" {
				ownWhy = now[i].Broken
			}
		case kept:
			others++
			othersKept++
		default:
			others++
			if why == "" {
				why = c.VIP + " to " + c.Backend + ": " + now[i].Broken
			}
		}
	}
	return others, othersKept, own, ownKept, why, ownWhy
}

// withoutServer returns each node's configuration without outServer in
// the www pool.
func (e *env) withoutServer() ([2][]byte, error) {
	const line = "      - {address: " + outServer + ", weight: 1}\n"
	var without [2][]byte
	for i := range e.s.LBs {
		if !strings.Contains(string(e.config[i]), line) {
			return without, fmt.Errorf("%s's configuration has no %q", e.s.LBs[i].Name, line)
		}
		without[i] = []byte(strings.Replace(string(e.config[i]), line, "", 1))
	}
	return without, nil
}

// backendName is the name the backend at addr answers with.
func backendName(e *env, addr string) string {
	for _, b := range e.s.Backends {
		if b.Addr == addr {
			return b.Name
		}
	}
	return addr
}

// reloadAll writes each node's configuration and reloads it.
func (e *env) reloadAll(configs [2][]byte) error {
	for i, lb := range e.s.LBs {
		if err := os.WriteFile(lb.Config, configs[i], 0o644); err != nil {
			return fmt.Errorf("write %s's configuration: %w", lb.Name, err)
		}
		if err := lb.Notify(syscall.SIGHUP); err != nil {
			return err
		}
	}
	return nil
}

// waitServer waits until both nodes' www services list outServer
// healthy (in) or do not list it (!in), and returns when.
func (e *env) waitServer(ctx context.Context, in bool, limit time.Duration) (time.Time, error) {
	deadline := time.Now().Add(limit)
	for {
		all := true
		for i := range e.s.LBs {
			st, err := e.api[i].Status(ctx)
			if err != nil {
				return time.Time{}, err
			}
			for _, svc := range st.Services {
				if svc.Pool != "www" {
					continue
				}
				has := slices.ContainsFunc(svc.Servers, func(s api.Server) bool { return s.Address == outServer && (!in || s.Healthy) })
				if has != in {
					all = false
				}
			}
		}
		if all {
			return time.Now(), nil
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("%s not %s the www pool on both nodes within %v", outServer, map[bool]string{true: "healthy in", false: "out of"}[in], limit)
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return time.Time{}, err
		}
	}
}

// pinClients are the client's extra source addresses for the pin row.
var pinClients = []string{"192.0.2.101", "192.0.2.102", "192.0.2.103", "192.0.2.104",
	"192.0.2.105", "192.0.2.106", "192.0.2.107", "192.0.2.108"}

// pinsRestart pins clients over HTTPS (persistence) at lb-a's VIPs while
// web3 is out of the pool, returns web3, and restarts halb on lb-a. A pin
// lost sends its client by the Maglev table, where web3 has a third of
// the slots again: with 24 pins, all lost ones missing web3 by chance is
// under 1 in 10,000.
func pinsRestart(ctx context.Context, e *env) (string, bool, error) {
	defer func() {
		for _, a := range pinClients {
			_, _ = e.s.Client.Run("ip", "addr", "del", a+"/24", "dev", "eth0") // absent when its add failed
		}
	}()
	for _, a := range pinClients {
		if out, err := e.s.Client.Run("ip", "addr", "add", a+"/24", "dev", "eth0"); err != nil {
			return "", false, fmt.Errorf("add the client address %s: %v: %s", a, err, out)
		}
	}
	without, err := e.withoutServer()
	if err != nil {
		return "", false, err
	}
	if err := e.reloadAll(without); err != nil {
		return "", false, err
	}
	if _, err := e.waitServer(ctx, false, 5*time.Second); err != nil {
		return "", false, err
	}
	pins, err := e.httpsBackends(ctx)
	if err != nil {
		return "", false, err
	}
	if err := e.reloadAll(e.config); err != nil {
		return "", false, err
	}
	if _, err := e.waitServer(ctx, true, 10*time.Second); err != nil {
		return "", false, err
	}
	returned, err := e.httpsBackends(ctx)
	if err != nil {
		return "", false, err
	}
	from := time.Now()
	if err := e.s.LBs[0].Signal(syscall.SIGTERM, 5*time.Second); err != nil {
		return "", false, err
	}
	if err := e.s.StartLB(ctx, 0); err != nil {
		return "", false, err
	}
	if err := e.settle(ctx); err != nil {
		return "", false, err
	}
	took := time.Since(from)
	restarted, err := e.httpsBackends(ctx)
	if err != nil {
		return "", false, err
	}
	keptReturn, keptRestart := samePins(pins, returned), samePins(pins, restarted)
	text := fmt.Sprintf("%d clients pinned with %s out (%s); pins kept when it returned %d/%d, across the restart (settled after %s) %d/%d",
		len(pins), backendName(e, outServer), traffic.Spread(count(pins)), keptReturn, len(pins), secs(took), keptRestart, len(pins))
	return text, keptReturn == len(pins) && keptRestart == len(pins), nil
}

// httpsBackends asks each of lb-a's VIPs over HTTPS from each pin client
// and returns the backend that answered, by "client VIP".
func (e *env) httpsBackends(ctx context.Context) (map[string]string, error) {
	got := map[string]string{}
	for _, a := range pinClients {
		for _, vip := range site.VIPsA {
			out, err := e.s.Client.Run("curl", "-sk", "--max-time", "3", "--interface", a, "https://"+vip+"/")
			if err != nil {
				return nil, fmt.Errorf("curl https://%s/ from %s: %v: %s", vip, a, err, out)
			}
			got[a+" "+vip] = strings.TrimSpace(string(out))
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
	return got, nil
}

// samePins counts the clients of pins that reached the same backend in now.
func samePins(pins, now map[string]string) int {
	n := 0
	for k, b := range pins {
		if now[k] == b {
			n++
		}
	}
	return n
}

// count counts the clients per backend.
func count(pins map[string]string) map[string]int {
	by := map[string]int{}
	for _, b := range pins {
		by[b]++
	}
	return by
}
