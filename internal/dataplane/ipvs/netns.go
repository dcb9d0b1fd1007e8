package ipvs

import (
	"errors"
	"fmt"
	"runtime"

	"golang.org/x/sys/unix"
)

// WithNetNS programs the network namespace of the given file descriptor
// instead of the caller's (IPVS state, sync daemons and sysctls are all
// per namespace).
func WithNetNS(fd int) Option { return func(d *Dataplane) { d.netns = fd } }

// inNetNS runs f on an OS thread switched to the namespace fd (0: the
// caller's), then switches the thread back. Sockets keep the namespace
// they were created in; files under /proc/sys/net and /proc/thread-self/net
// are those of the thread that opens them. A thread that cannot be
// switched back is never given back to the scheduler.
func inNetNS(fd int, f func() error) error {
	if fd == 0 {
		return f()
	}
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			done <- fmt.Errorf("enter network namespace: %w", err)
			return
		}
		defer unix.Close(orig)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			done <- fmt.Errorf("enter network namespace: %w", err)
			return
		}
		ferr := f()
		if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
			// Stay locked: the thread ends with this goroutine.
			done <- errors.Join(ferr, fmt.Errorf("leave network namespace: %w", err))
			return
		}
		runtime.UnlockOSThread()
		done <- ferr
	}()
	return <-done
}
