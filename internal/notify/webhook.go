package notify

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"time"

	"halb/internal/clock"
	"halb/internal/event"
)

// Webhook posts messages as JSON to a URL, retrying failures with
// doubling backoff.
type Webhook struct {
	url     string
	timeout time.Duration
	retries int
	backoff time.Duration
	client  *http.Client
	clock   clock.Clock
	agent   string
}

// NewWebhook returns a webhook for url. Each attempt is bounded by
// timeout; a failed attempt is retried up to retries times, waiting
// backoff, then twice that, and so on.
func NewWebhook(url string, timeout time.Duration, retries int, backoff time.Duration, clk clock.Clock, agent string) *Webhook {
	return &Webhook{url: url, timeout: timeout, retries: retries, backoff: backoff,
		client: &http.Client{}, clock: clk, agent: agent}
}

// Name identifies the webhook in logs and metrics.
func (w *Webhook) Name() string { return "webhook " + w.url }

// permanent marks an error that a retry cannot fix.
type permanent struct{ error }

// Send posts msg, retrying server errors and transport failures.
func (w *Webhook) Send(ctx context.Context, msg Message) error {
	body, err := event.Marshal(msg)
	if err != nil {
		return fmt.Errorf("webhook encode: %w", err)
	}
	wait := w.backoff
	for attempt := 0; ; attempt++ {
		err = w.post(ctx, body)
		if err == nil {
			return nil
		}
		if _, ok := err.(permanent); ok || attempt >= w.retries {
			return fmt.Errorf("webhook %s, attempt %d: %w", w.url, attempt+1, err)
		}
		select {
		case <-w.clock.After(wait):
		case <-ctx.Done():
			return fmt.Errorf("webhook %s, attempt %d: %w (gave up: %w)", w.url, attempt+1, err, ctx.Err())
		}
		wait *= 2
	}
}

func (w *Webhook) post(ctx context.Context, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, w.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(body))
	if err != nil {
		return permanent{err}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", w.agent)
	resp, err := w.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // drained for reuse; the status decides
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return nil
	case resp.StatusCode >= 500, resp.StatusCode == http.StatusTooManyRequests, resp.StatusCode == http.StatusRequestTimeout:
		return fmt.Errorf("HTTP %s", resp.Status)
	}
	return permanent{fmt.Errorf("HTTP %s", resp.Status)}
}
