package health

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"halb/internal/clock"
	"halb/internal/config"
)

// connector runs TCP and plain HTTP checks the way a check engine in C
// would: raw non-blocking sockets, one epoll loop that also keeps the
// checks' timeouts (in a heap), and no goroutine, timer or thread
// hand-off per check, so that thousands of checks a second cost a few
// system calls each. A check's socket is dissolved rather than closed
// (connect to AF_UNSPEC) and kept for the next check. (A connect to a local namespace does the whole
// handshake inside the system call, long enough for Go's runtime to hand
// the thread off when it goes through the ordinary syscall path; hence
// the raw system calls.)
type connector struct {
	epfd, wakefd int
	// The loop waits for epfd through the runtime's poller, so that no
	// thread blocks in epoll_wait holding a P (which the runtime then
	// hands off, again and again).
	poll     *os.File
	pollConn syscall.RawConn
	clock    clock.Clock
	epoch    time.Time // deadlines count from here
	buf      []byte    // the loop's read buffer

	mu       sync.Mutex
	slots    []*conn // by token; a conn keeps its slot
	free     []uint32
	timeouts connHeap
	// idle holds sockets that are connected nowhere (see recycle), still
	// registered with epoll, by how they were set up; the most recently
	// used last.
	idle map[sockKey][]*conn
	// sleeping is set while the loop waits for events until wakeAt
	// (forever when negative).
	sleeping         bool
	wakeAt           time.Duration
	aborting, closed bool
	done             chan struct{}
	expired          []*conn // the loop's scratch list
}

// job is one check on the connector.
type job interface {
	// request returns the bytes to send once connected; a check with
	// none ends when the handshake completes.
	request() []byte
	// received takes the next bytes of the response, or the end of it
	// when the peer closed (eof). It reports whether the check has read
	// as far as it needs.
	received(b []byte, eof bool) bool
	// finish reports the end of the check, once: err is nil when the
	// exchange ran to its end, else what stopped it in phase ph.
	finish(err error, ph phase, latency time.Duration)
}

// phase is how far a connection got.
type phase uint8

const (
	phaseConnect phase = iota
	phaseRequest
	phaseResponse
)

// sockKey is how a socket was set up: the checks that can reuse it.
type sockKey struct {
	family int
	mark   uint32
	source string
}

// idleTime is how long an unused socket is kept for reuse.
const idleTime = time.Second

// conn is one check's connection on the loop, and the socket it keeps
// between checks.
type conn struct {
	slot     uint32
	gen      uint32 // counts the slot's uses, so stale tokens miss
	active   bool
	fd       int  // -1 when the slot has no socket
	polled   bool // the socket is registered with epoll
	key      sockKey
	idleFrom time.Duration // since epoch, while idle
	ph       phase
	req      []byte
	sent     int
	job      job
	begin    time.Time
	deadline time.Duration // since epoch
	hidx     int           // in timeouts
}

func newConnector(clk clock.Clock) (*connector, error) {
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
	if err := unix.SetNonblock(epfd, true); err != nil {
		unix.Close(epfd)
		unix.Close(wakefd)
		return nil, fmt.Errorf("epoll fd: %w", err)
	}
	poll := os.NewFile(uintptr(epfd), "health-epoll")
	pollConn, err := poll.SyscallConn()
	if err != nil {
		_ = poll.Close() // already failing: the first error is the one to report
		unix.Close(wakefd)
		return nil, fmt.Errorf("epoll fd: %w", err)
	}
	c := &connector{epfd: epfd, wakefd: wakefd, poll: poll, pollConn: pollConn, clock: clk, epoch: clk.Now(),
		buf: make([]byte, 16<<10), idle: map[sockKey][]*conn{}, done: make(chan struct{})}
	go c.loop()
	return c, nil
}

// abort ends every check in flight, and every later one at once, with
// context.Canceled.
func (c *connector) abort() {
	c.mu.Lock()
	c.aborting = true
	c.mu.Unlock()
	c.wake()
}

