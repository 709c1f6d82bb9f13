package delivery

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	streamgate "github.com/streamgate/streamgate"
	"github.com/streamgate/streamgate/internal/ratelimit"
	"github.com/streamgate/streamgate/internal/session"
	"github.com/streamgate/streamgate/internal/stream"
	"github.com/streamgate/streamgate/internal/tenant"
)

// replayPage is how many history entries a resume reads per round trip.
const replayPage = 500

// Stream is one open stream on this node: its registry session, the pub/sub references it
// holds, and what its writer needs to stitch replay and live together.
type Stream struct {
	svc      *Service
	sess     *session.Session
	tenantID string
	sub      string
	info     json.RawMessage // the token's info claim, shown in presence
	window   stream.Window
	ttl      time.Duration
	// connectedAt is when the session first connected, kept across resumes.
	connectedAt time.Time
	// ctx ends with Close, so that a replay in progress stops reading.
	ctx    context.Context
	cancel context.CancelFunc

	cursor     stream.Cursor
	prefix     []byte
	floor      uint64 // live events at or below it were replayed or predate the session
	floorID    string
	replayFrom string // replay (replayFrom, floorID] before going live; "" for none
	reset      string
	states     []stream.Entry // current job and workflow states to send first, as of the floor
	log        *Log           // set for a stream on a tenant-wide log

	mu       sync.Mutex // guards acquired, present, closed and leased against the sessions API and takeovers
	acquired []string
	present  []string // the channels on which the session counts in presence
	closed   bool
	leased   bool // holds one of the tenant's max_connections

	rate ratelimit.Result // the tenant's connect rate after this connect, when counted

	// The writing side (Start): the writer, the batch it reuses, whether a goroutine is
	// writing, and what to call when the stream is over.
	w     *writer
	try   TrySink             // w's sink, when it can be written without blocking (the flushers write it)
	batch []*streamgate.Frame // taken from the session, not yet written
	// lastLive is when live frames were last written; the writer running owns it.
	lastLive time.Time
	running  atomic.Bool
	started  atomic.Bool // w and end are set
	closing  atomic.Bool // Close was called
	end      func()

	closeOnce sync.Once
}

// Rate is the tenant's connect rate as this stream's admission left it (zero when not counted).
func (st *Stream) Rate() ratelimit.Result { return st.rate }

// SessionID returns the stream's session id.
func (st *Stream) SessionID() string { return st.sess.ID() }

// Replays reports whether the stream starts with a replay of what its client missed: false for
// a fresh start, and for a resume whose gap could not be served from history.
func (st *Stream) Replays() bool { return st.replayFrom != "" }

// channels are the channels whose history the stream replays: its session's, or its log's.
func (st *Stream) channels() []string {
	if st.log != nil {
		return []string{st.log.Channel}
	}
	return st.sess.Channels()
}

// entryFrame is a replayed entry as this stream sends it, or nil when it leaves it out.
func (st *Stream) entryFrame(e stream.Entry) *streamgate.Frame {
	if st.log != nil {
		return st.log.Entry(e)
	}
	return e.Frame()
}

// Close ends the stream: Start's end is called (Serve returns), without a final notice (the
// client is gone or the transport gave up); the session leaves the registry and this node drops
// the stream's channels that nothing else here needs. It is idempotent and safe to call from
// any goroutine, also while the stream is being written.
func (st *Stream) Close() {
	st.closeOnce.Do(func() {
		st.closing.Store(true)
		st.release()
		st.svc.streams.Done()
	})
	// The close started no writer (see wake): the stream ends here, on the closer's goroutine,
	// unless a writer is running, which sees the session closed.
	if st.started.Load() && st.running.CompareAndSwap(false, true) {
		st.drain()
	}
}

func (st *Stream) release() {
	st.cancel()
	st.svc.live.remove(st)
	st.mu.Lock()
	acquired, leased, present := st.acquired, st.leased, st.present
	st.acquired, st.closed, st.leased, st.present = nil, true, false, nil
	st.mu.Unlock()
	// The connection goes back before the session leaves the registry, whose count the
	// tenant's usage reports: a tenant told that a place is free finds it free.
	if leased {
		st.svc.Admission.Release(st.tenantID)
	}
	st.svc.Registry.Leave(st.sess)
	for _, ch := range acquired {
		st.svc.Hub.Release(st.tenantID, ch)
	}
	if len(present) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		st.svc.Presence.Leave(ctx, st.tenantID, st.sub, present)
	}
}

