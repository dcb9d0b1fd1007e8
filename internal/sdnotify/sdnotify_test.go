package sdnotify

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// listen opens a datagram socket as systemd does and points
// $NOTIFY_SOCKET at it.
func listen(t *testing.T, abstract bool) *net.UnixConn {
	t.Helper()
	name := filepath.Join(t.TempDir(), "notify")
	if abstract {
		name = "@halb-test-" + strconv.Itoa(os.Getpid())
	}
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	t.Setenv("NOTIFY_SOCKET", name)
	return c
}

func read(t *testing.T, c *net.UnixConn) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("no notification: %v", err)
	}
	return string(buf[:n])
}

func TestStates(t *testing.T) {
	for _, abstract := range []bool{false, true} {
		c := listen(t, abstract)
		n := FromEnv()
		if err := n.Ready("serving"); err != nil {
			t.Fatal(err)
		}
		if got := read(t, c); got != "READY=1\nSTATUS=serving\n" {
			t.Errorf("ready: %q", got)
		}
		if err := n.Reloading(); err != nil {
			t.Fatal(err)
		}
		got := read(t, c)
		if !strings.HasPrefix(got, "RELOADING=1\n") || !strings.Contains(got, "\nMONOTONIC_USEC=") {
			t.Errorf("reloading: %q", got)
		}
		n.Stopping()
		if got := read(t, c); !strings.HasPrefix(got, "STOPPING=1\n") {
			t.Errorf("stopping: %q", got)
		}
		n.Watchdog()
		if got := read(t, c); got != "WATCHDOG=1\n" {
			t.Errorf("watchdog: %q", got)
		}
	}
}

func TestOutsideSystemd(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	if n := FromEnv(); n != nil || n.Ready("x") != nil {
		t.Error("a notifier without NOTIFY_SOCKET sends")
	}
}

func TestWatchdogInterval(t *testing.T) {
	t.Setenv("WATCHDOG_USEC", "30000000")
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	if d, ok := WatchdogInterval(); !ok || d != 30*time.Second {
		t.Errorf("interval %v %v", d, ok)
	}
	t.Setenv("WATCHDOG_PID", "1")
	if _, ok := WatchdogInterval(); ok {
		t.Error("watchdog meant for another process taken")
	}
	t.Setenv("WATCHDOG_PID", "")
	t.Setenv("WATCHDOG_USEC", "")
	if _, ok := WatchdogInterval(); ok {
		t.Error("watchdog without WATCHDOG_USEC")
	}
}
