package faults

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"halb/internal/lab/netns"
	"halb/internal/lab/site"
)

// keepalived pair beside the site, on its switch: VRRP only, unicast, the
// same timers as the site (adverts every second), ka1 the master.
var kaAddrs = [2]string{"192.0.2.21", "192.0.2.22"}

const (
	kaVIP  = "192.0.2.30"
	kaVRID = 30
)

// kpair is two keepalived nodes that rows measure beside halb.
type kpair struct {
	hosts [2]*netns.Host
	cmds  [2]*exec.Cmd
	done  [2]chan struct{}
	confs [2]string
	logs  [2]string
}

// startKeepalived adds the pair to the site and starts keepalived on both.
func startKeepalived(s *site.Site, dir string) (*kpair, error) {
	k := &kpair{}
	for i := range k.hosts {
		h, err := s.Lab.AddHost(fmt.Sprintf("ka%d", i+1))
		if err != nil {
			return nil, err
		}
		if _, err := s.Lab.Connect(h, s.Switch, "eth0", kaAddrs[i]+"/24"); err != nil {
			return nil, err
		}
		k.hosts[i] = h
	}
	for i := range k.hosts {
		d := filepath.Join(dir, fmt.Sprintf("ka%d", i+1))
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
		conf := fmt.Sprintf(`global_defs {
  router_id ka%d
  vrrp_garp_master_refresh 0
}
vrrp_instance vi {
  state BACKUP
  interface eth0
  virtual_router_id %d
  priority %d
  advert_int 1
  version 3
  unicast_src_ip %s
  unicast_peer {
    %s
  }
  virtual_ipaddress {
    %s/24
  }
}
`, i+1, kaVRID, 150-50*i, kaAddrs[i], kaAddrs[1-i], kaVIP)
		k.confs[i] = filepath.Join(d, "keepalived.conf")
		if err := os.WriteFile(k.confs[i], []byte(conf), 0o644); err != nil {
			return nil, err
		}
		k.logs[i] = filepath.Join(d, "keepalived.log")
		if err := k.start(i); err != nil {
			return nil, errors.Join(err, k.stop())
		}
	}
	return k, nil
}

// start starts keepalived on node i, its log appended to.
func (k *kpair) start(i int) error {
	log, err := os.OpenFile(k.logs[i], os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	d := filepath.Dir(k.confs[i])
	cmd := k.hosts[i].Command(context.Background(), "keepalived", "-n", "-l", "-D", "--vrrp", "-f", k.confs[i],
		"-p", filepath.Join(d, "k.pid"), "-r", filepath.Join(d, "v.pid"))
	// keepalived signals its process group: give it its own.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		_ = log.Close() // the start's error is the one to report
		return fmt.Errorf("%s: start keepalived: %w", k.hosts[i].Name, err)
	}
	done := make(chan struct{})
	k.cmds[i], k.done[i] = cmd, done
	go func() { _ = cmd.Wait(); _ = log.Close(); close(done) }() // kill and stop report a node that will not end
	return nil
}

// kill sends sig to keepalived on node i and waits for it to end.
func (k *kpair) kill(i int, sig syscall.Signal) error {
	cmd := k.cmds[i]
	if cmd == nil {
		return nil
	}
	_ = syscall.Kill(-cmd.Process.Pid, sig) // it may have ended
	select {
	case <-k.done[i]:
		k.cmds[i] = nil
		return nil
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-k.done[i]
		k.cmds[i] = nil
		return fmt.Errorf("%s: keepalived did not end on %v", k.hosts[i].Name, sig)
	}
}

// stop ends keepalived on both nodes.
func (k *kpair) stop() error {
	return errors.Join(k.kill(0, syscall.SIGTERM), k.kill(1, syscall.SIGTERM))
}

// vipCount returns how many times node i holds the VIP.
func (k *kpair) vipCount(i int) int {
	out, _ := k.hosts[i].Run("ip", "-o", "addr", "show", "dev", "eth0") // an error reads as none
	return strings.Count(string(out), " "+kaVIP+"/24 ")
}

