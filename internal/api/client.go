package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/user"
	"strconv"
	"strings"
	"syscall"
	"time"

	"halb/internal/event"
)

// Client talks to a running halb over its status socket.
type Client struct {
	socket string
	http   *http.Client
}

// NewClient returns a client for the socket at path.
func NewClient(path string) *Client {
	return &Client{socket: path, http: &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}},
	}}
}

// SocketError is a failure to reach halb, in words for the operator; it
// wraps the cause.
type SocketError struct {
	msg string
	err error
}

func (e *SocketError) Error() string { return e.msg }
func (e *SocketError) Unwrap() error { return e.err }

// Get fetches a path ("/status") and decodes its JSON into v.
func (c *Client) Get(ctx context.Context, path string, v any) error {
	return c.do(ctx, http.MethodGet, path, v)
}

// do sends a request without a body and decodes the JSON answer into v.
func (c *Client) do(ctx context.Context, method, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, method, "http://halb"+path, nil)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return c.reachError(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("halb at %s: %s", c.socket, strings.TrimSpace(string(body)))
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// reachError says why the socket could not be used, without the HTTP
// request that failed.
func (c *Client) reachError(err error) error {
	var op *net.OpError
	if errors.As(err, &op) {
		err = op
	}
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return &SocketError{fmt.Sprintf("halb is not running (no socket at %s)", c.socket), err}
	case errors.Is(err, syscall.ECONNREFUSED):
		return &SocketError{fmt.Sprintf("halb is not running (nothing listens on %s)", c.socket), err}
	case errors.Is(err, fs.ErrPermission):
		return &SocketError{fmt.Sprintf("permission denied on %s: %s", c.socket, c.whoMay()), err}
	case op != nil:
		return &SocketError{fmt.Sprintf("cannot reach halb at %s: %v", c.socket, op.Err), err}
	}
	return &SocketError{fmt.Sprintf("cannot reach halb at %s: %v", c.socket, err), err}
}

// whoMay says who may use the socket: root, and its group when the
// socket is open to it.
func (c *Client) whoMay() string {
	const rootOnly = "run as root (api.socket_group opens it to a group)"
	fi, err := os.Stat(c.socket)
	if err != nil {
		return rootOnly
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || fi.Mode().Perm()&0o060 != 0o060 || st.Gid == 0 {
		return rootOnly
	}
	name := strconv.Itoa(int(st.Gid))
	if g, err := user.LookupGroupId(name); err == nil {
		name = g.Name
	}
	return "run as root or join group " + name
}

// Status fetches the status document.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var st Status
	err := c.Get(ctx, "/status", &st)
	return st, err
}

// Follow calls f with the last n events (all kept when 0), then with each
// new one as it comes, until ctx is done (then it returns nil) or halb
// stops.
func (c *Client) Follow(ctx context.Context, n int, f func(event.Record)) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://halb/events?n=%d&follow=1", n), nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Transport: c.http.Transport}).Do(req) // no timeout: it lasts
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return c.reachError(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("halb at %s: %s", c.socket, strings.TrimSpace(string(body)))
	}
	dec := json.NewDecoder(resp.Body)
	for {
		var doc Events
		if err := dec.Decode(&doc); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return fmt.Errorf("halb at %s stopped", c.socket)
			}
			return fmt.Errorf("halb at %s: reading events: %w", c.socket, err)
		}
		for _, r := range doc.Events {
			f(r)
		}
	}
}

// Events fetches up to n recent events (all kept when n is 0).
func (c *Client) Events(ctx context.Context, n int) ([]event.Record, error) {
	var evs Events
	err := c.Get(ctx, fmt.Sprintf("/events?n=%d", n), &evs)
	return evs.Events, err
}

// Drain starts a drain (start) or reads its progress.
func (c *Client) Drain(ctx context.Context, start bool) (Drain, error) {
	var d Drain
	method := http.MethodGet
	if start {
		method = http.MethodPost
	}
	err := c.do(ctx, method, "/drain", &d)
	return d, err
}
