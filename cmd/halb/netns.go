package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"

	"halb/internal/config"
)

// netnsDir is where named network namespaces are bound (ip netns add).
const netnsDir = "/run/netns"

// netnsMarker is set in the environment of the image halb re-executes
// inside the namespace: if that image is still not in it, halb stops
// instead of re-executing again.
const netnsMarker = "HALB_NET_NAMESPACE"

// enterNetNamespace makes the whole process run in the named network
// namespace (nothing for ""), before anything is opened.
//
// setns moves only the calling thread, and the Go runtime has started
// others, which would stay behind and could run any goroutine. So halb
// locks the goroutine to its thread, moves that thread, and executes its
// own binary again with the same arguments: execve leaves a single thread,
// this one, so the new image — every thread it ever starts, and so every
// socket, netlink and nftables handle — is in the namespace from its
// first instruction. The process keeps its id (systemd's service and
// NOTIFY_SOCKET stay valid). It returns only when already in the
// namespace, or with an error.
func enterNetNamespace(name string) error {
	if name == "" {
		return nil
	}
	path := filepath.Join(netnsDir, name)
	in, err := sameNetNamespace("/proc/self/ns/net", path)
	if err != nil {
		return fmt.Errorf("enter net_namespace %s: %w", name, err)
	}
	if in {
		return nil
	}
	if os.Getenv(netnsMarker) == name {
		return fmt.Errorf("enter net_namespace %s: re-executed, yet not in it", name)
	}
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("enter net_namespace %s: %w", name, err)
	}
	defer unix.Close(fd)
	// Never unlocked: on failure this thread may be in the namespace,
	// and the caller exits.
	runtime.LockOSThread()
	if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("enter net_namespace %s: setns: %w", name, err)
	}
	env := append(os.Environ(), netnsMarker+"="+name)
	if err := syscall.Exec("/proc/self/exe", os.Args, env); err != nil {
		return fmt.Errorf("enter net_namespace %s: re-execute halb: %w", name, err)
	}
	return nil // not reached: Exec returns only on failure
}

// sameNetNamespace says whether two namespace files name the same
// namespace (the same device and inode).
func sameNetNamespace(a, b string) (bool, error) {
	var sa, sb unix.Stat_t
	if err := unix.Stat(a, &sa); err != nil {
		return false, fmt.Errorf("stat %s: %w", a, err)
	}
	if err := unix.Stat(b, &sb); err != nil {
		return false, fmt.Errorf("stat %s: %w", b, err)
	}
	return sa.Dev == sb.Dev && sa.Ino == sb.Ino, nil
}

// netNamespaceMissing warns, for halb validate, when the configuration's
// net_namespace does not exist on this machine: not an error, since it
// may be created before halb starts.
func netNamespaceMissing(c *config.Config) config.Diagnostics {
	if c == nil || c.NetNamespace == "" {
		return nil
	}
	path := filepath.Join(netnsDir, c.NetNamespace)
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	return config.Diagnostics{netNamespaceDiag(c, config.Warning,
		fmt.Sprintf("net_namespace: %s does not exist on this machine; halb run fails unless it is created first", path))}
}

// netNamespaceDiag is a diagnostic located at the configuration's
// net_namespace.
func netNamespaceDiag(c *config.Config, sev config.Severity, msg string) config.Diagnostic {
	pos, _ := c.PositionOf("net_namespace")
	return config.Diagnostic{File: c.File, Pos: pos, Severity: sev, Message: msg}
}
