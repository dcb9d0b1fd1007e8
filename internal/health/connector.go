package health

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"halb/internal/config"
)

// connector runs TCP and plain HTTP checks the way a check engine in C
// would: raw non-blocking sockets, one epoll loop that also keeps the
// checks' timeouts (in a heap), and no goroutine, timer or thread
// hand-off per check, so that thousands of checks a second cost a few
// system calls each. (A connect to a local namespace does the whole
// handshake inside the system call, long enough for Go's runtime to hand
// the thread off when it goes through the ordinary syscall path; hence
// the raw system calls.)
type connector struct {
	epfd, wakefd int
	epoch        time.Time // deadlines count from here
	buf          []byte    // the loop's read buffer

	mu       sync.Mutex
	slots    []*conn // by token; a conn keeps its slot
	free     []uint32
	timeouts connHeap
	// sleeping is set while the loop waits in epoll_wait until wakeAt
	// (forever when negative).
	sleeping         bool
	wakeAt           time.Duration
	aborting, closed bool
	done             chan struct{}
	expired          []ended // the loop's scratch list
}

// ended is a connection taken off the loop, to be closed and reported.
type ended struct {
	fd    int
	j     job
	ph    phase
	begin time.Time
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

// conn is one check's connection on the loop.
type conn struct {
	slot     uint32
	gen      uint32 // counts the slot's uses, so stale tokens miss
	active   bool
	fd       int
	ph       phase
	req      []byte
	sent     int
	job      job
	begin    time.Time
	deadline time.Duration // since epoch
	hidx     int           // in timeouts
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
	c := &connector{epfd: epfd, wakefd: wakefd, epoch: time.Now(), buf: make([]byte, 16<<10), done: make(chan struct{})}
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
	unix.Close(c.epfd)
	unix.Close(c.wakefd)
}

func (c *connector) wake() {
	one := [8]byte{1}
	unix.Write(c.wakefd, one[:])
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
	begin := time.Now()
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
		j.finish(fmt.Errorf("socket: %w", err), phaseConnect, time.Since(begin))
		return
	}
	if err := prepare(fd, ch, family); err != nil {
		closeSocket(fd, false)
		j.finish(err, phaseConnect, time.Since(begin))
		return
	}
	// No quick ACK of the server's SYN-ACK: a connect-only check then
	// resets the connection before completing the handshake (SYN,
	// SYN-ACK, RST: the server's application never sees it), and an HTTP
	// check's request carries the ACK.
	setsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_QUICKACK, 0)
	if err := rawConnect(fd, target); err != nil && err != unix.EINPROGRESS {
		closeSocket(fd, false)
		j.finish(err, phaseConnect, time.Since(begin))
		return
	}
	c.mu.Lock()
	if c.aborting {
		c.mu.Unlock()
		closeSocket(fd, false)
		j.finish(context.Canceled, phaseConnect, time.Since(begin))
		return
	}
	cn := c.alloc()
	cn.fd, cn.ph, cn.req, cn.sent, cn.job, cn.begin = fd, phaseConnect, j.request(), 0, j, begin
	cn.deadline = begin.Sub(c.epoch) + ch.Timeout.D()
	heap.Push(&c.timeouts, cn)
	wake := c.sleeping && (c.wakeAt < 0 || cn.deadline < c.wakeAt)
	if wake {
		c.sleeping = false
	}
	gen := cn.gen
	tok := uint64(cn.slot+1)<<32 | uint64(gen)
	c.mu.Unlock()
	if wake {
		c.wake()
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET}
	setToken(&ev, tok)
	if err := unix.EpollCtl(c.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		c.mu.Lock()
		mine := cn.active && cn.gen == gen // else the loop timed it out
		if mine {
			c.release(cn)
		}
		c.mu.Unlock()
		if mine {
			closeSocket(fd, false)
			j.finish(fmt.Errorf("epoll_ctl: %w", err), phaseConnect, time.Since(begin))
		}
	}
}

