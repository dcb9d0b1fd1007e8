package nft

import (
	"bufio"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"halb/internal/lab/netns"
)

// inNS runs f on a thread switched into host's network namespace: sockets
// f creates live there. The thread is never switched back; it ends with
// the goroutine. The main thread is never switched, or the whole process
// would count as inside the lab (and be killed with it).
func inNS(host *netns.Host, f func()) error {
	errc := make(chan error, 1)
	var run func()
	run = func() {
		runtime.LockOSThread()
		if unix.Gettid() == unix.Getpid() {
			done := make(chan struct{})
			go func() { run(); close(done) }() // another thread: this one is locked
			<-done
			runtime.UnlockOSThread()
			return
		}
		fd, err := unix.Open(filepath.Join("/var/run/netns", host.Name), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- err
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", host.Name, err)
			return
		}
		f()
		errc <- nil
	}
	go run()
	return <-errc
}

// serveNames listens on addr inside host; every connection is greeted
// with name and then echoes lines until the client closes. It returns a
// function that stops listening.
func serveNames(t testing.TB, host *netns.Host, addr, name string) (stop func()) {
	t.Helper()
	var ln net.Listener
	var lerr error
	if err := inNS(host, func() { ln, lerr = net.Listen("tcp", addr) }); err != nil || lerr != nil {
		t.Fatalf("listen %s in %s: %v %v", addr, host.Name, err, lerr)
	}
	t.Cleanup(func() { ln.Close() })

	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				fmt.Fprintf(c, "%s\n", name)
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if _, err := c.Write([]byte(name + " " + line)); err != nil {
						return
					}
				}
			}()
		}
	}()
	return func() { ln.Close() }
}

// dialer makes TCP connections from inside a namespace.
type dialer struct {
	reqs chan dialReq
}

type dialReq struct {
	src, dst string
	resp     chan dialResp
}

type dialResp struct {
	c   net.Conn
	err error
}

// newDialer starts a thread in host's namespace that opens connections.
func newDialer(t testing.TB, host *netns.Host) *dialer {
	t.Helper()
	d := &dialer{reqs: make(chan dialReq)}
	ready := make(chan error, 1)
	go func() {
		ready <- inNS(host, func() {
			ready <- nil
			for r := range d.reqs {
				nd := net.Dialer{Timeout: 3 * time.Second}
				if ap, err := netip.ParseAddrPort(r.src); err == nil {
					// A fixed source port, reusable while in TIME_WAIT.
					nd.LocalAddr = net.TCPAddrFromAddrPort(ap)
					nd.Control = func(_, _ string, c syscall.RawConn) error {
						return c.Control(func(fd uintptr) {
							unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
						})
					}
				} else if r.src != "" {
					nd.LocalAddr = &net.TCPAddr{IP: net.ParseIP(r.src)}
				}
				c, err := nd.Dial("tcp", r.dst)
				r.resp <- dialResp{c, err}
			}
		})
	}()
	if err := <-ready; err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { close(d.reqs) })
	return d
}

// dial connects from src (empty: any; an address, or address:port) to dst and returns the connection
// and the backend's greeting.
func (d *dialer) dial(src, dst string) (net.Conn, string, error) {
	resp := make(chan dialResp, 1)
	d.reqs <- dialReq{src, dst, resp}
	r := <-resp
	if r.err != nil {
		return nil, "", r.err
	}
	r.c.SetDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(r.c).ReadString('\n')
	if err != nil {
		r.c.Close()
		return nil, "", fmt.Errorf("read greeting from %s: %w", dst, err)
	}
	r.c.SetDeadline(time.Time{})
	return r.c, strings.TrimSpace(line), nil
}

// hit opens and closes one connection, returning the backend's name.
func (d *dialer) hit(src, dst string) (string, error) {
	c, name, err := d.dial(src, dst)
	if err != nil {
		return "", err
	}
	c.Close()
	return name, nil
}

// must runs a command in a host and fails the test on error.
func must(t testing.TB, h *netns.Host, name string, args ...string) {
	t.Helper()
	if out, err := h.Run(name, args...); err != nil {
		t.Fatalf("%s: %s %s: %v: %s", h.Name, name, strings.Join(args, " "), err, out)
	}
}

// natLab is client → LB (VIP 203.0.113.10) → backends on 198.51.100.0/24
// routed back through the LB at 198.51.100.1.
type natLab struct {
	lab      *netns.Lab
	client   *netns.Host
	lb       *netns.Host
	backends []*netns.Host
	stops    map[string]func() // by listening address
}

// stopServer stops the backend server listening on addr.
func (l *natLab) stopServer(addr string) { l.stops[addr]() }

// restartServer starts the backend server on addr again.
func (l *natLab) restartServer(t testing.TB, addr string) {
	t.Helper()
	for i, h := range l.backends {
		ip := fmt.Sprintf("198.51.100.%d", 21+i)
		if strings.HasPrefix(addr, ip+":") {
			l.stops[addr] = serveNames(t, h, addr, ip)
			return
		}
	}
	t.Fatalf("no backend for %s", addr)
}

func newNATLab(t testing.TB, nBackends int) *natLab {
	t.Helper()
	lab, lb := labHost(t)
	front, back, client := frontAndBack(t, lab, "203.0.113.100/24")
	if _, err := lab.Connect(lb, front, "eth0", "203.0.113.2/24", "203.0.113.10/24"); err != nil {
		t.Fatal(err)
	}
	if _, err := lab.Connect(lb, back, "eth1", "198.51.100.1/24"); err != nil {
		t.Fatal(err)
	}
	must(t, lb, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	l := &natLab{lab: lab, client: client, lb: lb, stops: map[string]func(){}}
	for i := range nBackends {
		h, err := lab.AddHost(fmt.Sprintf("be%d", i+1))
		if err != nil {
			t.Fatal(err)
		}
		addr := fmt.Sprintf("198.51.100.%d", 21+i)
		if _, err := lab.Connect(h, back, "eth0", addr+"/24"); err != nil {
			t.Fatal(err)
		}
		if err := h.IP("route", "add", "default", "via", "198.51.100.1"); err != nil {
			t.Fatal(err)
		}
		l.stops[addr+":80"] = serveNames(t, h, addr+":80", addr)
		l.backends = append(l.backends, h)
	}
	return l
}

// openMany opens n connections to dst, closed when the test ends, and
// returns them with the backend each reached.
func (d *dialer) openMany(t testing.TB, n int, dst string) (conns []net.Conn, on []string) {
	t.Helper()
	for range n {
		c, name, err := d.dial("", dst)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		conns, on = append(conns, c), append(on, name)
	}
	return conns, on
}
