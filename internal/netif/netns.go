package netif

import (
	"fmt"
	"os"
	"runtime"
	"syscall"

	"github.com/vishvananda/netns"
)

// EnterNamespace makes the running program run in the named network
// namespace (/run/netns/NAME): when it runs elsewhere, it executes itself
// again, with the same arguments and environment, from a thread moved
// into the namespace, and returns only on failure. In the namespace
// already, it returns nil.
func EnterNamespace(name string) error {
	want, err := netns.GetFromName(name)
	if err != nil {
		return fmt.Errorf("network namespace %s: %w", name, err)
	}
	defer want.Close()
	cur, err := netns.Get()
	if err != nil {
		return fmt.Errorf("network namespace %s: current namespace: %w", name, err)
	}
	defer cur.Close()
	if cur.Equal(want) {
		return nil
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("network namespace %s: %w", name, err)
	}
	// execve keeps the calling thread's namespaces.
	runtime.LockOSThread()
	if err := netns.Set(want); err != nil {
		return fmt.Errorf("enter network namespace %s: %w", name, err)
	}
	err = syscall.Exec(exe, os.Args, os.Environ())
	return fmt.Errorf("run again in network namespace %s: %w", name, err)
}
