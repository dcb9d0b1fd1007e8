package health

import (
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestErrTextNoDescriptors: a check that cannot open a socket says the
// load balancer is out of file descriptors, not that the server failed.
func TestErrTextNoDescriptors(t *testing.T) {
	for _, errno := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE} {
		err := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("socket", errno)}
		got := errText("connect", fmt.Errorf("dial: %w", err), time.Second)
		if !strings.Contains(got, "no file descriptor left on this load balancer") || !strings.Contains(got, "not checked") {
			t.Errorf("%v: %q", errno, got)
		}
	}
}
