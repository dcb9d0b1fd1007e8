package health

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"

	"halb/internal/config"
)

// connector runs TCP connect checks the way a check engine in C would:
// raw non-blocking sockets and one epoll loop, so that thousands of
// checks a second cost a few system calls each and no thread hand-offs
// (a connect to a local namespace does the whole handshake inside the
// system call, long enough for Go's runtime to hand the thread off when
// it goes through the ordinary syscall path).
type connector struct {
	epfd, wakefd int
	mu           sync.Mutex
	next         uint64
	waiting      map[uint64]*pending
	done         chan struct{}
}

type pending struct {
	fd   int
	done func(error)
	stop func() bool // releases the abort on ctx's end
}

func newConnector() (*connector, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create: %w", err)
	}
	wakefd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN}
	setToken(&ev, 0)
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wakefd, &ev); err != nil {
		unix.Close(epfd)
		unix.Close(wakefd)
		return nil, fmt.Errorf("epoll_ctl: %w", err)
	}
	c := &connector{epfd: epfd, wakefd: wakefd, next: 1, waiting: map[uint64]*pending{}, done: make(chan struct{})}
	go c.loop()
	return c, nil
}

// close stops the loop and releases its descriptors. Every started
// connect must have reported.
func (c *connector) close() {
	unix.Write(c.wakefd, []byte{1, 0, 0, 0, 0, 0, 0, 0})
	<-c.done
	unix.Close(c.epfd)
	unix.Close(c.wakefd)
}

func setToken(ev *unix.EpollEvent, t uint64) {
	*(*uint64)(unsafe.Pointer(&ev.Fd)) = t
}

func token(ev *unix.EpollEvent) uint64 {
	return *(*uint64)(unsafe.Pointer(&ev.Fd))
}

func (c *connector) loop() {
	defer close(c.done)
	events := make([]unix.EpollEvent, 256)
	for {
		n, err := unix.EpollWait(c.epfd, events, -1)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return
		}
		for i := range n {
			t := token(&events[i])
			if t == 0 {
				return
			}
			p := c.take(t)
			if p == nil {
				continue // the check timed out and took its socket back
			}
			if p.stop != nil {
				p.stop()
			}
			soerr, err := unix.GetsockoptInt(p.fd, unix.SOL_SOCKET, unix.SO_ERROR)
			if err == nil && soerr != 0 {
				err = unix.Errno(soerr)
			}
			resetClose(p.fd)
			p.done(err)
		}
	}
}

// start opens a TCP connection to target for a check and returns; done
// gets nil once the handshake completed, else the error, and the socket
// is reset. No goroutine waits: the loop (or ctx's end) calls done.
func (c *connector) start(ctx context.Context, env netEnv, ch config.Check, target netip.AddrPort, done func(error)) {
	family := unix.AF_INET6
	if target.Addr().Is4() {
		family = unix.AF_INET
	}
	var fd int
	err := env.hook(func() error {
		var err error
		fd, err = unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
		return err
	})
	if err != nil {
		done(fmt.Errorf("socket: %w", err))
		return
	}
	if err := prepare(fd, ch, family); err != nil {
		resetClose(fd)
		done(err)
		return
	}
	if err := rawConnect(fd, target); err != unix.EINPROGRESS {
		resetClose(fd)
		done(err)
		return
	}
	p := &pending{fd: fd, done: done}
	c.mu.Lock()
	t := c.next
	c.next++
	c.waiting[t] = p
	c.mu.Unlock()
	ev := unix.EpollEvent{Events: unix.EPOLLOUT | unix.EPOLLONESHOT}
	setToken(&ev, t)
	if err := unix.EpollCtl(c.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		c.take(t)
		resetClose(fd)
		done(fmt.Errorf("epoll_ctl: %w", err))
		return
	}
	// Until the loop answers, the end of ctx (timeout, removal) aborts.
	c.mu.Lock()
	if _, ok := c.waiting[t]; ok {
		p.stop = context.AfterFunc(ctx, func() {
			if c.take(t) != nil {
				unix.EpollCtl(c.epfd, unix.EPOLL_CTL_DEL, fd, nil)
				resetClose(fd)
				done(ctx.Err())
			}
		})
	}
	c.mu.Unlock()
}

// take removes and returns a pending connect, or nil when another path
// (the loop, a timeout) took it first.
func (c *connector) take(t uint64) *pending {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.waiting[t]
	delete(c.waiting, t)
	return p
}

// prepare applies the check's firewall mark, interface and source address.
func prepare(fd int, ch config.Check, family int) error {
	if ch.Mark != 0 {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_MARK, int(ch.Mark)); err != nil {
			return &socketSetupError{fmt.Errorf("setting SO_MARK %d: %w", ch.Mark, err)}
		}
	}
	if ch.Source == "" {
		return nil
	}
	src, err := netip.ParseAddr(ch.Source)
	if err != nil {
		if err := unix.BindToDevice(fd, ch.Source); err != nil {
			return &socketSetupError{fmt.Errorf("binding to interface %s: %w", ch.Source, err)}
		}
		return nil
	}
	var sa unix.Sockaddr = &unix.SockaddrInet6{Addr: src.As16()}
	if family == unix.AF_INET {
		sa = &unix.SockaddrInet4{Addr: src.As4()}
	}
	if err := unix.Bind(fd, sa); err != nil {
		return &socketSetupError{fmt.Errorf("binding to source %s: %w", src, err)}
	}
	return nil
}

// rawConnect starts a non-blocking connect without entering the
// runtime's syscall state (see connector).
func rawConnect(fd int, target netip.AddrPort) error {
	port := target.Port()
	var e unix.Errno
	if target.Addr().Is4() {
		sa := unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: target.Addr().As4()}
		p := (*[2]byte)(unsafe.Pointer(&sa.Port))
		p[0], p[1] = byte(port>>8), byte(port)
		_, _, e = unix.RawSyscall(unix.SYS_CONNECT, uintptr(fd), uintptr(unsafe.Pointer(&sa)), unsafe.Sizeof(sa))
	} else {
		sa := unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: target.Addr().As16()}
		p := (*[2]byte)(unsafe.Pointer(&sa.Port))
		p[0], p[1] = byte(port>>8), byte(port)
		_, _, e = unix.RawSyscall(unix.SYS_CONNECT, uintptr(fd), uintptr(unsafe.Pointer(&sa)), unsafe.Sizeof(sa))
	}
	if e != 0 {
		return e
	}
	return nil
}

// resetClose closes a socket with a reset: no TIME_WAIT on the load
// balancer.
func resetClose(fd int) {
	unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
	unix.RawSyscall(unix.SYS_CLOSE, uintptr(fd), 0, 0)
}

var errNoConnector = errors.New("no connector: the checker is not running")

// lazyConnector starts the connector on first use, so that a checker
// without TCP checks runs no epoll loop.
type lazyConnector struct {
	once sync.Once
	c    *connector
	err  error
}

func (l *lazyConnector) get() (*connector, error) {
	if l == nil {
		return nil, errNoConnector
	}
	l.once.Do(func() { l.c, l.err = newConnector() })
	return l.c, l.err
}

// close stops the connector if it was started; no check may be running.
func (l *lazyConnector) close() {
	l.once.Do(func() {})
	if l.c != nil {
		l.c.close()
	}
}