// close stops the loop and releases its descriptors. Every started
// check must have finished (abort ends them).
func (c *connector) close() {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.wake()
	<-c.done
	for _, list := range c.idle {
		for _, cn := range list {
			unix.Close(cn.fd)
		}
	}
	_ = c.poll.Close() // the epoll descriptor; fails only when bad
	unix.Close(c.wakefd)
}

func (c *connector) wake() {
	one := [8]byte{1}
	// Fails only when the counter is full: the loop is woken already.
	_, _ = unix.Write(c.wakefd, one[:])
}

func setToken(ev *unix.EpollEvent, t uint64) {
	*(*uint64)(unsafe.Pointer(&ev.Fd)) = t
}

func token(ev *unix.EpollEvent) uint64 {
	return *(*uint64)(unsafe.Pointer(&ev.Fd))
}

// start opens a TCP connection to target for a check and returns; the
// loop runs the rest of the exchange and calls j.finish, at the latest
// when the check's timeout expires.
func (c *connector) start(env netEnv, ch config.Check, target netip.AddrPort, j job) {
	begin := c.clock.Now()
	key := sockKey{family: unix.AF_INET6, mark: ch.Mark, source: ch.Source}
	if target.Addr().Is4() {
		key.family = unix.AF_INET
	}
	c.mu.Lock()
	if c.aborting {
		c.mu.Unlock()
		j.finish(context.Canceled, phaseConnect, c.clock.Now().Sub(begin))
		return
	}
	cn := c.alloc(key)
	// Until the epoll registration below carries the new token, events
	// for the socket miss (stale token): the conn is this function's.
	cn.gen++
	cn.ph, cn.req, cn.sent, cn.job, cn.begin = phaseConnect, j.request(), 0, j, begin
	c.mu.Unlock()
	if cn.fd < 0 {
		fd, err := newSocket(env, ch, key.family)
		if err != nil {
			c.abandon(cn, false, err, c.clock.Now().Sub(begin))
			return
		}
		cn.fd, cn.polled = fd, false
	}
	if err := rawConnect(cn.fd, target); err != nil && err != unix.EINPROGRESS {
		c.abandon(cn, true, err, c.clock.Now().Sub(begin))
		return
	}
	c.mu.Lock()
	cn.deadline = begin.Sub(c.epoch) + ch.Timeout.D()
	heap.Push(&c.timeouts, cn)
	fd, gen, op := cn.fd, cn.gen, unix.EPOLL_CTL_MOD
	if !cn.polled {
		op, cn.polled = unix.EPOLL_CTL_ADD, true
	}
	wake := c.sleeping && (c.wakeAt < 0 || cn.deadline < c.wakeAt)
	if wake {
		c.sleeping = false
	}
	c.mu.Unlock()
	if wake {
		c.wake()
	}
	// The registration reports the socket's state now and on every
	// change: the loop owns the conn from here.
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET}
	setToken(&ev, uint64(cn.slot+1)<<32|uint64(gen))
	err := unix.EpollCtl(c.epfd, op, fd, &ev)
	if err == unix.ENOENT {
		err = unix.EpollCtl(c.epfd, unix.EPOLL_CTL_ADD, fd, &ev)
	}
	if err == nil {
		return
	}
	c.mu.Lock()
	mine := cn.active && cn.gen == gen // else its timeout already ended it
	if mine {
		heap.Remove(&c.timeouts, cn.hidx)
	}
	c.mu.Unlock()
	if mine {
		closeSocket(fd, true)
		cn.fd = -1
		c.abandon(cn, false, fmt.Errorf("epoll_ctl: %w", err), c.clock.Now().Sub(begin))
	}
}