// enterLocked counts the session in presence on those of channels that keep it (by the
// tenant's settings now) and where it does not count yet; st.mu must be held.
func (st *Stream) enterLocked(ctx context.Context, settings tenant.Settings, channels []string) {
	if st.svc.Presence == nil {
		return
	}
	var on []string
	for _, ch := range channels {
		if settings.Presence(ch) && !slices.Contains(st.present, ch) {
			on = append(on, ch)
		}
	}
	if len(on) == 0 {
		return
	}
	st.present = append(st.present, on...)
	st.svc.Presence.Join(ctx, st.tenantID, st.sub, st.info, on)
}

// exitLocked takes the session out of presence on those of channels where it counts, whatever
// the settings say now; st.mu must be held.
func (st *Stream) exitLocked(ctx context.Context, channels []string) {
	var off []string
	for _, ch := range channels {
		if i := slices.Index(st.present, ch); i >= 0 {
			st.present = slices.Delete(st.present, i, i+1)
			off = append(off, ch)
		}
	}
	if len(off) > 0 {
		st.svc.Presence.Leave(ctx, st.tenantID, st.sub, off)
	}
}

// takeLease hands the stream's connection to a stream resuming its session on this node.
func (st *Stream) takeLease() bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	ok := st.leased
	st.leased = false
	return ok
}

// Serve writes the stream to out until it ends (see Start), and returns then.
func (st *Stream) Serve(out Sink) {
	ended := make(chan struct{})
	st.Start(out, func() { close(ended) })
	<-ended
}

// Start writes the stream to out until the session closes (evicted, expired, suspended, the
// node stopping: a final notice goes out then), Close is called, or out fails: first the retry
// advice and connected, reset where the resume could not be served, then the replay of what a
// resumed session missed (or the current job and workflow states), then live frames above the
// floor. Frames that are ready together go out in one batch.
//
// It writes the head and the replay on the calling goroutine (a request's, which has nothing
// else to do), then returns. Live frames are written on a goroutine that exists only while
// there is something to write: the session wakes one when frames arrive, and it ends when they
// are written, so an idle stream holds no goroutine. end is called once, on one of these
// goroutines (possibly before Start returns), when the stream is over; nothing is written to
// out after it.
func (st *Stream) Start(out Sink, end func()) {
	st.w = &writer{out: out, st: st}
	st.try, _ = out.(TrySink)
	st.end = end
	st.running.Store(true) // the caller writes head and replay, then drains
	st.started.Store(true)
	st.begin()
}

// begin writes the head and the replay, then goes live.
func (st *Stream) begin() {
	s, w := st.svc, st.w
	head := []*streamgate.Frame{{Body: streamgate.AppendRetry(nil, s.cfg.Retry)}}
	if st.log == nil {
		head = append(head, st.connectedFrame())
		if st.reset != "" {
			head = append(head, resetFrame(st.reset, st.sess.Channels()))
		}
	}
	if err := w.write(head); err != nil {
		st.end()
		return
	}
	if err := st.replay(w); err != nil {
		if !errors.Is(err, context.Canceled) {
			s.log.Debug("stream replay ended", "session", st.sess.ID(), "err", err)
		}
		st.end()
		return
	}
	// From here on only live frames come, and those at or below the floor were replayed or
	// predate the session.
	w.raiseFloor(st.floorID, st.floor)
	st.sess.SetWake(st.wake)
	st.drain()
}

// wake starts a goroutine to write what the session holds, unless one is running; the session
// calls it with its lock held.
func (st *Stream) wake() {
	// A stream being closed by Close (its client left) ends on Close's goroutine instead: a
	// node whose clients all leave at once does not start a goroutine for each.
	if !st.closing.Load() && st.running.CompareAndSwap(false, true) {
		if st.try == nil || !st.svc.flusher.push(st) {
			go st.drain()
		}
	}
}

