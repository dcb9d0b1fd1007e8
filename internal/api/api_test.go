package api

import (
	"context"
	"errors"
	"net"
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

// TestDrainOverTheSocket: POST /drain starts a drain, GET /drain reads its
// progress; a node that cannot drain says why.
func TestDrainOverTheSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "halb.sock")
	ln, err := ListenUnix(sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
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
	go Serve(ctx, ln, Handler(nil, nil, WithDrain(drain)))
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