// newSocket opens a non-blocking TCP socket set up for a check.
func newSocket(env netEnv, ch config.Check, family int) (int, error) {
	var fd int
	err := env.hook(func() error {
		var err error
		fd, err = unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
		return err
	})
	if err != nil {
		return -1, fmt.Errorf("socket: %w", err)
	}
	if err := prepare(fd, ch, family); err != nil {
		unix.Close(fd)
		return -1, err
	}
	// No ACK of the server's SYN-ACK until there is data to carry it: a
	// connect-only check then resets the connection before completing the
	// handshake (SYN, SYN-ACK, RST: the server's application never sees
	// it), and an HTTP check's request carries the ACK. On a connecting
	// socket TCP_DEFER_ACCEPT does this and, unlike TCP_QUICKACK, outlives
	// the socket's connections, so it is set once.
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_DEFER_ACCEPT, 1); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("setting TCP_DEFER_ACCEPT: %w", err)
	}
	return fd, nil
}

// abandon ends a check that start could not hand to the loop: its socket
// is kept for reuse (when keep is set and it can be) and j told err.
func (c *connector) abandon(cn *conn, keep bool, err error, latency time.Duration) {
	j := cn.job
	if keep {
		c.recycle(cn)
	}
	c.mu.Lock()
	c.release(cn)
	c.mu.Unlock()
	j.finish(err, phaseConnect, latency)
}

// alloc returns a conn marked active, with an idle socket set up as key
// asks when there is one, else with none. c.mu is held.
func (c *connector) alloc(key sockKey) *conn {
	var cn *conn
	if list := c.idle[key]; len(list) > 0 {
		cn = list[len(list)-1]
		list[len(list)-1] = nil
		c.idle[key] = list[:len(list)-1]
	} else if n := len(c.free); n > 0 {
		cn = c.slots[c.free[n-1]]
		c.free = c.free[:n-1]
	} else {
		cn = &conn{slot: uint32(len(c.slots)), fd: -1}
		c.slots = append(c.slots, cn)
	}
	cn.active, cn.key, cn.hidx = true, key, -1
	return cn
}

// recycle ends a conn's connection, resetting it when established, so
// that its socket can be connected again; when that fails the socket is
// closed.
func (c *connector) recycle(cn *conn) {
	if rawDisconnect(cn.fd) != nil {
		closeSocket(cn.fd, true)
		cn.fd = -1
	}
}

// release takes an active conn off the loop; its socket, if it has one,
// goes idle. c.mu is held.
func (c *connector) release(cn *conn) {
	if cn.hidx >= 0 {
		heap.Remove(&c.timeouts, cn.hidx)
	}
	cn.active = false
	cn.gen++
	cn.job, cn.req = nil, nil
	if cn.fd < 0 {
		c.free = append(c.free, cn.slot)
		return
	}
	cn.idleFrom = c.clock.Now().Sub(c.epoch)
	c.idle[cn.key] = append(c.idle[cn.key], cn)
}

// trim closes the sockets idle for longer than idleTime and returns when
// the next one will be, or -1. c.mu is held.
func (c *connector) trim(now time.Duration) time.Duration {
	next := time.Duration(-1)
	for key, list := range c.idle {
		n := 0
		for n < len(list) && now-list[n].idleFrom >= idleTime {
			cn := list[n]
			unix.Close(cn.fd)
			cn.fd = -1
			c.free = append(c.free, cn.slot)
			n++
		}
		if n == len(list) {
			delete(c.idle, key)
			continue
		}
		c.idle[key] = append(list[:0], list[n:]...)
		if at := list[0].idleFrom + idleTime; next < 0 || at < next {
			next = at
		}
	}
	return next
}

// lookup returns the active conn of an epoll token, or nil.
func (c *connector) lookup(tok uint64) *conn {
	slot, gen := tok>>32-1, uint32(tok)
	c.mu.Lock()
	defer c.mu.Unlock()
	if slot >= uint64(len(c.slots)) {
		return nil
	}
	if cn := c.slots[slot]; cn.active && cn.gen == gen {
		return cn
	}
	return nil
}

