package delivery

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"time"

	streamgate "github.com/streamgate/streamgate"
	"github.com/streamgate/streamgate/internal/stream"
)

// Defaults of the catch-up settings (Config.catchUpReads, Config.catchUpLinger).
const (
	defaultCatchUpReads  = 4
	defaultCatchUpLinger = 5 * time.Second
)

// catchUps are the history reads of this node's streams catching up after a pub/sub reconnect.
//
// A reconnect reaches every stream on the connection's channels at once, and each must read
// what it missed: thousands of streams reading the same few channels' history at the same
// moment would stampede Redis just as it came back. So each channel's gap is read once for all
// the streams holding the same reconnect's marker (the hub sends one marker per reconnect), and
// at most a few reads run at a time on the node; streams wait their turn on their own context.
type catchUps struct {
	sem    chan struct{} // a token per history read in flight on this node
	linger time.Duration // how long an unused channelRead is kept for a latecomer

	mu    sync.Mutex
	reads map[readKey]*channelRead
}

func newCatchUps(concurrency int, linger time.Duration) *catchUps {
	return &catchUps{sem: make(chan struct{}, concurrency), linger: linger, reads: make(map[readKey]*channelRead)}
}

type readKey struct {
	tenantID, channel string
	marker            *streamgate.Frame // the reconnect: reads made after it cover its gap
}

// channelRead is one channel's history across one reconnect's gap: the tenant's position read
// after the reconnect, and the channel's events from the oldest position a stream needed up to
// it, shared read-only by every stream that holds the marker.
type channelRead struct {
	io chan struct{} // a token while one stream reads for all; the others wait

	mu       sync.Mutex
	refs     int // streams using it; at zero it lingers, then goes
	idle     *time.Timer
	read     bool
	err      error           // a failed read, given to every stream waiting on it
	snap     stream.Snapshot // the position after the reconnect (epoch: the newest seen)
	after    string          // entries hold the channel's events above it, up to snap
	afterSeq uint64
	entries  []stream.Entry // in id order
	frames   []*streamgate.Frame
	// What the gap checks found: a cursor at or above cleanFrom missed nothing that was
	// trimmed since; one at or below gapTo may have. A gap only widens toward older cursors.
	clean, gap       bool
	cleanFrom, gapTo uint64
}

// catchUpPart is what a stream takes from one channel's read.
type catchUpPart struct {
	upto    stream.Snapshot // its Epoch: the newest seen
	entries []stream.Entry  // above the stream's position
	frames  []*streamgate.Frame
}

// read returns, for each of the stream's channels, the events after the stream's position
// (from, fromSeq) across the gap of marker, reading from history only what no other stream
// read yet. It reports gap when some of those events may be gone from history. ctx is the
// stream's: a stream that leaves stops waiting, and a read it was making for the others is made
// by the next one.
//
// A stream reads all the channels that need it in one round trip (a position, then each page
// of their events, pipelined), so that a stream alone on many channels costs no more round
// trips than one on a single channel.
// It waits for one channel's turn at a time and holds no turn while it waits, so that streams
// reading overlapping channels never wait on each other in a circle.
func (c *catchUps) read(ctx context.Context, h History, tenantID string, channels []string, marker *streamgate.Frame, from string, fromSeq uint64, w stream.Window) (parts []catchUpPart, gap bool, err error) {
	keys := make([]readKey, len(channels))
	reads := make([]*channelRead, len(channels))
	for i, ch := range channels {
		keys[i] = readKey{tenantID, ch, marker}
		reads[i] = c.join(keys[i])
	}
	defer func() {
		for i, r := range reads {
			c.leave(keys[i], r)
		}
	}()
	parts = make([]catchUpPart, len(channels))
	done := make([]bool, len(channels))
	for {
		var todo []int
		for i, r := range reads {
			if done[i] {
				continue
			}
			r.mu.Lock()
			err := r.err
			p, ok, gap := r.partLocked(fromSeq)
			r.mu.Unlock()
			switch {
			case err != nil:
				return nil, false, err
			case gap:
				return nil, true, nil
			case ok:
				parts[i], done[i] = p, true
			default:
				todo = append(todo, i)
			}
		}
		if len(todo) == 0 {
			return parts, false, nil
		}
		select {
		case reads[todo[0]].io <- struct{}{}:
		case <-ctx.Done():
			return nil, false, ctx.Err()
		}
		held := []int{todo[0]}
		for _, i := range todo[1:] {
			select {
			case reads[i].io <- struct{}{}:
				held = append(held, i)
			default: // another stream reads it: its turn comes after
			}
		}
		names := make([]string, len(held))
		rs := make([]*channelRead, len(held))
		for j, i := range held {
			names[j], rs[j] = channels[i], reads[i]
		}
		gap, err := c.fill(ctx, h, tenantID, names, rs, from, fromSeq, w)
		for _, r := range rs {
			if err != nil && ctx.Err() == nil {
				// Redis failed: the streams waiting now would only fail the same way, one
				// after the other. They end and resume, as a stream does when a read fails.
				r.mu.Lock()
				r.err = err
				r.mu.Unlock()
			}
			<-r.io
		}
		if err != nil || gap {
			return nil, gap, err
		}
	}
}

