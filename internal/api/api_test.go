package api

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"halb/internal/event"
)

// serve serves h on a fresh socket until the test ends and returns the
// socket's path.
func serve(t *testing.T, h http.Handler) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "halb.sock")
	ln, err := ListenUnix(sock, "")
	if err != nil {
		t.Fatal(err)
	}
	go Serve(t.Context(), ln, h)
	return sock
}

func TestStatusAndEventsOverTheSocket(t *testing.T) {
	status := func(context.Context) (Status, error) {
		return Status{Node: "lb-a", VRRP: []Instance{}, Services: []Service{}, Pools: []Pool{}, Events: []event.Record{}}, nil
	}
	var asked int
	events := func(_ context.Context, n int) ([]event.Record, error) {
		asked = n
		return nil, nil
	}
	sock := serve(t, Handler(status, events, nil))
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode %v, %v", fi.Mode(), err)
	}

	ctx := t.Context()
	c := NewClient(sock)
	st, err := c.Status(ctx)
	if err != nil || st.Node != "lb-a" {
		t.Fatalf("status %+v, %v", st, err)
	}
	var raw map[string]any
	if err := c.Get(ctx, "/events?n=7", &raw); err != nil {
		t.Fatal(err)
	}
	if evs, ok := raw["events"].([]any); asked != 7 || !ok || evs == nil || raw["schema_version"] != 1.0 {
		t.Fatalf("events: asked %d, got %v (must be [] not null, with schema_version 1)", asked, raw)
	}
	if err := c.Get(ctx, "/events?n=x", &raw); err == nil || !strings.Contains(err.Error(), "n: not a count") {
		t.Fatalf("bad n: %v", err)
	}
}

func TestListenRefusesALiveSocketAndReplacesAStaleOne(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "halb.sock")
	ln, err := ListenUnix(sock, "")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	if _, err := ListenUnix(sock, ""); err == nil || !strings.Contains(err.Error(), "another halb") {
		t.Fatalf("second listener: %v", err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	ln2, err := ListenUnix(sock, "")
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	ln2.Close()
	plain := filepath.Join(dir, "file")
	os.WriteFile(plain, nil, 0o644)
	if _, err := ListenUnix(plain, ""); err == nil {
		t.Fatal("listened over a regular file")
	}
}

func TestClientNamesTheSocket(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err := NewClient("/nonexistent/halb.sock").Status(ctx)
	if err == nil || err.Error() != "halb is not running (no socket at /nonexistent/halb.sock)" {
		t.Fatalf("error does not say halb is not running at the socket: %v", err)
	}
	var op *net.OpError
	if !errors.As(err, &op) {
		t.Fatalf("error does not wrap the dial error: %v", err)
	}
}

// TestSocketGroup: with api.socket_group the socket is the group's, mode
// 0660; an unknown group is refused.
func TestSocketGroup(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give the socket to a group")
	}
	dir := t.TempDir()
	sock := filepath.Join(dir, "halb.sock")
	ln, err := ListenUnix(sock, "65534")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	fi, err := os.Stat(sock)
	if err != nil || fi.Mode().Perm() != 0o660 || fi.Sys().(*syscall.Stat_t).Gid != 65534 {
		t.Fatalf("socket mode %v, group %d, %v", fi.Mode(), fi.Sys().(*syscall.Stat_t).Gid, err)
	}
	if _, err := ListenUnix(filepath.Join(dir, "other.sock"), "no-such-group-halb"); err == nil || !strings.Contains(err.Error(), "no-such-group-halb") {
		t.Fatalf("unknown group: %v", err)
	}
}

// TestFollowEvents: a follower gets the last events, then each new one
// once, until it stops following.
func TestFollowEvents(t *testing.T) {
	var feed Feed
	history := []event.Record{{Seq: 1, Kind: "reload"}, {Seq: 2, Kind: "health"}}
	events := func(context.Context, int) ([]event.Record, error) { return history, nil }
	sock := serve(t, Handler(nil, events, feed.Follow))
	ctx := t.Context()

	got := make(chan uint64, 10)
	fctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- NewClient(sock).Follow(fctx, 2, func(r event.Record) { got <- r.Seq })
	}()
	for _, want := range []uint64{1, 2} {
		if seq := <-got; seq != want {
			t.Fatalf("event %d, want %d", seq, want)
		}
	}
	feed.Publish(event.Record{Seq: 2, Kind: "health"}) // already sent: not again
	feed.Publish(event.Record{Seq: 3, Kind: "vrrp"})
	if seq := <-got; seq != 3 {
		t.Fatalf("new event %d, want 3", seq)
	}
	stop()
	if err := <-done; err != nil {
		t.Fatalf("follow after its context ended: %v", err)
	}
	// The server sees the follower go: it is no longer fed.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		feed.Publish(event.Record{Seq: 4}) // must not block
		feed.mu.Lock()
		n := len(feed.subs)
		feed.mu.Unlock()
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d followers left", n)
		}
	}
}

// TestDrainOverTheSocket: POST /drain starts a drain, GET /drain reads its
// progress; a node that cannot drain says why.
func TestDrainOverTheSocket(t *testing.T) {
	var started int
	drain := func(_ context.Context, start bool) (Drain, error) {
		if start {
			started++
		}
		if started == 0 {
			return Drain{}, errors.New("no drain")
		}
		return Drain{Withdrawn: []string{"203.0.113.10"}, Announced: []string{}, ActiveConnections: 3}, nil
	}
	sock := serve(t, Handler(nil, nil, nil, WithDrain(drain)))
	ctx := t.Context()
	c := NewClient(sock)
	if _, err := c.Drain(ctx, false); err == nil || !strings.Contains(err.Error(), "no drain") {
		t.Errorf("progress before a drain: %v, want the error", err)
	}
	d, err := c.Drain(ctx, true)
	if err != nil || started != 1 || d.ActiveConnections != 3 || d.Withdrawn[0] != "203.0.113.10" {
		t.Errorf("drain: %+v, %v (started %d)", d, err, started)
	}
	if _, err := c.Drain(ctx, false); err != nil || started != 1 {
		t.Errorf("progress: %v; started %d times, want once", err, started)
	}
}

// TestALargeRequestHeaderIsRefused: a request header of 64 KiB gets 431, not
// the megabyte net/http would read by default.
func TestALargeRequestHeaderIsRefused(t *testing.T) {
	sock := serve(t, Handler(func(context.Context) (Status, error) { return Status{}, nil }, nil, nil))
	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	// Sent in the background: the server may answer and close first.
	go conn.Write([]byte("GET /status HTTP/1.1\r\nHost: halb\r\nX-Big: " + strings.Repeat("a", 64<<10) + "\r\n\r\n"))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("a 64 KiB header: %s, want 431", resp.Status)
	}
}
