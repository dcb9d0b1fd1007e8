package notify

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"halb/internal/clock"
	"halb/internal/event"
)

func TestWebhookRetriesThenDelivers(t *testing.T) {
	var calls atomic.Int32
	got := make(chan Message, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) < 3 {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		if r.Header.Get("Content-Type") != "application/json" || r.Method != http.MethodPost {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		var m Message
		body, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(body, &m); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		got <- m
	}))
	defer srv.Close()
	w := NewWebhook(srv.URL, 2*time.Second, 3, 10*time.Millisecond, clock.Real{}, "halb/test")
	msg := Compose("lb-a", Batch{Events: []event.Record{healthEvent(7, t0, 12, false)}}, siteStatus(), t0)
	if err := w.Send(t.Context(), msg); err != nil {
		t.Fatalf("send: %v", err)
	}
	if calls.Load() != 3 {
		t.Errorf("%d attempts, want 3 (two 503s, then success)", calls.Load())
	}
	m := <-got
	if m.Subject != msg.Subject || len(m.Events) != 1 || m.Events[0].Health == nil || m.Events[0].Health.Addr.String() != "198.51.100.12" {
		t.Errorf("received %+v", m)
	}
	if len(m.Pools) != 1 || len(m.Pools[0].Servers) != 3 || m.Pools[0].Up != 2 || len(m.Instances) != 1 {
		t.Errorf("received pool state %+v, instances %+v", m.Pools, m.Instances)
	}
}

func TestWebhookGivesUp(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if strings.HasSuffix(r.URL.Path, "/gone") {
			http.Error(w, "no such hook", http.StatusNotFound)
			return
		}
		time.Sleep(300 * time.Millisecond) // longer than the timeout
	}))
	defer srv.Close()
	msg := Compose("lb-a", Batch{Events: []event.Record{healthEvent(7, t0, 12, false)}}, siteStatus(), t0)

	err := NewWebhook(srv.URL+"/gone", time.Second, 3, 10*time.Millisecond, clock.Real{}, "halb/test").Send(t.Context(), msg)
	if err == nil || !strings.Contains(err.Error(), "404") || calls.Load() != 1 {
		t.Errorf("404: err %v after %d calls; want an error and no retry", err, calls.Load())
	}
	calls.Store(0)
	start := time.Now()
	err = NewWebhook(srv.URL+"/slow", 100*time.Millisecond, 2, 10*time.Millisecond, clock.Real{}, "halb/test").Send(t.Context(), msg)
	if err == nil || calls.Load() != 3 {
		t.Errorf("timeouts: err %v after %d calls; want an error after 3 attempts", err, calls.Load())
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("3 attempts of 100ms took %s", d)
	}
}