// flushLive writes what the session holds without blocking, on a flusher's goroutine. What
// cannot be written that way goes on with drain on a goroutine of the stream's own: a closed
// session (its final notice), a resync (history reads), or a connection that did not take the
// whole batch. It runs with st.running set, and clears it unless drain takes over or the
// stream is queued again.
func (st *Stream) flushLive() {
	sess, w := st.sess, st.w
	for {
		select {
		case <-sess.Done():
			go st.drain()
			return
		default:
		}
		st.batch = sess.Take(st.batch[:0])
		if len(st.batch) > 0 {
			if slices.ContainsFunc(st.batch, func(f *streamgate.Frame) bool { return f.Resync }) {
				go st.drain() // writes st.batch first
				return
			}
			done, err := w.send(st.batch, st.try)
			clear(st.batch)
			st.batch = st.batch[:0]
			if err != nil {
				go st.end()
				return
			}
			if !done {
				go st.drain() // flushes what the sink kept first
				return
			}
		}
		st.running.Store(false)
		if !sess.Pending() || !st.running.CompareAndSwap(false, true) {
			return
		}
		// More came meanwhile: the stream goes to the back of the queue, so that a few busy
		// streams cannot keep the flushers from the others.
		if st.svc.flusher.push(st) {
			return
		}
	}
}

// drain writes the session's pending frames until there are none, then returns, or ends the
// stream when the session closed or a write failed. It runs with st.running set, one at a time.
//
// A stream written to twice within writerLinger is busy: its goroutine then waits writerLinger
// for more before it returns (starting one per frame would cost a busy stream more than its
// writes). Any other stream's ends at once: a new stream once its head is written, so that a
// burst of connects does not hold a goroutine and a timer per stream, and a stream whose
// events come seconds apart after each one.
func (st *Stream) drain() {
	sess, w := st.sess, st.w
	if st.try != nil {
		if err := st.try.Flush(); err != nil {
			st.end()
			return
		}
	}
	var idle *time.Timer
	busy := false
	for {
		select {
		case <-sess.Done():
			// Closed: a final notice goes out alone; what was still queued is left for a
			// resume. A session closed because the client left has none. running stays set:
			// nothing is written after this.
			if f := sess.Final(); f != nil {
				_ = w.write([]*streamgate.Frame{f})
				st.evicted(f)
			}
			st.end()
			return
		default:
		}
		if len(st.batch) == 0 { // else flushLive took a batch it left to this goroutine
			st.batch = sess.Take(st.batch[:0])
		}
		if len(st.batch) > 0 {
			err := st.writeLive(w, st.batch)
			clear(st.batch)
			st.batch = st.batch[:0]
			if err != nil {
				st.end()
				return
			}
			now := time.Now()
			busy = !st.lastLive.IsZero() && now.Sub(st.lastLive) < st.svc.cfg.writerLinger
			st.lastLive = now
			continue
		}
		// A stream the flushers write needs no goroutine waiting for its next frame.
		if busy && st.try == nil {
			if idle == nil {
				idle = time.NewTimer(st.svc.cfg.writerLinger)
			} else {
				idle.Reset(st.svc.cfg.writerLinger)
			}
			select {
			case <-sess.Ready():
				continue
			case <-sess.Done():
				continue
			case <-idle.C:
			}
		}
		// A wake that came since the Take found running set and did nothing: look again
		// after clearing it.
		st.running.Store(false)
		if !sess.Pending() || !st.running.CompareAndSwap(false, true) {
			return
		}
	}
}

// writerLinger is how long a stream's writer goroutine waits for more after writing before it
// ends: longer than the gap between a busy channel's events, short enough that an idle node's
// streams hold no goroutine soon after their last frame.
const writerLinger = 2 * time.Second

// evicted tells the tenant's backend (session.evicted) when the final notice f ends the session
// for lagging, a failed authentication or the operator's eviction.
func (st *Stream) evicted(f *streamgate.Frame) {
	ev := st.svc.Events
	if ev == nil {
		return
	}
	reason, ok := evictionReason(f)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := ev.SessionEvicted(ctx, st.tenantID, st.sess.ID(), st.sub, reason); err != nil {
		st.svc.log.Warn("session.evicted webhook not queued", "tenant", st.tenantID, "session", st.sess.ID(), "err", err)
	}
}

// evictionReason tells from a final notice whether the session was evicted: lagging and
// auth_failed are evictions, and so is a disconnect by the operator; a shutdown, a suspension
// or a takeover by a resume are not.
func evictionReason(f *streamgate.Frame) (string, bool) {
	switch f.Event {
	case streamgate.EventLagging, streamgate.EventAuthFailed:
		return f.Reason, true
	case streamgate.EventDisconnect:
		return f.Reason, f.Reason == streamgate.ReasonEvicted
	}
	return "", false
}

