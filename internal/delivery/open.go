package delivery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	streamgate "github.com/streamgate/streamgate"
	"github.com/streamgate/streamgate/internal/cluster"
	"github.com/streamgate/streamgate/internal/ratelimit"
	"github.com/streamgate/streamgate/internal/session"
	"github.com/streamgate/streamgate/internal/stream"
	"github.com/streamgate/streamgate/internal/tenant"
)

// Request is a stream to open: who asks (a verified token and its tenant), for which channels
// (valid names, without duplicates), and from where (the Last-Event-ID the client sent, or "").
// With Log set, the stream follows a tenant-wide log instead, and Channels and Cursor are unused.
type Request struct {
	Claims   tenant.Claims
	Tenant   tenant.Tenant
	Channels []string
	Cursor   string
	Log      *Log
	// Rate is the tenant's connect rate, counted in the stream's admission; a zero Limit
	// counts nothing.
	Rate ratelimit.Rate
}

// RateLimitedError refuses a stream over its tenant's connect rate; Result says when the
// window starts again.
type RateLimitedError struct {
	Rate   ratelimit.Rate
	Result ratelimit.Result
}

func (e *RateLimitedError) Error() string {
	return fmt.Sprintf("over the tenant's stream connect rate (%s)", e.Rate)
}

// Log is a stream on a tenant-wide log that a front end filters per subscriber (the Mercure
// hub's): the session is filed in the registry under Keys, where the front end's own index
// delivers what matches; this node receives Channel; a reconnect is a new session that replays
// Channel's entries after After through Entry. Such a stream carries the log's events only:
// no connected event, no cursors (each event's id is its own), no notices.
type Log struct {
	// Channel is the log's internal channel: what this node receives and replays.
	Channel string
	// Keys are the registry keys of the session; each counts as one subscription.
	Keys []string
	// Topics are what listings show as the session's channels.
	Topics []string
	// Listing is what listings show of the subscriber besides (JSON), or nil.
	Listing json.RawMessage
	// After is the log entry to replay after, or "" to start live.
	After string
	// Entry turns a replayed entry into the frame this stream sends, or nil to leave it out.
	Entry func(stream.Entry) *streamgate.Frame
}

// Open works out the session (new, resumed, or reset), checks its channels and the tenant's
// caps, registers it, subscribes this node to its channels and records it for resumes. It
// returns ErrInvalid for a cursor this service never issued, ErrForbidden for a channel the
// token does not grant or another user's cursor, an error wrapping session.ErrLimitExceeded
// for a cap, ErrShuttingDown while the node stops, and other errors when Redis cannot answer.
// On success the caller must Start (or Serve) the stream and Close it.
func (s *Service) Open(ctx context.Context, req Request) (*Stream, error) {
	var st *Stream
	err := againOnMove(func() error {
		var err error
		st, err = s.open(ctx, req)
		return err
	})
	return st, err
}