func (c *connector) loop() {
	defer close(c.done)
	events := make([]unix.EpollEvent, 256)
	deadline := time.Duration(-1) // set on poll
	for {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return
		}
		now := c.clock.Now().Sub(c.epoch)
		c.wakeAt = c.trim(now)
		if len(c.timeouts) > 0 && (c.wakeAt < 0 || c.timeouts[0].deadline < c.wakeAt) {
			c.wakeAt = c.timeouts[0].deadline
		}
		if c.wakeAt != deadline {
			deadline = c.wakeAt
			var t time.Time // none
			if deadline >= 0 {
				// The netpoller waits on the runtime's own clock.
				t = time.Now().Add(deadline - now)
			}
			if err := c.poll.SetReadDeadline(t); err != nil {
				panic(fmt.Sprintf("health connector: epoll deadline: %v", err)) // not pollable: a bug
			}
		}
		c.sleeping = true
		c.mu.Unlock()
		n := 0
		var werr error
		err := c.pollConn.Read(func(fd uintptr) bool {
			n, werr = epollWaitNow(int(fd), events)
			return n > 0 || (werr != nil && werr != unix.EINTR)
		})
		c.mu.Lock()
		c.sleeping = false
		c.mu.Unlock()
		if werr != nil && werr != unix.EINTR {
			panic(fmt.Sprintf("health connector: epoll_wait: %v", werr)) // a bad descriptor: a bug
		}
		if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			panic(fmt.Sprintf("health connector: waiting for epoll: %v", err))
		}
		for i := range n {
			t := token(&events[i])
			if t == 0 {
				var b [8]byte
				_, _ = unix.Read(c.wakefd, b[:]) // EAGAIN: drained already
				continue
			}
			if cn := c.lookup(t); cn != nil {
				c.handle(cn, events[i].Events)
			}
		}
		c.expire()
	}
}

// handle moves a connection on after epoll reported events on it.
func (c *connector) handle(cn *conn, ev uint32) {
	if cn.ph == phaseConnect {
		if ev&(unix.EPOLLERR|unix.EPOLLHUP) != 0 {
			err := errors.New("connection closed")
			if soerr, gerr := unix.GetsockoptInt(cn.fd, unix.SOL_SOCKET, unix.SO_ERROR); gerr != nil {
				err = gerr
			} else if soerr != 0 {
				err = unix.Errno(soerr)
			}
			c.end(cn, err)
			return
		}
		if ev&unix.EPOLLOUT == 0 {
			return
		}
		cn.ph = phaseRequest
		if len(cn.req) == 0 {
			c.end(cn, nil)
			return
		}
	}
	if cn.ph == phaseRequest {
		n, err := rawWrite(cn.fd, cn.req[cn.sent:])
		if err == unix.EAGAIN {
			return // the next EPOLLOUT goes on
		}
		if err != nil {
			c.end(cn, err)
			return
		}
		cn.sent += n
		if cn.sent < len(cn.req) {
			return
		}
		cn.ph = phaseResponse
	}
	// Edge-triggered: read until the socket is drained.
	for {
		n, err := rawRead(cn.fd, c.buf)
		switch {
		case err == unix.EAGAIN:
			return
		case err != nil:
			c.end(cn, err)
			return
		case n == 0:
			cn.job.received(nil, true)
			c.end(cn, nil)
			return
		}
		if cn.job.received(c.buf[:n], false) {
			c.end(cn, nil)
			return
		}
		if n < len(c.buf) {
			return // drained; more data brings another event
		}
	}
}

// end ends an active connection and reports how its check ended.
func (c *connector) end(cn *conn, err error) {
	j, ph, lat := cn.job, cn.ph, c.clock.Now().Sub(cn.begin)
	c.recycle(cn)
	c.mu.Lock()
	c.release(cn)
	c.mu.Unlock()
	j.finish(err, ph, lat)
}

