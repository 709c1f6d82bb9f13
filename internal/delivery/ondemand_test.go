package delivery

import (
	"bytes"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// countingSink keeps what a stream wrote, for tests that hold many streams without a reader
// goroutine each.
type countingSink struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *countingSink) WriteBatch(pieces [][]byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range pieces {
		s.buf.Write(p)
	}
	return nil
}

func (s *countingSink) count(sub string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Count(s.buf.String(), sub)
}

func (s *countingSink) has(sub string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Contains(s.buf.String(), sub)
}

// Idle streams hold no goroutine: a live event wakes one per stream to write it, and each
// stream ends (end called once) when its session closes.
func TestIdleStreamsHoldNoGoroutine(t *testing.T) {
	f := newFixture(t, defaultLimits())
	claims := f.claims("u", time.Now().Add(time.Hour), "*")
	const n = 300
	before := runtime.NumGoroutine()
	sinks := make([]*countingSink, n)
	streams := make([]*Stream, n)
	var ended sync.WaitGroup
	for i := range n {
		st, err := f.svc.Open(t.Context(), Request{Claims: claims, Tenant: f.tenant, Channels: []string{"room"}})
		if err != nil {
			t.Fatal(err)
		}
		streams[i], sinks[i] = st, &countingSink{}
		ended.Add(1)
		var once sync.Once
		st.Start(sinks[i], func() {
			once.Do(ended.Done)
		})
	}
	waitFor(t, "every stream's connected event", func() bool {
		for _, s := range sinks {
			if !s.has("event: connected") {
				return false
			}
		}
		return true
	})
	// The writers that sent the head may still be on their way out: wait for them to end.
	waitFor(t, "the writers to end", func() bool { return runtime.NumGoroutine()-before < n/10 })

	f.publish(true, "room", 1)
	waitFor(t, "every stream's live event", func() bool {
		for _, s := range sinks {
			if !s.has("event: message") {
				return false
			}
		}
		return true
	})
	waitFor(t, "the writers to end after the event", func() bool { return runtime.NumGoroutine()-before < n/10 })

	for _, st := range streams {
		st.Close()
	}
	done := make(chan struct{})
	go func() { ended.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(wait):
		t.Fatal("not every stream ended after its session closed")
	}
}

// startStreams opens n streams of one user on the channel room and starts each into the sink
// newSink makes; they are closed when the test ends.
func startStreams[S Sink](t *testing.T, f *fixture, n int, newSink func() S) ([]*Stream, []S) {
	t.Helper()
	claims := f.claims("u", time.Now().Add(time.Hour), "*")
	streams, sinks := make([]*Stream, n), make([]S, n)
	for i := range n {
		st, err := f.svc.Open(t.Context(), Request{Claims: claims, Tenant: f.tenant, Channels: []string{"room"}})
		if err != nil {
			t.Fatal(err)
		}
		streams[i], sinks[i] = st, newSink()
		st.Start(sinks[i], func() {})
		t.Cleanup(st.Close)
	}
	return streams, sinks
}

// waitFor polls cond until it holds, failing the test after the deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A burst of connects holds no goroutine per stream: a new stream's writer ends once the head is
// written, and so does the writer of a stream's first event; only a stream written to twice
// within the linger keeps its writer waiting for more.
func TestWriterLingersOnlyWhileBusy(t *testing.T) {
	f := newFixture(t, defaultLimits())
	// Lingering writers would outlive the test's deadlines: any that linger are seen.
	f.svc = f.service(Config{NodeID: "node-a", writerLinger: time.Hour}, nopHub{}, f.history)
	const n = 200
	streams, sinks := startStreams(t, f, n, func() *countingSink { return &countingSink{} })
	waitFor(t, "every stream's connected event", func() bool {
		for _, s := range sinks {
			if !s.has("event: connected") {
				return false
			}
		}
		return true
	})
	writing := func() (n int) {
		for _, st := range streams {
			if st.running.Load() {
				n++
			}
		}
		return n
	}
	waitFor(t, "the writers that sent the head to end", func() bool { return writing() == 0 })

	// received reports whether every stream has written n live events.
	received := func(n int) func() bool {
		return func() bool {
			for _, s := range sinks {
				if s.count("event: message") < n {
					return false
				}
			}
			return true
		}
	}
	f.publish(true, "room", 1)
	waitFor(t, "every stream's first live event", received(1))
	waitFor(t, "the writers of the first event to end", func() bool { return writing() == 0 })

	f.publish(true, "room", 1)
	waitFor(t, "every stream's second live event", received(2))
	// Now they are busy: each writer waits for the next frame instead of ending.
	if got := writing(); got != n {
		t.Fatalf("%d of %d streams have a writer after a second live event; want every one waiting for more", got, n)
	}
}