// kaTakeover stops keepalived's master with sig, measures how long the
// backup takes to hold the VIP, and starts the master again.
func kaTakeover(sig syscall.Signal) func(ctx context.Context, e *env) (string, error) {
	return func(ctx context.Context, e *env) (string, error) {
		k := e.ka
		from := time.Now()
		if err := k.kill(0, sig); err != nil {
			return "", err
		}
		for !k.hasVIP(1) {
			if time.Since(from) > bound+5*time.Second {
				return "", errors.Join(fmt.Errorf("the backup holds no VIP %v after the master's end", bound+5*time.Second), k.start(0))
			}
			if err := sleep(ctx, 20*time.Millisecond); err != nil {
				return "", err
			}
		}
		took := time.Since(from)
		left := k.vipCount(0)
		if err := k.start(0); err != nil {
			return "", err
		}
		if err := k.settle(ctx); err != nil {
			return "", err
		}
		kept := "released the VIP"
		if left > 0 {
			kept = "kept the VIP in its kernel"
		}
		return fmt.Sprintf("backup master after %s; the stopped node %s; restarted, it holds the VIP %d time(s)", secs(took), kept, k.vipCount(0)), nil
	}
}

// hasVIP reports whether node i holds the VIP.
func (k *kpair) hasVIP(i int) bool {
	out, _ := k.hosts[i].Run("ip", "-o", "addr", "show", "dev", "eth0") // an error reads as absent
	return strings.Contains(string(out), " "+kaVIP+"/24 ")
}

