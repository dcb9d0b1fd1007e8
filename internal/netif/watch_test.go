package netif

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"
)

// TestWatchResubscribes: a subscription the library ends (its socket
// overran) is made again, listing what exists, and the updates go on; a
// subscription that cannot be made again ends the watch with its error.
func TestWatchResubscribes(t *testing.T) {
	var relists []bool
	subscribe := func(ch chan<- int, done <-chan struct{}, relist bool) error {
		relists = append(relists, relist)
		switch len(relists) {
		case 1: // one update, then the socket fails
			ch <- 1
			close(ch)
		case 2: // what exists now, then updates until done
			ch <- 2
			go func() { <-done; close(ch) }()
		default:
			return errors.New("no more sockets")
		}
		return nil
	}
	out := make(chan int, 4)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		errc <- watch(ctx, "numbers", 4, subscribe, func(u int) (int, bool) { return u * 10, true }, out)
	}()
	for _, want := range []int{10, 20} {
		select {
		case got := <-out:
			if got != want {
				t.Fatalf("update %d, want %d", got, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no update %d", want)
		}
	}
	cancel()
	if err := <-errc; err != nil {
		t.Errorf("watch ended with %v", err)
	}
	if !slices.Equal(relists, []bool{false, true}) {
		t.Errorf("subscriptions listing what exists: %v, want [false true]", relists)
	}

	calls := 0
	err := watch(context.Background(), "numbers", 4, func(ch chan<- int, done <-chan struct{}, relist bool) error {
		if calls++; calls > 1 {
			return errors.New("no more sockets")
		}
		close(ch) // the socket fails at once
		return nil
	}, func(u int) (int, bool) { return u, true }, make(chan int, 4))
	if err == nil {
		t.Error("a subscription that cannot be made again does not end the watch")
	}
}