// writeLive writes a batch of live frames. A resync marker among them (this node's
// subscription broke and came back) first fetches from history what the stream may have missed.
func (st *Stream) writeLive(w *writer, batch []*streamgate.Frame) error {
	for i, f := range batch {
		if !f.Resync {
			continue
		}
		if err := w.write(batch[:i]); err != nil {
			return err
		}
		if err := st.catchUp(w, f); err != nil {
			return err
		}
		return st.writeLive(w, batch[i+1:])
	}
	return w.write(batch)
}

// catchUp writes what was published on the stream's channels after the stream's position, up
// to a position read after the reconnect of marker, and raises the floor to it so that live
// frames already written are skipped. Each channel's part comes from the node's catch-up reads,
// which the streams of one reconnect share. When the gap cannot be served (trimmed meanwhile,
// or the event log restarted), the stream is ended with a reconnectable disconnect: the client
// resumes from its cursor and gets reset if it must.
func (st *Stream) catchUp(w *writer, marker *streamgate.Frame) error {
	channels := st.channels()
	if len(channels) == 0 {
		return nil
	}
	from, fromSeq := w.position()
	parts, gap, err := st.svc.catchUps.read(st.ctx, st.svc.History, st.tenantID, channels, marker, from, fromSeq, st.window)
	if err != nil {
		return err
	}
	// Channels may have been read at different moments: the stream goes up to the earliest of
	// their positions, and what came after it arrives live.
	var upto stream.Snapshot
	for i, p := range parts {
		gap = gap || p.upto.Epoch != st.cursor.Epoch
		if i == 0 || p.upto.Seq < upto.Seq {
			upto = p.upto
		}
	}
	if gap {
		_ = w.write([]*streamgate.Frame{session.Disconnect(streamgate.ReasonMissedEvents, true)})
		return errors.New("stream cannot catch up")
	}
	var frames []*streamgate.Frame
	for _, p := range parts {
		for j, e := range p.entries {
			if e.Seq > upto.Seq {
				break
			}
			f := p.frames[j]
			if st.log != nil {
				f = st.log.Entry(e)
			}
			if f != nil {
				frames = append(frames, f)
			}
		}
	}
	if len(parts) > 1 {
		slices.SortFunc(frames, func(a, b *streamgate.Frame) int { return cmp.Compare(a.Seq, b.Seq) })
	}
	for len(frames) > 0 {
		n := min(len(frames), replayPage)
		if err := w.write(frames[:n]); err != nil {
			return err
		}
		frames = frames[n:]
	}
	w.raiseFloor(upto.LastID, upto.Seq)
	return nil
}

// replay sends what a resumed session missed, page by page, then the current state of its job
// and workflow channels when it starts afresh. Live frames queue meanwhile and are written
// after, above the floor.
func (st *Stream) replay(w *writer) error {
	if err := st.replayRange(w, st.channels(), st.replayFrom, st.floorID); err != nil {
		return err
	}
	frames := make([]*streamgate.Frame, len(st.states))
	for i, e := range st.states {
		frames[i] = st.stateFrame(e)
	}
	return w.write(frames)
}

// replayRange writes the channels' events with after < id <= upto from history, in id order,
// one page per round trip. An empty after replays nothing.
func (st *Stream) replayRange(w *writer, channels []string, after, upto string) error {
	for after != "" {
		entries, more, err := st.svc.History.Read(st.ctx, st.tenantID, channels, after, upto, replayPage)
		if err != nil {
			return err
		}
		frames := make([]*streamgate.Frame, 0, len(entries))
		for _, e := range entries {
			if f := st.entryFrame(e); f != nil {
				frames = append(frames, f)
			}
		}
		if err := w.write(frames); err != nil {
			return err
		}
		if !more || len(entries) == 0 {
			return nil
		}
		after = entries[len(entries)-1].ID
	}
	return nil
}

// stateFrame is a job's or workflow's current state as an event. Its id is the stream's floor,
// so that a resume from it misses nothing; its Seq is the state's own, so that older live
// changes are skipped.
func (st *Stream) stateFrame(e stream.Entry) *streamgate.Frame {
	f := streamgate.NewEventFrame(e.Channel, st.floorID, e.Seq, e.Kind, e.Data)
	f.Snapshot = true
	return f
}

