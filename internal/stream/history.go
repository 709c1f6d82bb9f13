package stream

import (
	"cmp"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"

	streamgate "github.com/streamgate/streamgate"
	"github.com/streamgate/streamgate/internal/keys"
)

// Entry is one event read back from a channel's history.
type Entry struct {
	ID      string
	Seq     uint64
	Channel string
	Kind    string
	Data    string
}

// Frame encodes the entry exactly as the live path does.
func (e Entry) Frame() *streamgate.Frame {
	return streamgate.NewEventFrame(e.Channel, e.ID, e.Seq, e.Kind, e.Data)
}

// History reads the per-channel event logs that resumes replay.
type History struct {
	rdb redis.UniversalClient
	now func() time.Time
}

// NewHistory returns a reader on rdb.
func NewHistory(rdb redis.UniversalClient) *History {
	return &History{rdb: rdb, now: time.Now}
}

// Snapshot is a tenant's position at one instant, and whether a resume from a cursor can be
// served from history.
type Snapshot struct {
	Epoch  string
	LastID string // the tenant's newest event id: the floor between replay and live
	Seq    uint64
	// Gap is set when an event after the cursor may be gone from some channel's history
	// (trimmed, or the channel's log expired): the client must refetch state.
	Gap bool
	// States holds the current state of the job: and workflow: channels, as of LastID, when
	// asked for.
	States []Entry
}

// Snapshot reads the tenant's epoch and newest id and, when after is not empty, checks every
// channel's history for a gap after it; with states, it also reads the current state of the
// job: and workflow: channels. All in one script, so that replaying (after, LastID] (or
// sending those states) and then delivering live events above LastID misses nothing and
// repeats nothing.
func (h *History) Snapshot(ctx context.Context, tenantID string, channels []string, after string, w Window, states bool) (Snapshot, error) {
	q := NewSnapshotQuery(tenantID, channels, after, w, states)
	reply, err := RunScript(ctx, h.rdb, snapshotScript, q.Keys(), q.Args()...).Result()
	if err != nil {
		return Snapshot{}, fmt.Errorf("read position of tenant %s: %w", tenantID, err)
	}
	return h.ReadSnapshot(q, reply)
}

var (
	// SnapshotLua defines the Lua function snapshot(k, a) that reads a SnapshotQuery: scripts
	// that read a position along with other work in one round trip include it.
	//go:embed snapshot.lua
	SnapshotLua string

	snapshotScript = redis.NewScript(SnapshotLua + "return snapshot(KEYS, ARGV)")
)

// SnapshotQuery is what a Snapshot reads, laid out as the keys and arguments of the Lua function
// snapshot (SnapshotLua), for a script of its own or as part of another.
type SnapshotQuery struct {
	tenantID string
	channels []string // checked for a gap after after; none without a cursor
	after    string
	w        Window
	stateChs []string // the job: and workflow: channels whose states are read
	keys     []string
	args     []any
}

// NewSnapshotQuery returns the reads of a Snapshot of tenantID (see History.Snapshot).
func NewSnapshotQuery(tenantID string, channels []string, after string, w Window, states bool) *SnapshotQuery {
	q := &SnapshotQuery{tenantID: tenantID, after: after, w: w}
	if after != "" {
		q.channels = channels
	}
	var stateKeys []string
	if states {
		for _, ch := range channels {
			if key, _ := stateKey(tenantID, ch); key != "" {
				q.stateChs = append(q.stateChs, ch)
				stateKeys = append(stateKeys, key)
			}
		}
	}
	q.keys = make([]string, 0, 2+len(q.channels)+len(stateKeys))
	q.keys = append(q.keys, keys.Sequence(tenantID), keys.Trimmed(tenantID))
	for _, ch := range q.channels {
		q.keys = append(q.keys, keys.History(tenantID, ch))
	}
	q.keys = append(q.keys, stateKeys...)
	q.args = make([]any, 0, 3+len(q.channels))
	q.args = append(q.args, NewEpoch(), len(q.channels), len(stateKeys))
	for _, ch := range q.channels {
		q.args = append(q.args, ch)
	}
	return q
}

// Keys are the query's keys, all in the tenant's hash slot.
func (q *SnapshotQuery) Keys() []string { return q.keys }

// Args are the query's arguments.
func (q *SnapshotQuery) Args() []any { return q.args }