// partLocked is the stream's part when what was read covers its position (ok), or gap when
// a check found that events after it may be gone; r.mu must be held.
func (r *channelRead) partLocked(fromSeq uint64) (p catchUpPart, ok, gap bool) {
	switch {
	case r.gap && fromSeq <= r.gapTo:
		return catchUpPart{}, false, true
	case !r.read || fromSeq < r.afterSeq || !r.clean || fromSeq < r.cleanFrom:
		return catchUpPart{}, false, false // nobody read or checked from this far back yet
	}
	i, _ := slices.BinarySearchFunc(r.entries, fromSeq+1, func(e stream.Entry, seq uint64) int { return cmp.Compare(e.Seq, seq) })
	return catchUpPart{upto: r.snap, entries: r.entries[i:], frames: r.frames[i:]}, true, false
}

// fill reads, for the channels whose turn the stream holds, what the stream at from needs and
// nobody read yet: one position and gap check for them all; the events since from of those
// nobody read; for a position older than what was read, the events between. It reports gap
// when events after from may be gone.
func (c *catchUps) fill(ctx context.Context, h History, tenantID string, channels []string, reads []*channelRead, from string, fromSeq uint64, w stream.Window) (gap bool, err error) {
	type state struct {
		read     bool
		after    string
		afterSeq uint64
	}
	var (
		names []string
		rs    []*channelRead
		was   []state
	)
	for i, r := range reads {
		r.mu.Lock()
		_, ok, gap := r.partLocked(fromSeq)
		st := state{r.read, r.after, r.afterSeq}
		r.mu.Unlock()
		if gap {
			return true, nil
		}
		if !ok { // else read for us while we waited
			names, rs, was = append(names, channels[i]), append(rs, r), append(was, st)
		}
	}
	if len(names) == 0 {
		return false, nil
	}

	var snap stream.Snapshot
	err = c.withToken(ctx, func() (err error) {
		snap, err = h.Snapshot(ctx, tenantID, names, from, w, false)
		return err
	})
	if err != nil {
		return false, err
	}
	if snap.Gap {
		if len(names) == 1 {
			// One channel: the gap is its own, and every stream at or before from has it.
			r := rs[0]
			r.mu.Lock()
			r.gap, r.gapTo = true, max(r.gapTo, fromSeq)
			r.mu.Unlock()
		}
		return true, nil
	}
	var fresh []string
	for i, st := range was {
		if !st.read {
			fresh = append(fresh, names[i])
		}
	}
	got, err := c.readRange(ctx, h, tenantID, fresh, from, snap.LastID)
	if err != nil {
		return false, err
	}
	for i, st := range was {
		if st.read && fromSeq < st.afterSeq {
			// Further back than any stream so far: what lies below what was read.
			older, err := c.readRange(ctx, h, tenantID, names[i:i+1], from, st.after)
			if err != nil {
				return false, err
			}
			got[names[i]] = older[names[i]]
		}
	}

	for i, r := range rs {
		older := got[names[i]]
		r.mu.Lock()
		if !r.read {
			r.read, r.snap = true, snap
		} else {
			r.snap.Epoch = snap.Epoch // should the log have restarted meanwhile, every stream sees it
		}
		if !was[i].read || fromSeq < was[i].afterSeq {
			frames := make([]*streamgate.Frame, len(older))
			for j, e := range older {
				frames[j] = e.Frame()
			}
			// New slices: streams may hold the old ones.
			r.entries = append(older, r.entries...)
			r.frames = append(frames, r.frames...)
			r.after, r.afterSeq = from, fromSeq
		}
		if !r.clean || fromSeq < r.cleanFrom {
			r.clean, r.cleanFrom = true, fromSeq
		}
		r.mu.Unlock()
	}
	return false, nil
}

// readRange reads the channels' events with after < id <= upto, one page per round trip, and
// returns them by channel, in id order.
func (c *catchUps) readRange(ctx context.Context, h History, tenantID string, channels []string, after, upto string) (map[string][]stream.Entry, error) {
	out := make(map[string][]stream.Entry, len(channels))
	for len(channels) > 0 {
		var (
			page []stream.Entry
			more bool
		)
		err := c.withToken(ctx, func() (err error) {
			page, more, err = h.Read(ctx, tenantID, channels, after, upto, replayPage)
			return err
		})
		if err != nil {
			return nil, err
		}
		for _, e := range page {
			out[e.Channel] = append(out[e.Channel], e)
		}
		if !more || len(page) == 0 {
			break
		}
		after = page[len(page)-1].ID
	}
	return out, nil
}

// withToken runs one history read when the node has room for it.
func (c *catchUps) withToken(ctx context.Context, read func() error) error {
	select {
	case c.sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-c.sem }()
	return read()
}

func (c *catchUps) join(key readKey) *channelRead {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.reads[key]
	if r == nil {
		r = &channelRead{io: make(chan struct{}, 1)}
		c.reads[key] = r
	}
	r.mu.Lock()
	r.refs++
	if r.idle != nil {
		r.idle.Stop()
		r.idle = nil
	}
	r.mu.Unlock()
	return r
}

// leave lets go of r. The last stream out leaves it for linger, for the streams whose writers
// were slower to reach the marker; then it goes, and with it the events it holds.
func (c *catchUps) leave(key readKey, r *channelRead) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.refs--
	if r.refs > 0 {
		return
	}
	var idle *time.Timer
	idle = time.AfterFunc(c.linger, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.idle == idle && c.reads[key] == r {
			delete(c.reads, key)
		}
	})
	r.idle = idle
}
