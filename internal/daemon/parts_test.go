package daemon

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestWatchAll: the watches run together and report through the same
// function; the first that fails ends the others and its error is
// returned; without a failure, they end with ctx.
func TestWatchAll(t *testing.T) {
	reporter := func(reason string, reported chan<- struct{}) func(context.Context, func(string)) error {
		return func(ctx context.Context, changed func(string)) error {
			changed(reason)
			close(reported)
			<-ctx.Done()
			return nil
		}
	}
	run := func(ctx context.Context, watches ...func(context.Context, func(string)) error) (<-chan error, <-chan string) {
		done, reasons := make(chan error, 1), make(chan string, len(watches))
		go func() { done <- watchAll(watches...)(ctx, func(r string) { reasons <- r }) }()
		return done, reasons
	}
	wait := func(done <-chan error) error {
		select {
		case err := <-done:
			return err
		case <-time.After(10 * time.Second):
			t.Fatal("watchAll did not end")
			return nil
		}
	}

	t.Run("until ctx is done", func(t *testing.T) {
		a, b := make(chan struct{}), make(chan struct{})
		ctx, cancel := context.WithCancel(context.Background())
		done, reasons := run(ctx, reporter("table deleted", a), reporter("service deleted", b))
		<-a
		<-b
		if got := []string{<-reasons, <-reasons}; !(got[0] == "table deleted" && got[1] == "service deleted" ||
			got[1] == "table deleted" && got[0] == "service deleted") {
			t.Errorf("reasons %q", got)
		}
		cancel()
		if err := wait(done); err != nil {
			t.Errorf("ended with ctx: %v", err)
		}
	})
	t.Run("one fails", func(t *testing.T) {
		reported := make(chan struct{})
		failed := errors.New("nftables watch: receive: no buffer")
		failing := func(ctx context.Context, _ func(string)) error {
			<-reported
			return failed
		}
		done, _ := run(context.Background(), reporter("service deleted", reported), failing)
		if err := wait(done); !errors.Is(err, failed) {
			t.Errorf("watchAll = %v, want the failure", err)
		}
	})
}
