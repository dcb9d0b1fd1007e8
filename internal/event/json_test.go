package event

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// TestJSON: snake_case keys, a latency in milliseconds that reads back,
// [] for absent lists, "<" as is.
func TestJSON(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	h := Health{At: at, Pool: "www", Addr: netip.MustParseAddr("198.51.100.12"), Port: 80, Check: "http :80 /",
		Reason: "HTTP 503 <html>", Consecutive: 3, Weight: -1, Latency: 1961 * time.Microsecond}
	b, err := Marshal(Record{Seq: 1, At: at, Kind: "health", Health: &h})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"seq":1,"at":"2026-01-02T03:04:05Z","node":"","kind":"health","summary":"","health":{"at":"2026-01-02T03:04:05Z",` +
		`"pool":"www","address":"198.51.100.12","port":80,"check":"http :80 /","up":false,"weight":-1,"reason":"HTTP 503 <html>",` +
		`"consecutive":3,"latency_ms":1.961}}`
	if string(b) != want {
		t.Errorf("got  %s\nwant %s", b, want)
	}
	var back Record
	if err := json.Unmarshal(b, &back); err != nil || *back.Health != h {
		t.Errorf("read back %+v (%v), want %+v", back.Health, err, h)
	}
	r, _ := Marshal(Reload{At: at, File: "f"})
	if !strings.Contains(string(r), `"changes":[],"errors":[]`) {
		t.Errorf("a reload without changes or errors: %s", r)
	}
}
