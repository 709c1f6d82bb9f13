package delivery

import (
	"bytes"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// trySink is a TrySink over countingSink, as a socket's sink behaves: it takes batches without
// blocking unless refusing is set, and keeps what it refuses, in order, for Flush (or the next
// WriteBatch), which stand for the stream's own goroutine writing with blocking writes.
type trySink struct {
	countingSink
	refusing atomic.Bool
	tried    atomic.Int64
	kmu      sync.Mutex
	kept     [][]byte
}

func (s *trySink) TryWriteBatch(pieces [][]byte) (bool, error) {
	s.tried.Add(1)
	s.kmu.Lock()
	defer s.kmu.Unlock()
	if s.refusing.Load() || len(s.kept) > 0 {
		for _, p := range pieces {
			s.kept = append(s.kept, bytes.Clone(p))
		}
		return false, nil
	}
	return true, s.countingSink.WriteBatch(pieces)
}

func (s *trySink) Flush() error {
	s.kmu.Lock()
	kept := s.kept
	s.kept = nil
	s.kmu.Unlock()
	return s.countingSink.WriteBatch(kept)
}

func (s *trySink) WriteBatch(pieces [][]byte) error {
	if err := s.Flush(); err != nil {
		return err
	}
	return s.countingSink.WriteBatch(pieces)
}

var eventID = regexp.MustCompile(`id: [^\n]*?(\d+)-(\d+)\nevent: message\n`)

// ids are the positions (ms, seq) of the events a sink received, in the order it received them.
func (s *trySink) ids(t *testing.T) [][2]uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out [][2]uint64
	for _, m := range eventID.FindAllSubmatch(s.buf.Bytes(), -1) {
		ms, err1 := strconv.ParseUint(string(m[1]), 10, 64)
		seq, err2 := strconv.ParseUint(string(m[2]), 10, 64)
		if err1 != nil || err2 != nil {
			t.Fatalf("event id %q", m[0])
		}
		out = append(out, [2]uint64{ms, seq})
	}
	return out
}

// Streams whose sinks can be written without blocking are written by the node's flushers, and
// a stream whose connection stops taking frames goes on with its own goroutine: every event
// arrives once, in order, whichever way each batch went.
func TestFlushedStreamsGetEveryEventInOrder(t *testing.T) {
	f := newFixture(t, defaultLimits())
	const events = 120
	_, sinks := startStreams(t, f, 40, func() *trySink { return &trySink{} })
	for i := 0; i < events; i += 10 {
		// A third of the streams stop taking frames for a while, a different third each time.
		for j, s := range sinks {
			s.refusing.Store((i/10+j)%3 == 0)
		}
		f.publish(true, "room", 10)
	}
	waitFor(t, "every stream's events", func() bool {
		for _, s := range sinks {
			if s.count("event: message") < events {
				return false
			}
		}
		return true
	})
	for i, s := range sinks {
		got := s.ids(t)
		if len(got) != events {
			t.Fatalf("stream %d received %d events, want %d", i, len(got), events)
		}
		for j := 1; j < len(got); j++ {
			if got[j][0] < got[j-1][0] || got[j][0] == got[j-1][0] && got[j][1] <= got[j-1][1] {
				t.Fatalf("stream %d received event %v after %v", i, got[j], got[j-1])
			}
		}
		if s.tried.Load() == 0 {
			t.Fatalf("stream %d was never written without blocking", i)
		}
	}
}

// A stream the flushers write holds no goroutine between events, however busy: there is no
// writer waiting for the next frame.
func TestFlushedStreamsHoldNoWriterBetweenEvents(t *testing.T) {
	f := newFixture(t, defaultLimits())
	// A lingering writer would outlive the test's deadlines: any that lingers is seen.
	f.svc = f.service(Config{NodeID: "node-a", writerLinger: time.Hour}, nopHub{}, f.history)
	streams, sinks := startStreams(t, f, 100, func() *trySink { return &trySink{} })
	f.publish(true, "room", 3) // three events within the linger: busy
	waitFor(t, "every stream's events", func() bool {
		for _, s := range sinks {
			if s.count("event: message") < 3 {
				return false
			}
		}
		return true
	})
	waitFor(t, "no stream to hold a writer", func() bool {
		for _, st := range streams {
			if st.running.Load() {
				return false
			}
		}
		return true
	})
}
