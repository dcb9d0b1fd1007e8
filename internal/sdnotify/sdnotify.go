// Package sdnotify fits halb to systemd. It speaks the notification
// protocol (sd_notify): READY, RELOADING, STOPPING, STATUS and the
// watchdog keep-alive, sent as datagrams to $NOTIFY_SOCKET (outside
// systemd every call does nothing); and it writes logs the journal reads
// with their priorities.
package sdnotify

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Notifier sends states to the service manager. The zero value and nil
// send nothing.
type Notifier struct {
	socket string
}

// FromEnv returns a notifier for $NOTIFY_SOCKET (nil when unset).
func FromEnv() *Notifier {
	s := os.Getenv("NOTIFY_SOCKET")
	if s == "" {
		return nil
	}
	return &Notifier{socket: s}
}

// Send sends one message of "KEY=value" lines.
func (n *Notifier) Send(lines ...string) error {
	if n == nil || n.socket == "" {
		return nil
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: n.socket, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(strings.Join(lines, "\n") + "\n")); err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	return nil
}

// Ready says start-up or a reload is complete.
func (n *Notifier) Ready(status string) error { return n.Send("READY=1", "STATUS="+status) }

// Reloading says a reload has begun; Ready must follow.
func (n *Notifier) Reloading() error {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return fmt.Errorf("sd_notify: monotonic clock: %w", err)
	}
	return n.Send("RELOADING=1", "STATUS=reloading the configuration", "MONOTONIC_USEC="+strconv.FormatInt(ts.Nano()/1000, 10))
}

// Stopping says the service is shutting down.
func (n *Notifier) Stopping() error {
	return n.Send("STOPPING=1", "STATUS=releasing VIPs and stopping")
}

// Watchdog is the keep-alive the service manager expects within the
// watchdog interval.
func (n *Notifier) Watchdog() error { return n.Send("WATCHDOG=1") }

// WatchdogInterval returns the keep-alive interval systemd asks of this
// process ($WATCHDOG_USEC, when $WATCHDOG_PID is unset or this process),
// and false when there is no watchdog.
func WatchdogInterval() (time.Duration, bool) {
	if pid := os.Getenv("WATCHDOG_PID"); pid != "" && pid != strconv.Itoa(os.Getpid()) {
		return 0, false
	}
	us, err := strconv.ParseInt(os.Getenv("WATCHDOG_USEC"), 10, 64)
	if err != nil || us <= 0 {
		return 0, false
	}
	return time.Duration(us) * time.Microsecond, true
}
