package health

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"halb/internal/clock"
	"halb/internal/config"
)

// netEnv is what probers need from their surroundings to open sockets and
// start processes.
type netEnv struct {
	hook       func(create func() error) error
	scriptUser string
	tcp        *lazyConnector // set while the checker runs
	clock      clock.Clock    // the checker's
}

// dialer returns a dialer honouring the check's source address or
// interface and its firewall mark.
func dialer(ch config.Check, network string) *net.Dialer {
	// A check's connection lives for one exchange: no keep-alive probes
	// (which also saves four setsockopt calls per check).
	d := &net.Dialer{KeepAlive: -1}
	dev := ""
	if src, err := netip.ParseAddr(ch.Source); err == nil {
		switch network {
		case "udp", "udp4", "udp6":
			d.LocalAddr = &net.UDPAddr{IP: src.AsSlice()}
		default:
			d.LocalAddr = &net.TCPAddr{IP: src.AsSlice()}
		}
	} else {
		dev = ch.Source
	}
	if ch.Mark != 0 || dev != "" {
		d.Control = sockopts(ch.Mark, dev)
	}
	return d
}

// sockopts sets SO_MARK and SO_BINDTODEVICE on a new socket.
func sockopts(mark uint32, dev string) func(network, address string, c syscall.RawConn) error {
	return func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			if mark != 0 {
				if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, int(mark)); serr != nil {
					serr = fmt.Errorf("setting SO_MARK %d: %w", mark, serr)
					return
				}
			}
			if dev != "" {
				if serr = unix.BindToDevice(int(fd), dev); serr != nil {
					serr = fmt.Errorf("binding to interface %s: %w", dev, serr)
				}
			}
		})
		if err = errors.Join(err, serr); err != nil {
			return &socketSetupError{err}
		}
		return nil
	}
}

// socketSetupError is a failure to prepare a check's socket (mark,
// interface), reported as it is rather than as a connect failure.
type socketSetupError struct{ err error }

func (e *socketSetupError) Error() string { return e.err.Error() }
func (e *socketSetupError) Unwrap() error { return e.err }

// dial connects to addr for a check.
func (e netEnv) dial(ctx context.Context, ch config.Check, network, addr string) (net.Conn, error) {
	d := dialer(ch, network)
	var conn net.Conn
	err := e.hook(func() error {
		var err error
		conn, err = d.DialContext(ctx, network, addr)
		return err
	})
	if err != nil {
		return nil, err
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		// Close with a reset, as check clients do: no TIME_WAIT left on
		// the load balancer by thousands of checks a second.
		if err := tc.SetLinger(0); err != nil {
			conn.Close()
			return nil, fmt.Errorf("setting SO_LINGER: %w", err)
		}
	}
	if dl, ok := ctx.Deadline(); ok {
		if err := conn.SetDeadline(dl); err != nil {
			conn.Close()
			return nil, fmt.Errorf("setting deadline: %w", err)
		}
	}
	return conn, nil
}

// errText says in a few words what went wrong in phase ("connect",
// "response"), naming the timeout when it expired.
func errText(phase string, err error, timeout time.Duration) string {
	var errno syscall.Errno
	var setup *socketSetupError
	switch {
	case errors.As(err, &setup):
		return setup.Error()
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded), isTimeout(err):
		return fmt.Sprintf("%s timeout after %s", phase, timeout)
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset during " + phase
	case errors.Is(err, syscall.EHOSTUNREACH):
		return "host unreachable"
	case errors.Is(err, syscall.ENETUNREACH):
		return "network unreachable"
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		return "no file descriptor left on this load balancer (" + phase + ": too many open files); the server was not checked"
	case errors.As(err, &errno):
		return phase + ": " + errno.Error()
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return phase + ": " + op.Err.Error()
	}
	return phase + ": " + err.Error()
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func pass(format string, args ...any) Result {
	return Result{OK: true, Detail: fmt.Sprintf(format, args...), Weight: -1}
}

func fail(format string, args ...any) Result {
	return Result{Detail: fmt.Sprintf(format, args...), Weight: -1}
}
