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
	"testing"
	"time"

	"halb/internal/event"
)

func TestStatusAndEventsOverTheSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "halb.sock")
	ln, err := ListenUnix(sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode %v, %v", fi.Mode(), err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	status := func(context.Context) (Status, error) {
		return Status{Node: "lb-a", VRRP: []Instance{}, Services: []Service{}, Pools: []Pool{}, Events: []event.Record{}}, nil
	}
	var asked int
	events := func(_ context.Context, n int) ([]event.Record, error) {
		asked = n
		return nil, nil
	}
	go Serve(ctx, ln, Handler(status, events))

	c := NewClient(sock)
	st, err := c.Status(ctx)
	if err != nil || st.Node != "lb-a" {
		t.Fatalf("status %+v, %v", st, err)
	}
	var raw []any
	if err := c.Get(ctx, "/events?n=7", &raw); err != nil {
		t.Fatal(err)
	}
	if asked != 7 || raw == nil {
		t.Fatalf("events: asked %d, got %v (must be [] not null)", asked, raw)
	}
	if err := c.Get(ctx, "/events?n=x", &raw); err == nil || !strings.Contains(err.Error(), "400") {
		t.Fatalf("bad n: %v", err)
	}
}

func TestListenRefusesALiveSocketAndReplacesAStaleOne(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "halb.sock")
	ln, err := ListenUnix(sock)
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
	if _, err := ListenUnix(sock); err == nil || !strings.Contains(err.Error(), "another halb") {
		t.Fatalf("second listener: %v", err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	ln2, err := ListenUnix(sock)
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	ln2.Close()
	plain := filepath.Join(dir, "file")
	os.WriteFile(plain, nil, 0o644)
	if _, err := ListenUnix(plain); err == nil {
		t.Fatal("listened over a regular file")
	}
}

func TestClientNamesTheSocket(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err := NewClient("/nonexistent/halb.sock").Status(ctx)
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/halb.sock") {
		t.Fatalf("error does not name the socket: %v", err)
	}
	var op *net.OpError
	if !errors.As(err, &op) {
		t.Fatalf("error does not wrap the dial error: %v", err)
	}
}

func TestALargeRequestHeaderIsRefused(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "halb.sock")
	ln, err := ListenUnix(sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go Serve(ctx, ln, Handler(func(context.Context) (Status, error) { return Status{}, nil }, nil))
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