// alloc returns a free conn in its slot, marked active. c.mu is held.
func (c *connector) alloc() *conn {
	var cn *conn
	if n := len(c.free); n > 0 {
		cn = c.slots[c.free[n-1]]
		c.free = c.free[:n-1]
	} else {
		cn = &conn{slot: uint32(len(c.slots))}
		c.slots = append(c.slots, cn)
	}
	cn.active = true
	return cn
}

// release frees an active conn's slot and timeout. c.mu is held.
func (c *connector) release(cn *conn) {
	heap.Remove(&c.timeouts, cn.hidx)
	cn.active = false
	cn.gen++
	cn.job, cn.req = nil, nil
	c.free = append(c.free, cn.slot)
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
	for {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return
		}
		timeout := -1
		c.wakeAt = -1
		if len(c.timeouts) > 0 {
			c.wakeAt = c.timeouts[0].deadline
			wait := c.wakeAt - time.Since(c.epoch)
			timeout = int(max((wait+time.Millisecond-1)/time.Millisecond, 0))
		}
		c.sleeping = true
		c.mu.Unlock()
		n, err := unix.EpollWait(c.epfd, events, timeout)
		c.mu.Lock()
		c.sleeping = false
		c.mu.Unlock()
		if err != nil && err != unix.EINTR {
			panic(fmt.Sprintf("health connector: epoll_wait: %v", err)) // a bad descriptor: a bug
		}
		for i := range n {
			t := token(&events[i])
			if t == 0 {
				var b [8]byte
				unix.Read(c.wakefd, b[:])
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

// end closes an active connection and reports how its check ended.
func (c *connector) end(cn *conn, err error) {
	fd, j, ph, lat := cn.fd, cn.job, cn.ph, time.Since(cn.begin)
	c.mu.Lock()
	c.release(cn)
	c.mu.Unlock()
	closeSocket(fd, ph != phaseConnect)
	j.finish(err, ph, lat)
}

// expire ends the checks whose timeout passed, or all of them once
// aborting.
func (c *connector) expire() {
	now := time.Since(c.epoch)
	c.mu.Lock()
	var why error = context.DeadlineExceeded
	if c.aborting {
		why = context.Canceled
		now = 1<<63 - 1
	}
	list := c.expired[:0]
	for len(c.timeouts) > 0 && c.timeouts[0].deadline <= now {
		cn := c.timeouts[0]
		list = append(list, ended{fd: cn.fd, j: cn.job, ph: cn.ph, begin: cn.begin})
		c.release(cn)
	}
	c.mu.Unlock()
	for i, e := range list {
		closeSocket(e.fd, e.ph != phaseConnect)
		e.j.finish(why, e.ph, time.Since(e.begin))
		list[i] = ended{}
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

func setsockoptInt(fd, level, opt, value int) {
	v := int32(value)
	unix.RawSyscall6(unix.SYS_SETSOCKOPT, uintptr(fd), uintptr(level), uintptr(opt), uintptr(unsafe.Pointer(&v)), 4, 0)
}

// closeSocket closes a check's socket; one past the handshake is reset,
// so that no TIME_WAIT stays on the load balancer.
func closeSocket(fd int, reset bool) {
	if reset {
		l := unix.Linger{Onoff: 1, Linger: 0}
		unix.RawSyscall6(unix.SYS_SETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, unix.SO_LINGER, uintptr(unsafe.Pointer(&l)), unsafe.Sizeof(l), 0)
	}
	unix.RawSyscall(unix.SYS_CLOSE, uintptr(fd), 0, 0)
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
	once sync.Once
	c    *connector
	err  error
}

func (l *lazyConnector) get() (*connector, error) {
	if l == nil {
		return nil, errNoConnector
	}
	l.once.Do(func() { l.c, l.err = newConnector() })
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
