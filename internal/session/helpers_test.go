package session

import (
	"fmt"
	"sync"
	"testing"
	"time"

	streamgate "github.com/streamgate/streamgate"
)

// clock is a settable time source for Config.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock {
	return &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// newTestRegistry returns a registry on an injected clock with the given buffer size.
func newTestRegistry(tb testing.TB, bufferSize int) (*Registry, *clock) {
	tb.Helper()
	c := newClock()
	return NewRegistry("node-1", Config{BufferSize: bufferSize, Now: c.Now}), c
}

// mustRegister registers a session of tenant tn with no token expiry and no caps.
func mustRegister(tb testing.TB, r *Registry, tn, id string, channels ...string) *Session {
	tb.Helper()
	s, err := r.Register(Info{ID: id, TenantID: tn, Sub: "user-" + id, KeyID: "sig_1"}, channels, 0, 0)
	if err != nil {
		tb.Fatalf("Register(%s): %v", id, err)
	}
	return s
}

func message(id string) *streamgate.Frame {
	return &streamgate.Frame{ID: id, Body: []byte("event: message\ndata: {\"n\":\"" + id + "\"}\n\n"), Message: true}
}

// ids returns the ids of frames, to compare queues readably.
func frameIDs(fs []*streamgate.Frame) []string {
	out := make([]string, len(fs))
	for i, f := range fs {
		switch {
		case f == streamgate.Ping:
			out[i] = "ping"
		case f.Resync:
			out[i] = "resync"
		case f.ID == "":
			out[i] = string(f.Body)
		default:
			out[i] = f.ID
		}
	}
	return out
}

func isDone(s *Session) bool {
	select {
	case <-s.Done():
		return true
	default:
		return false
	}
}

func isReady(s *Session) bool {
	select {
	case <-s.Ready():
		return true
	default:
		return false
	}
}

func assertGone(tb testing.TB, r *Registry, id string) {
	tb.Helper()
	if _, ok := r.Lookup(id); ok {
		tb.Errorf("session %s still registered", id)
	}
}

func assertFinal(tb testing.TB, s *Session, want *streamgate.Frame) {
	tb.Helper()
	if !isDone(s) {
		tb.Fatalf("session %s: Done not closed", s.ID())
	}
	got := s.Final()
	switch {
	case want == nil && got != nil:
		tb.Errorf("session %s: Final = %q, want none", s.ID(), got.Body)
	case want != nil && got == nil:
		tb.Errorf("session %s: Final = nil, want %q", s.ID(), want.Body)
	case want != nil && string(got.Body) != string(want.Body):
		tb.Errorf("session %s: Final = %q, want %q", s.ID(), got.Body, want.Body)
	}
}

func seqIDs(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%d", prefix, i)
	}
	return out
}