// settle waits until ka1 alone holds the VIP.
func (k *kpair) settle(ctx context.Context) error {
	deadline := time.Now().Add(20 * time.Second)
	for !(k.hasVIP(0) && !k.hasVIP(1)) {
		if time.Now().After(deadline) {
			return fmt.Errorf("keepalived: ka1 is not the only master after 20 s")
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
	return nil
}

// kaVIPDeleted deletes the VIP on keepalived's master and waits for it.
func kaVIPDeleted(ctx context.Context, e *env) (string, error) {
	k := e.ka
	if err := k.hosts[0].IP("addr", "del", kaVIP+"/24", "dev", "eth0"); err != nil {
		return "", err
	}
	from := time.Now()
	for time.Since(from) < 3*advert {
		if k.hasVIP(0) {
			return "back after " + secs(time.Since(from)), nil
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return "", err
		}
	}
	return "not back after " + secs(3*advert), k.hosts[0].IP("addr", "add", kaVIP+"/24", "dev", "eth0")
}

// kaUnknownSource sends keepalived's master the client's forged adverts.
func kaUnknownSource(ctx context.Context, e *env) (string, error) {
	k := e.ka
	before := strings.Count(readFile(k.logs[0]), "Entering BACKUP STATE")
	if err := e.claim(ctx, kaVRID, kaVIP, netip.MustParseAddr(kaAddrs[0])); err != nil {
		return "", err
	}
	steppedDown := strings.Count(readFile(k.logs[0]), "Entering BACKUP STATE") > before
	vip := k.hasVIP(0)
	switch {
	case steppedDown && !vip:
		return "the master believed the forged adverts: it stepped down and released the VIP", nil
	case steppedDown:
		return "the master believed the forged adverts and stepped down", nil
	}
	return "the forged adverts were ignored", nil
}

// kaAdvertLoss loses pct % of the adverts keepalived's backup receives.
func kaAdvertLoss(pct int) func(context.Context, *env) (string, error) {
	return func(ctx context.Context, e *env) (string, error) {
		k := e.ka
		before := strings.Count(readFile(k.logs[1]), "Entering MASTER STATE")
		if err := addFault(k.hosts[1], lossRule(pct)); err != nil {
			return "", err
		}
		if err := sleep(ctx, lossWindow); err != nil {
			return "", err
		}
		dropped := dropFault(k.hosts[1])
		flaps := strings.Count(readFile(k.logs[1]), "Entering MASTER STATE") - before
		return fmt.Sprintf("%d flaps of the backup in %v; %s", flaps, lossWindow, lossReport(dropped)), nil
	}
}

// kaPartition partitions keepalived's VRRP path as the halb row does, and
// heals it while the client is at the backup's MAC.
func kaPartition(ctx context.Context, e *env) (string, error) {
	k := e.ka
	var mac [2]string
	for i, h := range k.hosts {
		out, err := h.Run("ip", "-br", "link", "show", "eth0")
		f := strings.Fields(string(out))
		if err != nil || len(f) < 3 {
			return "", fmt.Errorf("%s: eth0's address: %v: %s", h.Name, err, out)
		}
		mac[i] = f[2]
	}
	// The client talks to the VIP all along, as the halb row's traffic does.
	at := func() string {
		_, _ = e.s.Client.Run("ping", "-c", "1", "-W", "1", kaVIP) // only its ARP matters
		return e.clientMAC(kaVIP)
	}
	at()
	if err := addFault(k.hosts[1], "ip protocol vrrp drop"); err != nil {
		return "", err
	}
	split := time.Now()
	for at() != mac[1] {
		if time.Since(split) > bound+3*time.Second {
			dropFault(k.hosts[1])
			return "the client stayed at the master's MAC throughout the partition", nil
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return "", err
		}
	}
	dropFault(k.hosts[1])
	healed := time.Now()
	for at() != mac[0] {
		if time.Since(healed) > 2*(3*advert+slack) {
			return fmt.Sprintf("client still at the backup's MAC %s after the heal", secs(2*(3*advert+slack))), nil
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return "", err
		}
	}
	return fmt.Sprintf("client at the master's MAC %s after the heal", secs(time.Since(healed))), nil
}

// kaFreeze freezes keepalived's master for 5 s and counts the state
// changes of both nodes from then until 3 adverts after it resumes.
func kaFreeze(ctx context.Context, e *env) (string, error) {
	k := e.ka
	const entering = "Entering "
	before := [2]int{strings.Count(readFile(k.logs[0]), entering), strings.Count(readFile(k.logs[1]), entering)}
	pgid := -k.cmds[0].Process.Pid
	if err := syscall.Kill(pgid, syscall.SIGSTOP); err != nil {
		return "", err
	}
	err := sleep(ctx, 5*time.Second)
	if cerr := syscall.Kill(pgid, syscall.SIGCONT); cerr != nil || err != nil {
		return "", errors.Join(err, cerr)
	}
	if err := sleep(ctx, 3*advert+slack); err != nil {
		return "", err
	}
	changes := [2]int{strings.Count(readFile(k.logs[0]), entering) - before[0], strings.Count(readFile(k.logs[1]), entering) - before[1]}
	return fmt.Sprintf("state changes master %d, backup %d; one master after: %v", changes[0], changes[1], k.hasVIP(0) != k.hasVIP(1)), nil
}

// kaMalformed reloads keepalived's master with configurations with errors
// and says what became of it.
func kaMalformed(ctx context.Context, e *env) (string, error) {
	k := e.ka
	good, err := os.ReadFile(k.confs[0])
	if err != nil {
		return "", err
	}
	bad := []struct{ name, text string }{
		{"unknown keyword", strings.Replace(string(good), "  advert_int 1\n", "  advert_int 1\n  bogus_key 1\n", 1)},
		{"VRID 300", strings.Replace(string(good), fmt.Sprintf("virtual_router_id %d", kaVRID), "virtual_router_id 300", 1)},
		{"unbalanced brace", strings.TrimSuffix(string(good), "}\n")},
	}
	var out []string
	for _, b := range bad {
		if err := os.WriteFile(k.confs[0], []byte(b.text), 0o644); err != nil {
			return "", err
		}
		if k.cmds[0] == nil {
			return "", fmt.Errorf("%s: keepalived is not running", k.hosts[0].Name)
		}
		if err := k.cmds[0].Process.Signal(syscall.SIGHUP); err != nil {
			return "", err
		}
		if err := sleep(ctx, 2*advert); err != nil {
			return "", err
		}
		state := "kept its VIP"
		select {
		case <-k.done[0]:
			state = "exited"
			k.cmds[0] = nil
		default:
			if !k.hasVIP(0) {
				state = "released its VIP"
			}
		}
		out = append(out, b.name+": "+state)
		if err := os.WriteFile(k.confs[0], good, 0o644); err != nil {
			return "", err
		}
		if k.cmds[0] == nil {
			err = k.start(0)
		} else {
			err = k.cmds[0].Process.Signal(syscall.SIGHUP)
		}
		if err != nil {
			return "", err
		}
		if err := k.settle(ctx); err != nil {
			return "", err
		}
	}
	return strings.Join(out, ", "), nil
}
