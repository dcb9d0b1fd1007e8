package event

import (
	"bytes"
	"encoding/json"
	"time"
)

// SchemaVersion is the version of the public JSON documents (status,
// events, webhook bodies, the notify program's input). It changes only
// when a key is removed or changes meaning; added keys keep it.
const SchemaVersion = 1

// Marshal encodes v as JSON without HTML escaping ("<" stays "<").
func Marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// healthJSON is Health as JSON: the latency in milliseconds.
type healthJSON struct {
	plainHealth
	LatencyMS float64 `json:"latency_ms"`
}

type plainHealth Health

// MarshalJSON gives the latency as latency_ms.
func (h Health) MarshalJSON() ([]byte, error) {
	return Marshal(healthJSON{plainHealth(h), Millis(h.Latency)})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (h *Health) UnmarshalJSON(data []byte) error {
	var j healthJSON
	if err := json.Unmarshal(data, &j); err != nil {
		return err
	}
	*h = Health(j.plainHealth)
	h.Latency = time.Duration(j.LatencyMS * float64(time.Millisecond))
	return nil
}

type plainReload Reload

// MarshalJSON writes absent lists as [].
func (r Reload) MarshalJSON() ([]byte, error) {
	p := plainReload(r)
	if p.Changes == nil {
		p.Changes = []string{}
	}
	if p.Errors == nil {
		p.Errors = []string{}
	}
	return Marshal(p)
}

// Millis is d in milliseconds, to the microsecond.
func Millis(d time.Duration) float64 {
	return float64(d.Microseconds()) / 1000
}
