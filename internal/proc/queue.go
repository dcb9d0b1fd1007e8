package proc

import (
	"context"
	"sync"
)

// Queue runs programs for one caller: at most Workers at once, at most
// Size waiting in order of submission. A submission that finds the queue
// full is dropped and counted; nothing grows with a flood of them.
// Workers are goroutines that exist only while there is work.
type Queue struct {
	workers, size int

	mu      sync.Mutex
	pending []job
	running int
	dropped uint64
}

type job struct {
	ctx  context.Context
	cmd  Cmd
	done func(Result)
}

// NewQueue returns a queue running up to workers programs at once with
// up to size more waiting (both at least 1).
func NewQueue(workers, size int) *Queue {
	return &Queue{workers: max(workers, 1), size: max(size, 1)}
}

// Submit queues c to run under ctx; done, when not nil, gets its result
// on the worker's goroutine. It reports false when the queue was full and
// c was dropped.
func (q *Queue) Submit(ctx context.Context, c Cmd, done func(Result)) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.pending) >= q.size {
		q.dropped++
		return false
	}
	q.pending = append(q.pending, job{ctx: ctx, cmd: c, done: done})
	if q.running < q.workers {
		q.running++
		go q.work()
	}
	return true
}

// Dropped is how many submissions were dropped because the queue was full.
func (q *Queue) Dropped() uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.dropped
}

// work runs queued programs until none is left.
func (q *Queue) work() {
	for {
		q.mu.Lock()
		if len(q.pending) == 0 {
			q.running--
			q.mu.Unlock()
			return
		}
		j := q.pending[0]
		q.pending[0] = job{}
		q.pending = q.pending[1:]
		q.mu.Unlock()
		r := Run(j.ctx, j.cmd)
		if j.done != nil {
			j.done(r)
		}
	}
}
