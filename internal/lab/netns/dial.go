package netns

import (
	"context"
	"fmt"
	"net"
	"runtime"

	"github.com/vishvananda/netns"
)

// DialContext opens a connection from inside the host's namespace. The
// socket is created on a thread switched into the namespace and keeps
// belonging to it, so the caller can use it from anywhere.
func (h *Host) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var conn net.Conn
	err := h.Do(func() error {
		var d net.Dialer
		var err error
		conn, err = d.DialContext(ctx, network, addr)
		return err
	})
	return conn, err
}

// Listen opens a listener inside the host's namespace.
func (h *Host) Listen(network, addr string) (net.Listener, error) {
	var ln net.Listener
	err := h.Do(func() error {
		var err error
		ln, err = net.Listen(network, addr)
		return err
	})
	return ln, err
}

// Do runs f on an OS thread switched into the host's namespace. Sockets f
// creates stay in the namespace; goroutines f starts do not.
func (h *Host) Do(f func() error) error {
	target, err := netns.GetFromName(h.Name)
	if err != nil {
		return fmt.Errorf("namespace %s: %w", h.Name, err)
	}
	defer target.Close()
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("current namespace: %w", err)
	}
	defer orig.Close()
	if err := netns.Set(target); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter namespace %s: %w", h.Name, err)
	}
	ferr := f()
	if err := netns.Set(orig); err != nil {
		// The thread is stuck in the lab namespace: leaving it locked makes
		// the runtime discard it when this goroutine ends.
		return fmt.Errorf("leave namespace %s: %w", h.Name, err)
	}
	runtime.UnlockOSThread()
	return ferr
}

// Attach returns the host of an existing namespace (made by another
// process, e.g. a lab brought up earlier).
func Attach(name string) *Host { return &Host{Name: name} }