// ReadSnapshot turns what the Lua function snapshot returned for q into a Snapshot.
func (h *History) ReadSnapshot(q *SnapshotQuery, reply any) (Snapshot, error) {
	parts, _ := reply.([]any)
	if len(parts) != 4 {
		return Snapshot{}, fmt.Errorf("read position of tenant %s: unexpected reply %v", q.tenantID, reply)
	}
	pos, _ := parts[0].([]any)
	if len(pos) != 3 {
		return Snapshot{}, fmt.Errorf("read position of tenant %s: unexpected position %v", q.tenantID, parts[0])
	}
	snap := Snapshot{Epoch: str(pos[0]), LastID: "0-0"}
	if ms, seq := str(pos[1]), str(pos[2]); ms != "" && seq != "" {
		snap.LastID = ms + "-" + seq
		_, snap.Seq, _ = ParseID(snap.LastID)
	}
	states, _ := parts[1].([]any)
	for i, v := range states {
		vals, _ := v.([]any)
		if i < len(q.stateChs) && len(vals) == 2 {
			if e, ok := stateEntry(q.stateChs[i], vals); ok {
				snap.States = append(snap.States, e)
			}
		}
	}
	if len(q.channels) == 0 { // no cursor: nothing to check
		return snap, nil
	}
	trimmed, _ := parts[2].([]any)
	exists, _ := parts[3].([]any)
	if len(trimmed) != len(q.channels) || len(exists) != len(q.channels) {
		return Snapshot{}, fmt.Errorf("read position of tenant %s: unexpected gap check %v", q.tenantID, reply)
	}
	snap.Gap = h.gap(q.after, q.w, snap.Seq, trimmed, exists)
	return snap, nil
}

// gap reports whether an event after the id after may be gone from one of the channels whose
// trim marks and log existence are given, for a tenant whose newest sequence number is seq.
func (h *History) gap(after string, w Window, seq uint64, trimmed, exists []any) bool {
	afterMs, afterSeq, _ := ParseID(after)
	// A channel's log expires whole window + linger after its last event. So a log that is
	// gone proves nothing was published on it after a cursor younger than that; only an older
	// cursor, of a tenant that published since, may have missed events in it.
	keep := time.Duration(w.Seconds)*time.Second + Linger(w)
	stale := afterMs+uint64(keep.Milliseconds()) < uint64(h.now().UnixMilli()) && seq > afterSeq
	for i, v := range trimmed {
		if _, s, ok := ParseID(str(v)); ok && s > afterSeq {
			return true // an event after the cursor was trimmed
		}
		if n, _ := exists[i].(int64); stale && n == 0 {
			// The log expired after a quiet window: whether it held something after the
			// cursor cannot be known any more.
			return true
		}
	}
	return false
}

// Linger is how long a quiet channel's log outlives its window: max(window, 1 h). A session
// record is kept as long, so that a quiet session resumes without a needless reset.
func Linger(w Window) time.Duration {
	return max(time.Duration(w.Seconds)*time.Second, time.Hour)
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

// Read returns, in id order, at most limit entries of the channels with after < id <= upto,
// and whether more remain. Call it again with the last returned id as after.
func (h *History) Read(ctx context.Context, tenantID string, channels []string, after, upto string, limit int) ([]Entry, bool, error) {
	if len(channels) == 0 || after == upto {
		return nil, false, nil
	}
	cmds := make([]*redis.XMessageSliceCmd, len(channels))
	_, err := h.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, ch := range channels {
			cmds[i] = p.XRangeN(ctx, keys.History(tenantID, ch), "("+after, upto, int64(limit))
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, false, fmt.Errorf("read history of tenant %s: %w", tenantID, err)
	}
	var (
		out   []Entry
		bound uint64 // when a channel filled its page, entries above its last are not all here
		more  bool
	)
	for i, cmd := range cmds {
		msgs := cmd.Val()
		for _, m := range msgs {
			_, seq, ok := ParseID(m.ID)
			if !ok {
				continue
			}
			kind, _ := m.Values["k"].(string)
			data, _ := m.Values["d"].(string)
			out = append(out, Entry{ID: m.ID, Seq: seq, Channel: channels[i], Kind: kind, Data: data})
		}
		if len(msgs) == limit {
			_, last, _ := ParseID(msgs[len(msgs)-1].ID)
			if !more || last < bound {
				bound = last
			}
			more = true
		}
	}
	slices.SortFunc(out, func(a, b Entry) int { return cmp.Compare(a.Seq, b.Seq) })
	if more {
		n, _ := slices.BinarySearchFunc(out, bound, func(e Entry, s uint64) int { return cmp.Compare(e.Seq, s) })
		out = out[:n+1]
	}
	return out, more, nil
}
