package session

import (
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	streamgate "github.com/streamgate/streamgate"
)

// Info is what the SSE handler knows about a connection when it registers it.
type Info struct {
	// ID is the session id (ses_…), chosen by the caller and unique on the node.
	ID       string
	TenantID string
	// Sub is the end user the token was issued to.
	Sub string
	// KeyID is the id (kid) of the signing key the token was signed with, so that deleting
	// the key can end exactly the sessions it authenticated.
	KeyID string
	// TokenExp is when the token expires; the zero time means never.
	TokenExp time.Time
}

// keptQueueCap bounds the queue array a session keeps between bursts: a steady stream reuses
// it and allocates nothing, while a burst that grew it large gives the memory back, because a
// node holds tens of thousands of mostly idle sessions.
const keptQueueCap = 64

// Session is one live SSE connection, seen from its writer: wait on Ready and Done (or be woken,
// see SetWake), Take the pending frames, write them, report them with Wrote; after Done, write
// Final and return.
//
// A Session has no goroutine or timer of its own; the registry's sweeps do the timing.
type Session struct {
	reg         *Registry
	tenant      *tenant
	info        Info
	connectedAt time.Time
	// expires and exp change only with a token refresh, which holds both reg.mu and mu; a
	// reader holds either.
	expires bool  // info.TokenExp is set
	exp     int64 // info.TokenExp in Unix nanoseconds, compared on every send
	// warned is set once token_expiring went out for the current token.
	warned atomic.Bool
	ready  chan struct{}
	done   chan struct{}
	// wake, when set (SetWake), is called with mu held whenever frames become pending or the
	// session closes: a writer that holds no goroutine while idle starts one then.
	wake func()

	// subs is guarded by reg.mu. It is sorted by channel and records where the session sits in
	// each channel's subscriber list, so leaving a channel is a swap-remove, not a scan. It is
	// kept after the session is closed so the writer can still ask which channels it had.
	subs []sub

	// lastWrite is in Unix nanoseconds: when the writer last completed a write (or the session
	// registered). Heartbeat and stale cleanup read it without taking the session's lock.
	lastWrite atomic.Int64

	mu    sync.Mutex
	queue []*streamgate.Frame
	// marker is 1 + the index in queue of the pending catch-up marker (a Resync frame), or 0.
	marker      int
	closed      bool
	final       *streamgate.Frame
	consecutive int // drops since the last successful enqueue
	drops       int // drops since registration; never reset, to catch intermittently slow clients
}

type sub struct {
	channel string
	pos     int // index in tenant.channels[channel]
}

// outcome is what offering a frame to a session did.
type outcome uint8

const (
	queued  outcome = iota
	full            // dropped and counted; the session stays
	evicted         // dropped, and the drop crossed a threshold: closed with lagging
	expired         // the token had expired: closed with auth_failed
	closed          // the session was already closed
)

func (o outcome) err() error {
	switch o {
	case queued:
		return nil
	case full:
		return ErrFull
	case evicted:
		return ErrEvicted
	case expired:
		return ErrTokenExpired
	default:
		return ErrClosed
	}
}

// leaving reports whether the session must now be taken out of the registry.
func (o outcome) leaving() bool { return o >= evicted }

// offer is the non-blocking enqueue behind Send and Broadcast. It never waits for the writer;
// it holds only the session's lock, briefly.
func (s *Session) offer(f *streamgate.Frame, now int64, cfg *Config) outcome {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return closed
	}
	if s.expires && now >= s.exp {
		s.closeLocked(tokenExpired)
		s.mu.Unlock()
		return expired
	}
	if f.Resync {
		s.mark(f)
		s.mu.Unlock()
		return queued
	}
	if len(s.queue)-min(s.marker, 1) >= cfg.BufferSize {
		s.consecutive++
		s.drops++
		// The contract's thresholds: evict on the drop that makes either count reach its
		// maximum (the 10th in a row or the 50th in all, by default).
		if s.consecutive >= cfg.MaxConsecutiveDrops || s.drops >= cfg.MaxTotalDrops {
			s.closeLocked(lagging)
			s.mu.Unlock()
			return evicted
		}
		s.mu.Unlock()
		return full
	}
	s.queue = append(s.queue, f)
	s.consecutive = 0
	s.notify()
	s.mu.Unlock()
	return queued
}

// mark queues a catch-up marker; s.mu must be held. A marker cannot be dropped: it is what
// tells the writer that events went missing, and losing it would lose them for good (or, as a
// drop, evict a session for the node's own reconnect). So it goes in whether the buffer is full
// or not, without counting, and at most one waits at a time: the queue holds BufferSize frames
// and one marker. A second reconnect before the writer took the first marker keeps the earlier
// position, where the events began to go missing, and takes the newer marker, whose reads begin
// after the newer reconnect; the catch-up then covers both gaps.
func (s *Session) mark(f *streamgate.Frame) {
	if s.marker > 0 {
		s.queue[s.marker-1] = f
	} else {
		s.queue = append(s.queue, f)
		s.marker = len(s.queue)
	}
	s.notify()
}

