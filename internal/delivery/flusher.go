package delivery

import (
	"sync/atomic"
	"time"
)

// flusher writes the live frames of streams whose sinks can be written without blocking
// (TrySink) on a few goroutines of the node's, instead of a goroutine per stream: a broadcast
// to thousands of streams then costs a queue push per stream and a non-blocking write, not a
// goroutine woken, scheduled and parked for each. A stream whose connection does not take its
// frames at once goes on with a goroutine of its own (Stream.drain), which may block.
//
// Workers are started as streams are queued, up to max, and end once the queue has been empty
// for linger.
type flusher struct {
	q       chan *Stream
	max     int32
	workers atomic.Int32
	linger  time.Duration
}

// flushQueue is how many streams may wait for a flusher; a stream that finds the queue full
// is written by a goroutine of its own.
const flushQueue = 16384

// flusherLinger is how long an idle flusher waits for more before it ends.
const flusherLinger = time.Second

func newFlusher(workers, queue int, linger time.Duration) *flusher {
	return &flusher{q: make(chan *Stream, queue), max: int32(max(workers, 1)), linger: linger}
}

// push queues st, whose running flag the caller holds, and makes sure a worker will take it.
// It reports false when the queue is full: the caller writes st another way.
func (f *flusher) push(st *Stream) bool {
	select {
	case f.q <- st:
	default:
		return false
	}
	f.spawn()
	return true
}

// spawn starts a worker unless max are running.
func (f *flusher) spawn() {
	for {
		n := f.workers.Load()
		if n >= f.max {
			return
		}
		if f.workers.CompareAndSwap(n, n+1) {
			go f.work()
			return
		}
	}
}

func (f *flusher) work() {
	idle := time.NewTimer(f.linger)
	defer idle.Stop()
	for {
		select {
		case st := <-f.q:
			st.flushLive()
			continue
		default:
		}
		// The queue is empty: wait for more, linger at most (the timer is reset once per lull,
		// not once per stream).
		idle.Reset(f.linger)
		select {
		case st := <-f.q:
			st.flushLive()
		case <-idle.C:
			// A push that saw every worker running since the look above left its stream in
			// the queue, for a worker to take.
			f.workers.Add(-1)
			if len(f.q) > 0 {
				f.spawn()
			}
			return
		}
	}
}
