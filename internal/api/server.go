package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"halb/internal/event"
)

// StatusFunc returns the current status.
type StatusFunc func(ctx context.Context) (Status, error)

// EventsFunc returns up to n recent events (all when n <= 0).
type EventsFunc func(ctx context.Context, n int) ([]event.Record, error)

// Handler serves GET /status and GET /events?n=N.
func Handler(status StatusFunc, events EventsFunc) http.Handler {
	mux := http.NewServeMux()
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
		evs, err := events(r.Context(), n)
		if evs == nil {
			evs = []event.Record{}
		}
		writeJSON(w, evs, err)
	})
	return mux
}

func writeJSON(w http.ResponseWriter, v any, err error) {
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v) // fails only when the client is gone, with no one to tell
}

// ListenUnix opens the status socket at path with mode 0600, replacing a
// stale socket file left by a previous run.
func ListenUnix(path string) (net.Listener, error) {
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
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("status socket: %w", err)
	}
	return ln, nil
}

// maxHeaderBytes bounds a request's header: the API's requests are a line
// and a Host, and a thousand clients sending large headers must not cost
// the daemon the 1 MB each that net/http allows by default.
const maxHeaderBytes = 16 << 10

// Serve serves h on ln until ctx is done.
func Serve(ctx context.Context, ln net.Listener, h http.Handler) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, MaxHeaderBytes: maxHeaderBytes}
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