func (s *Service) open(ctx context.Context, req Request) (*Stream, error) {
	if s.stopped() {
		return nil, ErrShuttingDown
	}
	t, claims := req.Tenant, req.Claims
	var (
		plan plan
		err  error
	)
	if req.Log != nil {
		// A log stream is new on every connect: the front end resolved where it resumes.
		plan.id, plan.channels, plan.after = streamgate.NewID("ses_"), req.Log.Keys, req.Log.After
	} else if plan, err = s.plan(ctx, req); err != nil {
		return nil, err
	}
	channels := plan.channels
	if max := t.Limits.MaxSubscriptionsPerSession; len(channels) > max {
		return nil, fmt.Errorf("a session may subscribe to at most %d channels; this stream asks for %d: %w", max, len(channels), session.ErrLimitExceeded)
	}
	if req.Log == nil {
		for _, ch := range channels {
			if !streamgate.Granted(claims.Channels, ch) {
				return nil, fmt.Errorf("the token does not grant channel %q: %w", ch, ErrForbidden)
			}
		}
	}

	// A resume of a session this node still streams takes over that stream's connection: the
	// old one is about to be closed. Any other stream takes one in its admission.
	leased := false
	if old := s.live.get(plan.id); old != nil {
		leased = old.takeLease()
	}
	info := session.Info{ID: plan.id, TenantID: t.ID, Sub: claims.Sub, KeyID: claims.KeyID, TokenExp: claims.ExpiresAt}
	sess, err := s.register(info, channels, t.Limits.MaxSubscriptionsPerSession)
	if err != nil {
		if leased {
			s.Admission.Release(t.ID)
		}
		return nil, err
	}
	st := &Stream{svc: s, sess: sess, tenantID: t.ID, sub: claims.Sub, info: claims.Info, window: Window(t), ttl: recordTTL(t), leased: leased, log: req.Log}
	// The stream outlives its request, and keeps none of the request context's values (the
	// connection's record, the request's span, the client's address): they would stay in memory
	// as long as the stream, hundreds of bytes each. Its context only cancels its own history
	// reads when it ends.
	st.ctx, st.cancel = context.WithCancel(context.Background())
	if err := s.setUp(ctx, st, plan, claims, req.Rate, t.Limits.MaxConnections); err != nil {
		st.release()
		return nil, err
	}
	if s.stopped() {
		// Registered after Stop closed every session: this one would never be told.
		st.release()
		return nil, ErrShuttingDown
	}
	// Only a stream set up in full is visible to the sessions API.
	s.live.add(st)
	s.streams.Add(1)
	st.mu.Lock()
	if !st.closed && st.log == nil { // a log stream's keys are no channels: no presence
		st.enterLocked(ctx, t.Settings, plan.channels)
	}
	st.mu.Unlock()
	return st, nil
}

// setUp subscribes the node to the stream's channels, then admits the stream in one round trip
// to Redis: its tenant's connect rate and max_connections (one connection taken unless the
// stream took over one), the session's record, and where the tenant's log stands with what must
// be replayed.
func (s *Service) setUp(ctx context.Context, st *Stream, plan plan, claims tenant.Claims, rate ratelimit.Rate, maxConns int) error {
	channels := plan.channels
	if st.log != nil {
		channels = []string{st.log.Channel}
	}
	for _, ch := range channels {
		if err := s.Hub.Acquire(ctx, st.tenantID, ch); err != nil {
			return err
		}
		st.acquired = append(st.acquired, ch)
	}
	st.connectedAt = time.Now()
	if plan.record != nil {
		st.connectedAt = plan.record.ConnectedAt
	}
	// The position is read after subscribing: whatever is published from here on is either
	// live or at most the floor, and the replay covers everything up to the floor.
	// A resume replays state changes from history; a fresh start gets the current states.
	fresh := plan.after == "" || plan.reset != ""
	ad := cluster.Admit{
		TenantID: st.tenantID, SessionID: plan.id, Rate: rate,
		Position: stream.NewSnapshotQuery(st.tenantID, channels, plan.after, st.window, fresh && st.log == nil),
	}
	if !st.leased {
		ad.Max = maxConns
	}
	if st.log == nil { // a log stream resumes from its log, not by session: no record
		ad.Record = &cluster.SessionRecord{ID: plan.id, TenantID: st.tenantID, Sub: claims.Sub, NodeID: s.cfg.NodeID, ConnectedAt: st.connectedAt, Channels: plan.channels}
		ad.TTL = st.ttl
		if plan.record != nil {
			// Saved only if no sessions-API change came in since the plan read it; else Open
			// plans again with what the change left.
			ad.Record.Version = plan.record.Version
		}
	}
	got, err := s.Admission.Admit(ctx, ad)
	st.rate = got.Rate
	if got.Leased {
		st.mu.Lock()
		st.leased = true
		st.mu.Unlock()
	}
	switch {
	case errors.Is(err, cluster.ErrRateLimited):
		return &RateLimitedError{Rate: rate, Result: got.Rate}
	case errors.Is(err, cluster.ErrAtCapacity):
		return fmt.Errorf("the tenant has reached its max_connections of %d (%d open): %w", maxConns, got.Total, session.ErrLimitExceeded)
	case err != nil:
		return err
	}
	snap := got.Snapshot
	if !fresh && snap.Gap {
		plan.reset = streamgate.ReasonWindowExceeded // trimmed between the first look and now
	}
	if plan.reset != "" {
		plan.after = "" // nothing to replay: the session starts at the present
	}
	st.floor, st.floorID = snap.Seq, snap.LastID
	st.replayFrom = plan.after
	st.cursor = stream.Cursor{SessionID: plan.id, Epoch: snap.Epoch}
	st.prefix = []byte(st.cursor.Prefix())
	st.reset = plan.reset
	st.states = snap.States
	return nil
}

