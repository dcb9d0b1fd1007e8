// Package netns builds throwaway network topologies out of Linux network
// namespaces, veth pairs and bridges, with the iproute2 tools. Every name
// it creates starts with the lab's prefix, so a lab (or the leftovers of a
// crashed one) can always be found and removed.
package netns

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
)

// Lab is a set of namespaces created together and removed together.
type Lab struct {
	prefix string

	mu         sync.Mutex
	namespaces []string
}

// labSeq numbers labs and vethSeq veth pairs within this process, so that
// several labs in one process never reuse a name.
var labSeq, vethSeq atomic.Int64

// New starts an empty lab whose namespaces are named "<prefix><pid>x<n>-…".
// The prefix should say who made the lab ("halbt" for tests).
func New(prefix string) *Lab {
	return &Lab{prefix: fmt.Sprintf("%s%dx%d-", prefix, os.Getpid(), labSeq.Add(1))}
}

// Prefix returns the prefix of every namespace of this lab.
func (l *Lab) Prefix() string { return l.prefix }

// Host is one network namespace of a lab.
type Host struct {
	lab  *Lab
	Name string // the namespace's name
}

// AddHost creates a namespace with its loopback up.
func (l *Lab) AddHost(name string) (*Host, error) {
	ns := l.prefix + name
	if out, err := run("ip", "netns", "add", ns); err != nil {
		return nil, fmt.Errorf("create namespace %s: %v: %s", ns, err, out)
	}
	l.mu.Lock()
	l.namespaces = append(l.namespaces, ns)
	l.mu.Unlock()
	h := &Host{lab: l, Name: ns}
	if err := h.IP("link", "set", "lo", "up"); err != nil {
		return nil, err
	}
	return h, nil
}

// AddSwitch creates a namespace holding a bridge "br0", so that hosts
// connected to it share one link.
func (l *Lab) AddSwitch(name string) (*Host, error) {
	h, err := l.AddHost(name)
	if err != nil {
		return nil, err
	}
	if err := h.IP("link", "add", "br0", "type", "bridge"); err != nil {
		return nil, err
	}
	if err := h.IP("link", "set", "br0", "up"); err != nil {
		return nil, err
	}
	return h, nil
}

// Connect joins host to the switch's bridge with a veth pair; the host's
// end is named ifname and gets the given addresses ("192.0.2.1/24"). It
// returns the name of the switch-side port, which can be set down to cut
// the host off.
func (l *Lab) Connect(host, sw *Host, ifname string, addrs ...string) (string, error) {
	seq := vethSeq.Add(1)
	tmp := fmt.Sprintf("hv%dx%d", os.Getpid()%100000, seq)
	port := fmt.Sprintf("p%d-%s", seq, ifname)
	if len(port) > 15 {
		port = port[:15]
	}
	steps := [][]string{
		{"ip", "link", "add", tmp, "type", "veth", "peer", "name", tmp + "b"},
		{"ip", "link", "set", tmp, "netns", host.Name, "name", ifname},
		{"ip", "link", "set", tmp + "b", "netns", sw.Name, "name", port},
	}
	for _, s := range steps {
		if out, err := run(s...); err != nil {
			_, _ = run("ip", "link", "del", tmp) // best effort: the step's error is the one to report
			return "", fmt.Errorf("%s: %v: %s", strings.Join(s, " "), err, out)
		}
	}
	if err := sw.IP("link", "set", port, "master", "br0", "up"); err != nil {
		return "", err
	}
	for _, a := range addrs {
		args := []string{"addr", "add", a, "dev", ifname}
		if strings.Contains(a, ":") {
			args = append(args, "nodad")
		}
		if err := host.IP(args...); err != nil {
			return "", err
		}
	}
	return port, host.IP("link", "set", ifname, "up")
}

// IP runs "ip ARGS…" inside the host.
func (h *Host) IP(args ...string) error {
	out, err := h.Run("ip", args...)
	if err != nil {
		return fmt.Errorf("%s: ip %s: %v: %s", h.Name, strings.Join(args, " "), err, out)
	}
	return nil
}

// Run runs a command inside the host and returns its combined output.
func (h *Host) Run(name string, args ...string) ([]byte, error) {
	return run(append([]string{"ip", "netns", "exec", h.Name, name}, args...)...)
}

// Command returns a command that runs inside the host, for the caller to
// start and wait for.
func (h *Host) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", h.Name, name}, args...)...)
}

// Close kills what still runs in the lab's namespaces and removes them.
func (l *Lab) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	var errs []string
	for i := len(l.namespaces) - 1; i >= 0; i-- {
		if err := remove(l.namespaces[i]); err != nil {
			errs = append(errs, err.Error())
		}
	}
	l.namespaces = nil
	if len(errs) > 0 {
		return fmt.Errorf("lab cleanup: %s", strings.Join(errs, "; "))
	}
	return nil
}

// Leftovers lists existing namespaces whose names start with prefix.
func Leftovers(prefix string) ([]string, error) {
	out, err := run("ip", "netns", "list")
	if err != nil {
		return nil, fmt.Errorf("ip netns list: %v: %s", err, out)
	}
	var found []string
	for _, line := range strings.Split(string(out), "\n") {
		name, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		if name != "" && strings.HasPrefix(name, prefix) {
			found = append(found, name)
		}
	}
	return found, nil
}

// RemoveLeftovers removes every namespace whose name starts with prefix,
// killing the processes inside first.
func RemoveLeftovers(prefix string) error {
	names, err := Leftovers(prefix)
	if err != nil {
		return err
	}
	for _, n := range names {
		if err := remove(n); err != nil {
			return err
		}
	}
	return nil
}

// RemoveOrphans removes the namespaces of labs named "<prefix><pid>x…"
// whose process no longer exists.
func RemoveOrphans(prefix string) error {
	names, err := Leftovers(prefix)
	if err != nil {
		return err
	}
	for _, n := range names {
		pidText, _, ok := strings.Cut(strings.TrimPrefix(n, prefix), "x")
		pid, err := strconv.Atoi(pidText)
		if !ok || err != nil || pid <= 0 || syscall.Kill(pid, 0) == nil || pid == os.Getpid() {
			continue
		}
		if err := remove(n); err != nil {
			return err
		}
	}
	return nil
}

func remove(ns string) error {
	if pids, err := run("ip", "netns", "pids", ns); err == nil {
		for _, pid := range strings.Fields(string(pids)) {
			_, _ = run("kill", "-9", pid) // it may have exited already
		}
	}
	if out, err := run("ip", "netns", "del", ns); err != nil && !bytes.Contains(out, []byte("No such file")) {
		return fmt.Errorf("delete namespace %s: %v: %s", ns, err, out)
	}
	return nil
}

func run(args ...string) ([]byte, error) {
	return exec.Command(args[0], args[1:]...).CombinedOutput()
}