// expireIfDue closes the session with auth_failed if its token has expired by now; it reports
// whether this call closed it. A refresh between the sweep's look and this call wins.
func (s *Session) expireIfDue(now int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.expires || now < s.exp {
		return false
	}
	return s.closeLocked(tokenExpired)
}

// ping queues a heartbeat unless something is already pending: the writer will write that, and
// the write resets the idle clock just as well. A stuck writer so never piles up pings.
func (s *Session) ping() {
	s.mu.Lock()
	if !s.closed && len(s.queue) == 0 {
		s.queue = append(s.queue, streamgate.Ping)
		s.notify()
	}
	s.mu.Unlock()
}

// notify wakes the writer without ever blocking; s.mu must be held so that a Take that drains
// the token cannot lose a wake-up for a frame it did not take.
func (s *Session) notify() {
	select {
	case s.ready <- struct{}{}:
	default:
	}
	if s.wake != nil {
		s.wake()
	}
}

// close closes the session with final unless it is already closed; it reports whether this
// call closed it, so that only one closer counts an eviction.
func (s *Session) close(final *streamgate.Frame) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closeLocked(final)
}

func (s *Session) closeLocked(final *streamgate.Frame) bool {
	if s.closed {
		return false
	}
	s.closed = true
	s.final = final
	close(s.done)
	if s.wake != nil {
		s.wake()
	}
	return true
}

// SetWake makes the session call wake, with its lock held (wake must not block or call back
// into the session), whenever frames become pending or it closes, from now on. A writer that
// sets it must then look once for what is already pending (Pending).
func (s *Session) SetWake(wake func()) {
	s.mu.Lock()
	s.wake = wake
	s.mu.Unlock()
}

// Pending reports whether frames wait to be taken or the session is closed: whether a writer has
// something to do.
func (s *Session) Pending() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.queue) > 0 || s.closed
}

func (s *Session) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

func (s *Session) dropped() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return uint64(s.drops)
}

// findSub returns where channel is or would be in s.subs; reg.mu must be held.
func (s *Session) findSub(channel string) (int, bool) {
	return slices.BinarySearchFunc(s.subs, channel, func(x sub, ch string) int {
		return strings.Compare(x.channel, ch)
	})
}

// channelsLocked returns the session's channels, sorted; reg.mu must be held.
func (s *Session) channelsLocked() []string {
	if len(s.subs) == 0 {
		return nil
	}
	out := make([]string, len(s.subs))
	for i, x := range s.subs {
		out[i] = x.channel
	}
	return out
}

// Refresh makes the session expire with a new token: at exp (the zero time means never), and
// closed like the others signed with keyID when that key is deleted. token_expiring goes out
// again before the new expiry. It returns ErrNotFound once the session is closed or a newer
// session took over its id.
func (s *Session) Refresh(exp time.Time, keyID string) error {
	r := s.reg
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.sessions[s.info.ID] != s {
		return ErrNotFound
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrNotFound
	}
	s.info.KeyID, s.info.TokenExp = keyID, exp
	s.expires, s.exp = !exp.IsZero(), exp.UnixNano()
	s.warned.Store(false)
	return nil
}

// ID returns the session id.
func (s *Session) ID() string { return s.info.ID }

// Ready receives when frames are pending. It is never closed; watch Done as well.
// A receive may find nothing to Take when a Take already got the frames; that is harmless.
func (s *Session) Ready() <-chan struct{} { return s.ready }

// Done is closed when the session is closed for any reason: evicted, token expired, removed,
// closed by an operator, or the node shutting down. The writer then writes Final and returns.
func (s *Session) Done() <-chan struct{} { return s.done }

// Take appends every pending frame to dst in order, empties the queue and returns dst.
// Passing the previous result back as dst[:0] makes a steady stream allocate nothing: the
// session keeps its queue array and the writer keeps its own. After Done, Take still returns
// what was pending; the writer decides whether it is worth writing before Final.
func (s *Session) Take(dst []*streamgate.Frame) []*streamgate.Frame {
	s.mu.Lock()
	dst = append(dst, s.queue...)
	s.marker = 0
	clear(s.queue) // let delivered frames be collected
	if cap(s.queue) > keptQueueCap {
		s.queue = nil
	} else {
		s.queue = s.queue[:0]
	}
	// Everything pending is taken, so a pending wake-up would only be a spurious one.
	select {
	case <-s.ready:
	default:
	}
	s.mu.Unlock()
	return dst
}

// Final returns the frame to write last once Done is closed (lagging, auth_failed, disconnect),
// or nil when the session ends without one (removed, stale) or is still open.
func (s *Session) Final() *streamgate.Frame {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.final
}

// Wrote reports that the writer put frames on the wire, messages of them with Message set.
// It resets the idle clock that Heartbeat and CleanupStale read and adds messages to the
// tenant's and node's delivered counters. Call it after each completed write, pings included.
func (s *Session) Wrote(messages int) {
	s.lastWrite.Store(s.reg.now())
	if messages > 0 {
		s.tenant.delivered.Add(uint64(messages))
	}
}

// Channels returns the session's channels, sorted. It stays valid after the session is closed
// or evicted, so a writer that leaves can release what it held per channel.
func (s *Session) Channels() []string {
	s.reg.mu.RLock()
	defer s.reg.mu.RUnlock()
	return s.channelsLocked()
}