// plan is what a stream request resolves to before anything is registered.
type plan struct {
	id       string
	channels []string
	after    string // replay events after this id (a resume), or ""
	reset    string // why a resume could not be served from history, or ""
	record   *cluster.SessionRecord
}

// plan reads the cursor and decides: a new session on the requested channels; the same session
// resumed with its own channels; or, when the gap cannot be replayed, a fresh start announced
// with reset.
func (s *Service) plan(ctx context.Context, req Request) (plan, error) {
	fresh := plan{id: streamgate.NewID("ses_"), channels: req.Channels}
	if req.Cursor == "" {
		return fresh, nil
	}
	cur, ok := stream.ParseCursor(req.Cursor)
	if !ok {
		return plan{}, fmt.Errorf("Last-Event-ID is not a cursor this service issued: %w", ErrInvalid)
	}
	rec, err := s.Records.Load(ctx, req.Tenant.ID, cur.SessionID)
	if errors.Is(err, cluster.ErrSessionNotFound) {
		fresh.reset = streamgate.ReasonSessionExpired
		return fresh, nil
	}
	if err != nil {
		return plan{}, err
	}
	if rec.Sub != req.Claims.Sub {
		return plan{}, fmt.Errorf("Last-Event-ID belongs to another user's session: %w", ErrForbidden)
	}
	p := plan{id: rec.ID, channels: rec.Channels, after: cur.LastID, record: &rec}
	snap, err := s.History.Snapshot(ctx, req.Tenant.ID, rec.Channels, cur.LastID, Window(req.Tenant), false)
	if err != nil {
		return plan{}, err
	}
	switch {
	case snap.Epoch != cur.Epoch:
		p.reset = streamgate.ReasonLogRestarted
	case snap.Gap:
		p.reset = streamgate.ReasonWindowExceeded
	}
	if p.reset != "" {
		p.channels = req.Channels
	}
	return p, nil
}

// register adds the session to this node's registry. A resume of a session this node still
// holds (the old connection has not noticed it is dead) takes it over.
func (s *Service) register(info session.Info, channels []string, maxSubs int) (*session.Session, error) {
	for range 2 {
		sess, err := s.Registry.Register(info, channels, 0, maxSubs)
		if !errors.Is(err, session.ErrDuplicate) {
			return sess, err
		}
		s.Registry.Close(info.ID, session.Disconnect(streamgate.ReasonResumedElsewhere, false))
	}
	return nil, errors.New("register session: still held after takeover")
}

// Window is the part of a tenant's limits that shapes its history.
func Window(t tenant.Tenant) stream.Window {
	return stream.Window{Events: t.Limits.HistoryEvents, Seconds: t.Limits.HistorySeconds}
}

// recordTTL is how long a session's record is kept after its last refresh: max(history window,
// 1 h), as long as a quiet channel's log lingers, plus a margin for the periodic refresh. A
// session quiet for longer than its window still resumes without a reset when nothing it
// subscribes to was published since.
func recordTTL(t tenant.Tenant) time.Duration {
	return stream.Linger(Window(t)) + 2*recordRefresh
}
