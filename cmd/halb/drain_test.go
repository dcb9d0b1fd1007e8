package main

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"halb/internal/api"
)

// serveDrain serves a status socket whose drain reports the given active
// connection counts in turn (the last one from then on); nil: a node
// without BGP.
func serveDrain(t *testing.T, active []int64) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "halb.sock")
	ln, err := api.ListenUnix(sock, "")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	drain := func(_ context.Context, start bool) (api.Drain, error) {
		mu.Lock()
		defer mu.Unlock()
		if active == nil {
			return api.Drain{}, errors.New("this node announces no VIP over BGP")
		}
		d := api.Drain{Withdrawn: []string{"203.0.113.10"}, Announced: []string{}, ActiveConnections: active[0]}
		if len(active) > 1 {
			active = active[1:]
		}
		return d, nil
	}
	go api.Serve(t.Context(), ln, api.Handler(nil, nil, nil, api.WithDrain(drain)))
	return sock
}

func TestDrainUntilIdle(t *testing.T) {
	sock := serveDrain(t, []int64{2, 0})
	var out, errb strings.Builder
	if code := dispatch([]string{"drain", "--socket", sock, "--timeout", "1m"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	for _, want := range []string{"withdrawn 203.0.113.10", "active connections: 2", "active connections: 0", "drain: idle"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestDrainUntilTimeout(t *testing.T) {
	sock := serveDrain(t, []int64{-1})
	var out, errb strings.Builder
	if code := dispatch([]string{"drain", "--socket", sock, "--timeout", "0s"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "unknown") || !strings.Contains(out.String(), "timeout reached") {
		t.Errorf("output:\n%s", out.String())
	}
}

func TestDrainWithoutBGPFails(t *testing.T) {
	sock := serveDrain(t, nil)
	var out, errb strings.Builder
	if code := dispatch([]string{"drain", "--socket", sock}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "no VIP over BGP") {
		t.Errorf("exit %d, stderr %q; want 1 and the reason", code, errb.String())
	}
}