func (st *Stream) connectedFrame() *streamgate.Frame {
	data := struct {
		SessionID string   `json:"session_id"`
		NodeID    string   `json:"node_id"`
		Channels  []string `json:"channels"`
	}{st.sess.ID(), st.svc.cfg.NodeID, nonNil(st.sess.Channels())}
	// A resumed session's cursor stays where the client was until replay moves it on.
	id := st.floorID
	if st.replayFrom != "" {
		id = st.replayFrom
	}
	f := streamgate.NewEventFrame("", id, 0, streamgate.EventConnected, string(mustJSON(data)))
	f.Message = false
	return f
}

func resetFrame(reason string, channels []string) *streamgate.Frame {
	return streamgate.Notice(streamgate.EventReset, struct {
		Reason   string   `json:"reason"`
		Channels []string `json:"channels"`
	}{reason, nonNil(channels)})
}

func channelNotice(event, channel string) *streamgate.Frame {
	return streamgate.Notice(event, struct {
		Channel string `json:"channel"`
	}{channel})
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// writer writes frames to one stream: each frame with an id gets the session's cursor, live
// frames already covered by the replay are skipped, and a job's or workflow's state never goes
// back to an older one.
type writer struct {
	out     Sink
	st      *Stream
	floor   uint64            // zero while replaying
	floorID string            // the id whose Seq is floor
	state   map[string]uint64 // channel → Seq of the newest job/workflow state written
	pieces  [][]byte          // reused between batches
	lastID  string            // the id of the newest event written, the client's cursor
	lastSeq uint64
}

// write sends the frames that are not skipped as one batch: the shared bytes of each frame,
// with the session's cursor before those that have an id.
func (w *writer) write(frames []*streamgate.Frame) error {
	_, err := w.send(frames, nil)
	return err
}

// send is write, through try (w's sink) without blocking when try is set: done is false when
// try kept some of the batch for its Flush.
func (w *writer) send(frames []*streamgate.Frame, try TrySink) (done bool, err error) {
	pieces, messages := w.pieces[:0], 0
	idField := streamgate.IDField()
	for _, f := range frames {
		if f.Resync || w.skip(f) || (f.Event != "" && w.st.log != nil) {
			continue
		}
		switch {
		case f.ID == "":
			pieces = append(pieces, f.Body)
		case w.st.log != nil:
			// The event carries its own id: the stream's place is known to this node alone.
			pieces = append(pieces, f.Body)
			w.lastID, w.lastSeq = f.ID, f.Seq
		case f.Snapshot && w.lastSeq > w.st.floor:
			// A state sent mid-stream (a sessions-API subscription) carries the cursor the
			// stream has reached, not the floor it started from: a resume must not go back.
			pieces = append(pieces, idField, w.st.prefix, []byte(w.lastID), f.Body[len(f.ID):])
		default:
			pieces = append(pieces, idField, w.st.prefix, f.Body)
			if !f.Snapshot {
				w.lastID, w.lastSeq = f.ID, f.Seq
			}
		}
		if f.Message {
			messages++
		}
	}
	w.pieces = pieces[:0]
	if len(pieces) == 0 {
		return true, nil
	}
	if try != nil {
		done, err = try.TryWriteBatch(pieces)
	} else {
		done, err = true, w.out.WriteBatch(pieces)
	}
	clear(pieces)
	if err != nil {
		return false, err
	}
	// Frames a TrySink kept count as written: they go out before anything else, or the stream
	// ends.
	w.st.sess.Wrote(messages)
	return done, nil
}

// raiseFloor makes live frames at or below seq (the position id) skipped from now on: they
// were replayed, caught up, or predate the session.
func (w *writer) raiseFloor(id string, seq uint64) {
	if seq >= w.floor {
		w.floor, w.floorID = seq, id
	}
}

// position is where the stream stands in its tenant's order: every event up to it was
// written, or lies at or below the floor.
func (w *writer) position() (string, uint64) {
	if w.floor > w.lastSeq || w.lastID == "" {
		return w.floorID, w.floor
	}
	return w.lastID, w.lastSeq
}

func (w *writer) skip(f *streamgate.Frame) bool {
	if f.Seq == 0 {
		return false
	}
	if !f.Snapshot && f.Seq <= w.floor {
		return true
	}
	if !streamgate.Reserved(f.Channel) {
		return false
	}
	if w.state == nil {
		w.state = make(map[string]uint64)
	}
	if f.Seq <= w.state[f.Channel] {
		return true
	}
	w.state[f.Channel] = f.Seq
	return false
}
