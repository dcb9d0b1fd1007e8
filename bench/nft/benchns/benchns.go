// Package benchns gives the nftables benchmarks fresh network namespaces,
// each removed by Close.
package benchns

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
)

// NS is a named network namespace and an open handle on it.
type NS struct {
	Name string
	file *os.File
}

var count atomic.Int64

// New adds a namespace named prefix, the process id and a count.
func New(prefix string) (*NS, error) {
	name := fmt.Sprintf("%s%d-%d", prefix, os.Getpid(), count.Add(1))
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("ip netns add: %v: %s", err, out)
	}
	f, err := os.Open("/var/run/netns/" + name)
	if err != nil {
		_ = exec.Command("ip", "netns", "del", name).Run() // best effort, as in Close
		return nil, err
	}
	return &NS{Name: name, file: f}, nil
}

// Fd is the namespace's file descriptor, for netlink connections.
func (ns *NS) Fd() int { return int(ns.file.Fd()) }

// Run runs a program in the namespace and returns its standard output; an
// error carries what it printed on standard error.
func (ns *NS) Run(name string, args ...string) ([]byte, error) {
	out, err := exec.Command("ip", append([]string{"netns", "exec", ns.Name, name}, args...)...).Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return nil, fmt.Errorf("%s: %v: %s", name, err, ee.Stderr)
		}
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return out, nil
}

// NFT loads a ruleset text with nft -f in the namespace.
func (ns *NS) NFT(text string) error {
	cmd := exec.Command("ip", "netns", "exec", ns.Name, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(text)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("nft -f: %v: %s", err, out)
	}
	return nil
}

// Close removes the namespace.
func (ns *NS) Close() {
	_ = ns.file.Close()                                   // a namespace handle, only read
	_ = exec.Command("ip", "netns", "del", ns.Name).Run() // best effort: a left namespace is harmless
}
