// Package livetest runs a real engine with the dry-run data plane and
// event sources driven by the test, for tests of what reads live state
// (metrics, status page).
package livetest

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"halb/internal/api"
	"halb/internal/config"
	"halb/internal/dataplane"
	"halb/internal/dataplane/none"
	"halb/internal/engine"
	"halb/internal/event"
)

// Live is a running engine and the feeds of its event sources.
type Live struct {
	Engine *engine.Engine
	Config *config.Config
	vrrp   chan event.VRRP
	health chan event.Health
}

// Start parses yaml, runs an engine on it until the test ends, and
// returns it once it answers. wrap, when not nil, wraps the data plane;
// opts are added to the engine's options.
func Start(t testing.TB, yaml string, wrap func(dataplane.Dataplane) dataplane.Dataplane, opts ...engine.Option) *Live {
	t.Helper()
	cfg, diags := config.Parse("live.yaml", []byte(yaml), config.Options{Hostname: "lb-test"})
	if cfg == nil {
		t.Fatalf("config: %s", diags)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	var dp dataplane.Dataplane = none.New(log)
	if wrap != nil {
		dp = wrap(dp)
	}
	l := &Live{Config: cfg, vrrp: make(chan event.VRRP), health: make(chan event.Health)}
	opts = append([]engine.Option{engine.WithLogger(log), engine.WithVersion("test"),
		engine.WithAnnouncer(source[event.VRRP]{l.vrrp}), engine.WithHealthChecker(source[event.Health]{l.health})}, opts...)
	l.Engine = engine.New(cfg, dp, "none", opts...)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Engine.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("engine: %v", err)
		}
	})
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, cancel := context.WithTimeout(ctx, time.Second)
		_, err := l.Engine.Status(c)
		cancel()
		if err == nil {
			return l
		}
		if time.Now().After(deadline) {
			t.Fatalf("engine does not answer: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// VRRP sends a VRRP event as the announcer would.
func (l *Live) VRRP(ev event.VRRP) { l.vrrp <- ev }

// Health sends a health event as the checker would.
func (l *Live) Health(ev event.Health) { l.health <- ev }

// Status reads the engine's status document.
func (l *Live) Status(ctx context.Context) (api.Status, error) {
	return api.EngineStatus(l.Engine.Status)(ctx)
}

// Wait polls the status until cond holds (at most 5 s) and returns it.
func (l *Live) Wait(t testing.TB, cond func(api.Status) bool) api.Status {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		st, err := l.Status(ctx)
		cancel()
		if err == nil && cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("status never reached the expected state (err %v): %+v", err, st)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// source is an announcer or health checker fed by a channel.
type source[T any] struct{ in chan T }

func (s source[T]) Run(ctx context.Context, out chan<- T) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev := <-s.in:
			select {
			case out <- ev:
			case <-ctx.Done():
				return nil
			}
		}
	}
}

func (s source[T]) Reload(*config.Config) error { return nil }
