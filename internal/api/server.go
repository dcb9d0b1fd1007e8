package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"time"

	"halb/internal/event"
)

// StatusFunc returns the current status.
type StatusFunc func(ctx context.Context) (Status, error)

// EventsFunc returns up to n recent events (all when n <= 0).
type EventsFunc func(ctx context.Context, n int) ([]event.Record, error)

// DrainFunc starts a drain (start) or reads its progress.
type DrainFunc func(ctx context.Context, start bool) (Drain, error)

// HandlerOption adds a route to the handler.
type HandlerOption func(*http.ServeMux)

// WithDrain serves POST /drain, which starts a drain and returns its
// progress, and GET /drain, which returns it.
func WithDrain(drain DrainFunc) HandlerOption {
	return func(mux *http.ServeMux) {
		mux.HandleFunc("POST /drain", func(w http.ResponseWriter, r *http.Request) {
			d, err := drain(r.Context(), true)
			writeJSON(w, d, err)
		})
		mux.HandleFunc("GET /drain", func(w http.ResponseWriter, r *http.Request) {
			d, err := drain(r.Context(), false)
			writeJSON(w, d, err)
		})
	}
}

// FollowFunc returns the events from now until ctx is done (Feed.Follow).
type FollowFunc func(ctx context.Context) <-chan event.Record

// Handler serves GET /status and GET /events?n=N (an Events document).
// With follow (nil: not offered), GET /events?n=N&follow=1 streams: the
// last N events, then each new one, as they come; a line each, every line
// an Events document of one event. opts add routes.
func Handler(status StatusFunc, events EventsFunc, follow FollowFunc, opts ...HandlerOption) http.Handler {
	mux := http.NewServeMux()
	for _, o := range opts {
		o(mux)
	}
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		st, err := status(r.Context())
		writeJSON(w, st, err)
	})
	mux.HandleFunc("GET /events", func(w http.ResponseWriter, r *http.Request) {
		n := 0
		if s := r.URL.Query().Get("n"); s != "" {
			var err error
			if n, err = strconv.Atoi(s); err != nil || n < 0 {
				http.Error(w, "n: not a count", http.StatusBadRequest)
				return
			}
		}
		if r.URL.Query().Get("follow") != "" {
			if follow == nil {
				http.Error(w, "following events is not offered", http.StatusNotFound)
				return
			}
			stream(w, r, n, events, follow)
			return
		}
		evs, err := events(r.Context(), n)
		if evs == nil {
			evs = []event.Record{}
		}
		writeJSON(w, Events{SchemaVersion: event.SchemaVersion, Events: evs}, err)
	})
	return mux
}

// stream writes the last n events, then every new one until the client
// goes or the server stops, each as a one-line Events document.
func stream(w http.ResponseWriter, r *http.Request, n int, events EventsFunc, follow FollowFunc) {
	ch := follow(r.Context()) // before reading the history: nothing falls between
	recent, err := events(r.Context(), n)
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	flusher, _ := w.(http.Flusher)
	var last uint64
	send := func(rec event.Record) bool {
		line, err := event.Marshal(Events{SchemaVersion: event.SchemaVersion, Events: []event.Record{rec}})
		if err != nil {
			return false
		}
		if _, err := w.Write(append(line, '\n')); err != nil {
			return false
		}
		last = rec.Seq
		return true
	}
	for _, rec := range recent {
		if !send(rec) {
			return
		}
	}
	if flusher != nil {
		flusher.Flush()
	}
	for rec := range ch {
		if rec.Seq <= last {
			continue
		}
		if !send(rec) {
			return
		}
		if flusher != nil {
			flusher.Flush()
		}
	}
}

func writeJSON(w http.ResponseWriter, v any, err error) {
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = WriteJSON(w, v) // fails only when the client is gone, with no one to tell
}

// WriteJSON writes v as indented JSON without HTML escaping, as every
// public document is written.
func WriteJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// ListenUnix opens the status socket at path, replacing a stale socket
// file left by a previous run. Its mode is 0600; with a group, 0660 and
// owned by that group (a name or a numeric id).
func ListenUnix(path, group string) (net.Listener, error) {
	gid := -1
	if group != "" {
		var err error
		if gid, err = lookupGroup(group); err != nil {
			return nil, fmt.Errorf("status socket group: %w", err)
		}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("status socket directory: %w", err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("status socket %s: exists and is not a socket", path)
		}
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			return nil, fmt.Errorf("status socket %s: another halb is serving it", path)
		}
		os.Remove(path)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("status socket: %w", err)
	}
	mode := os.FileMode(0o600)
	if gid >= 0 {
		mode = 0o660
		if err := os.Chown(path, -1, gid); err != nil {
			ln.Close()
			return nil, fmt.Errorf("status socket group: %w", err)
		}
	}
	if err := os.Chmod(path, mode); err != nil {
		ln.Close()
		return nil, fmt.Errorf("status socket: %w", err)
	}
	return ln, nil
}

// lookupGroup returns the id of a group given by name or number.
func lookupGroup(group string) (int, error) {
	if g, err := user.LookupGroup(group); err == nil {
		return strconv.Atoi(g.Gid)
	}
	if id, err := strconv.Atoi(group); err == nil && id >= 0 {
		return id, nil
	}
	return 0, fmt.Errorf("no group %q", group)
}

// maxHeaderBytes bounds a request's header: the API's requests are a line
// and a Host, and a thousand clients sending large headers must not cost
// the daemon the 1 MB each that net/http allows by default.
const maxHeaderBytes = 16 << 10

// Serve serves h on ln until ctx is done.
func Serve(ctx context.Context, ln net.Listener, h http.Handler) error {
	// Requests end with ctx, so that followers do not hold the shutdown.
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, MaxHeaderBytes: maxHeaderBytes,
		BaseContext: func(net.Listener) context.Context { return ctx }}
	go func() {
		<-ctx.Done()
		shutCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutCtx) // Serve has returned; a timeout leaves busy connections to close
	}()
	err := srv.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}
