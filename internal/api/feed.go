package api

import (
	"context"
	"sync"

	"halb/internal/event"
)

// followBuffer is how many events a follower may lag behind before it
// misses some.
const followBuffer = 256

// Feed passes events to the clients following them.
type Feed struct {
	mu   sync.Mutex
	subs map[chan event.Record]struct{}
}

// Publish passes r to every follower; it never blocks: a follower too far
// behind misses it.
func (f *Feed) Publish(r event.Record) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for ch := range f.subs {
		select {
		case ch <- r:
		default:
		}
	}
}

// Follow returns the events published from now until ctx is done; the
// channel closes then.
func (f *Feed) Follow(ctx context.Context) <-chan event.Record {
	ch := make(chan event.Record, followBuffer)
	f.mu.Lock()
	if f.subs == nil {
		f.subs = map[chan event.Record]struct{}{}
	}
	f.subs[ch] = struct{}{}
	f.mu.Unlock()
	go func() {
		<-ctx.Done()
		f.mu.Lock()
		delete(f.subs, ch)
		close(ch)
		f.mu.Unlock()
	}()
	return ch
}