// expire ends the checks whose timeout passed, or all of them once
// aborting.
func (c *connector) expire() {
	now := c.clock.Now().Sub(c.epoch)
	c.mu.Lock()
	var why error = context.DeadlineExceeded
	if c.aborting {
		why = context.Canceled
		now = 1<<63 - 1
	}
	list := c.expired[:0]
	for len(c.timeouts) > 0 && c.timeouts[0].deadline <= now {
		cn := c.timeouts[0]
		heap.Pop(&c.timeouts)
		list = append(list, cn)
	}
	c.mu.Unlock()
	// Only the loop releases a conn on the heap: these are still active.
	for i, cn := range list {
		c.end(cn, why)
		list[i] = nil
	}
	c.expired = list[:0]
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

// The system calls below do not block (the sockets are non-blocking), so
// they bypass the runtime's syscall state (see connector).

// rawConnect starts a non-blocking connect.
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

// epollWaitNow returns the events ready now, without waiting.
func epollWaitNow(epfd int, events []unix.EpollEvent) (int, error) {
	n, _, e := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), 0, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// rawDisconnect dissolves a socket's connection (connect to AF_UNSPEC):
// one past the handshake is reset, and the socket can connect again.
func rawDisconnect(fd int) error {
	sa := unix.RawSockaddrInet4{Family: unix.AF_UNSPEC}
	_, _, e := unix.RawSyscall(unix.SYS_CONNECT, uintptr(fd), uintptr(unsafe.Pointer(&sa)), unsafe.Sizeof(sa))
	if e != 0 {
		return e
	}
	return nil
}

func rawWrite(fd int, b []byte) (int, error) {
	n, _, e := unix.RawSyscall(unix.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)))
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

func rawRead(fd int, b []byte) (int, error) {
	n, _, e := unix.RawSyscall(unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)))
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// closeSocket closes a check's socket; one past the handshake is reset,
// so that no TIME_WAIT stays on the load balancer.
func closeSocket(fd int, reset bool) {
	if reset {
		l := unix.Linger{Onoff: 1, Linger: 0}
		// A socket that refuses SO_LINGER closes all the same, into
		// TIME_WAIT: nothing to report to the check.
		_, _, _ = unix.RawSyscall6(unix.SYS_SETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, unix.SO_LINGER, uintptr(unsafe.Pointer(&l)), unsafe.Sizeof(l), 0)
	}
	_, _, _ = unix.RawSyscall(unix.SYS_CLOSE, uintptr(fd), 0, 0) // fails only on a bad descriptor
}

// connHeap orders the connections in flight by deadline.
type connHeap []*conn

func (h connHeap) Len() int           { return len(h) }
func (h connHeap) Less(i, j int) bool { return h[i].deadline < h[j].deadline }
func (h connHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].hidx, h[j].hidx = i, j
}
func (h *connHeap) Push(x any) {
	cn := x.(*conn)
	cn.hidx = len(*h)
	*h = append(*h, cn)
}
func (h *connHeap) Pop() any {
	old := *h
	cn := old[len(old)-1]
	old[len(old)-1] = nil
	cn.hidx = -1
	*h = old[:len(old)-1]
	return cn
}

var errNoConnector = errors.New("no connector: the checker is not running")

// lazyConnector starts the connector on first use, so that a checker
// without TCP or HTTP checks runs no epoll loop.
type lazyConnector struct {
	clock clock.Clock
	once  sync.Once
	c     *connector
	err   error
}

func (l *lazyConnector) get() (*connector, error) {
	if l == nil {
		return nil, errNoConnector
	}
	l.once.Do(func() { l.c, l.err = newConnector(l.clock) })
	if l.c == nil && l.err == nil {
		return nil, errNoConnector // stopped before first use
	}
	return l.c, l.err
}

// abort ends the checks in flight, if the connector was started.
func (l *lazyConnector) abort() {
	l.once.Do(func() {})
	if l.c != nil {
		l.c.abort()
	}
}

// close stops the connector if it was started; no check may be running.
func (l *lazyConnector) close() {
	l.once.Do(func() {})
	if l.c != nil {
		l.c.close()
	}
}
