package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"sync"
	"time"

	streamgate "github.com/streamgate/streamgate"
	"github.com/streamgate/streamgate/internal/session"
	"github.com/streamgate/streamgate/internal/stream"
	"github.com/streamgate/streamgate/internal/tenant"
)

// maxQueryChannels bounds the channels one stream request may name before any other check:
// beyond every tenant's subscription cap, so it only cuts off abuse early.
const maxQueryChannels = 10_000

// replayPage is how many history entries a resume reads per round trip.
const replayPage = 500

// streamHandler serves GET /v1/stream: the end user's Server-Sent Events stream. Refusals are
// ordinary JSON errors sent before the stream starts; after that, every notice is an SSE event.
func (s *Server) streamHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.stopped() {
			writeError(w, errShuttingDown)
			return
		}
		if _, ok := w.(http.Flusher); !ok {
			writeError(w, &Error{Status: http.StatusInternalServerError, Code: codeInternal, Message: "This server cannot stream responses"})
			return
		}
		if e := s.limitStreamClient(r, w.Header()); e != nil {
			writeError(w, e)
			return
		}
		st, e := s.openStream(r, w.Header())
		if e != nil {
			writeError(w, e)
			return
		}
		h := w.Header()
		h.Set("Content-Type", "text/event-stream")
		h.Set("Cache-Control", "no-cache")
		h.Set("X-Accel-Buffering", "no")
		s.streams.Add(1)
		// The client going away closes the session, which ends the writer's wait: it waits on
		// the session alone.
		ctx, cancel := context.WithCancel(context.WithoutCancel(r.Context()))
		gone := func() {
			cancel()
			s.sessions.Leave(st.sess)
		}
		if conn, ok := takeOver(w, r, gone); ok {
			// HTTP/1.1: the stream continues on two small goroutines of its own, and the
			// request's goroutine, with net/http's buffers, goes away.
			go func() {
				defer s.streams.Done()
				defer st.close()
				defer cancel()
				if conn == nil {
					return
				}
				defer conn.Close()
				s.serveStream(ctx, &connSink{conn: conn, timeout: s.cfg.WriteTimeout}, st)
			}()
			return
		}
		defer s.streams.Done()
		defer st.close()
		defer cancel()
		stop := context.AfterFunc(r.Context(), gone)
		defer stop()
		w.WriteHeader(http.StatusOK)
		s.serveStream(ctx, &httpSink{w: w, rc: http.NewResponseController(w), timeout: s.cfg.WriteTimeout}, st)
	})
}

// openStream authenticates the request, counts it against the tenant's connect rate (reported
// in h), works out the session (new, resumed, or reset), checks its channels and caps, registers
// it and subscribes this node to its channels. On success the caller must call close.
func (s *Server) openStream(r *http.Request, h http.Header) (*liveStream, *Error) {
	ctx := r.Context()
	q := r.URL.Query()
	raw := bearer(r)
	if raw == "" {
		raw = q.Get("token")
	}
	if raw == "" {
		return nil, errorf(http.StatusUnauthorized, codeUnauthorized, "Send the end-user token as Authorization: Bearer <token> or ?token=<token>")
	}
	claims, err := s.tenants.VerifyToken(ctx, raw)
	if err != nil {
		return nil, toError(s.log, err)
	}
	t, err := s.tenants.Cached(ctx, claims.TenantID)
	if err != nil {
		return nil, toError(s.log, err)
	}
	if e := s.limitStreamTenant(ctx, h, t.ID); e != nil {
		return nil, e
	}
	requested, e := queryChannels(q["channel"])
	if e != nil {
		return nil, e
	}

	st := &liveStream{srv: s, tenantID: t.ID, window: window(t), ttl: historyTTL(t)}
	plan, e := s.planSession(ctx, r, claims, t, requested)
	if e != nil {
		return nil, e
	}
	channels := plan.channels
	if len(channels) > t.Limits.MaxSubscriptionsPerSession {
		return nil, errorf(http.StatusForbidden, codeLimitExceeded,
			"A session may subscribe to at most %d channels; this stream asks for %d", t.Limits.MaxSubscriptionsPerSession, len(channels))
	}
	for _, ch := range channels {
		if !streamgate.Granted(claims.Channels, ch) {
			return nil, errorf(http.StatusForbidden, codeForbidden, "The token does not grant channel %q", ch)
		}
	}

	// max_connections holds across the cluster: the other nodes' last heartbeats plus this
	// node's exact count. Streams opened on several nodes at once may overshoot by a few.
	others, err := s.cluster.TenantUsage(ctx, t.ID, s.cfg.NodeID)
	if err != nil {
		return nil, toError(s.log, err)
	}
	allowed := t.Limits.MaxConnections - others.Connections
	if allowed <= 0 {
		return nil, errorf(http.StatusForbidden, codeLimitExceeded, "The tenant has reached its max_connections of %d", t.Limits.MaxConnections)
	}
	info := session.Info{ID: plan.id, TenantID: t.ID, Sub: claims.Sub, KeyID: claims.KeyID, TokenExp: claims.ExpiresAt}
	sess, err := s.register(info, channels, allowed, t.Limits.MaxSubscriptionsPerSession)
	if err != nil {
		return nil, toError(s.log, err)
	}
	st.sess = sess
	if s.stopped() {
		// Registered after Stop closed every session: this one would never be told.
		st.close()
		return nil, errShuttingDown
	}
	for _, ch := range channels {
		if err := s.hub.Acquire(ctx, t.ID, ch); err != nil {
			st.close()
			return nil, toError(s.log, err)
		}
		st.acquired = append(st.acquired, ch)
	}

	// The position is read after subscribing: whatever is published from here on is either
	// live or at most the floor, and the replay covers everything up to the floor.
	// A resume replays state changes from history; a fresh start gets the current states.
	fresh := plan.after == "" || plan.reset != ""
	snap, err := s.history.Snapshot(ctx, t.ID, channels, plan.after, st.window, fresh)
	if err != nil {
		st.close()
		return nil, toError(s.log, err)
	}
	if plan.after != "" && plan.reset == "" && snap.Gap {
		plan.reset = "history window exceeded" // trimmed between the first look and now
	}
	if plan.reset != "" || plan.after == "" {
		plan.after = "" // nothing to replay: the session starts at the present
	}
	st.floor, st.floorID = snap.Seq, snap.LastID
	st.replayFrom = plan.after
	st.cursor = stream.Cursor{SessionID: info.ID, Epoch: snap.Epoch}
	st.prefix = []byte(st.cursor.Prefix())
	st.reset = plan.reset
	st.states = snap.States

	st.connectedAt = time.Now()
	if plan.record != nil {
		st.connectedAt = plan.record.ConnectedAt
	}
	rec := stream.SessionRecord{ID: info.ID, TenantID: t.ID, Sub: claims.Sub, NodeID: s.cfg.NodeID, ConnectedAt: st.connectedAt, Channels: channels}
	if err := s.sessionRecords.Save(ctx, rec, st.ttl); err != nil {
		st.close()
		return nil, toError(s.log, err)
	}
	// Only a stream set up in full is visible to the sessions API.
	s.live.add(st)
	return st, nil
}

// sessionPlan is what a stream request resolves to before anything is registered.
type sessionPlan struct {
	id       string
	channels []string
	after    string // replay events after this id (a resume), or ""
	reset    string // why a resume could not be served from history, or ""
	record   *stream.SessionRecord
}

// planSession reads Last-Event-ID (or last_event_id=) and decides: a new session on the
// requested channels; the same session resumed with its own channels; or, when the gap cannot
// be replayed, a fresh start announced with reset.
func (s *Server) planSession(ctx context.Context, r *http.Request, claims tenant.Claims, t tenant.Tenant, requested []string) (sessionPlan, *Error) {
	fresh := sessionPlan{id: streamgate.NewID("ses_"), channels: requested}
	raw := r.Header.Get("Last-Event-ID")
	if raw == "" {
		raw = r.URL.Query().Get("last_event_id")
	}
	if raw == "" {
		return fresh, nil
	}
	cur, ok := stream.ParseCursor(raw)
	if !ok {
		return sessionPlan{}, errorf(http.StatusBadRequest, codeInvalid, "Last-Event-ID is not a cursor this service issued")
	}
	rec, err := s.sessionRecords.Load(ctx, t.ID, cur.SessionID)
	if errors.Is(err, stream.ErrSessionNotFound) {
		fresh.reset = "session expired"
		return fresh, nil
	}
	if err != nil {
		return sessionPlan{}, toError(s.log, err)
	}
	if rec.Sub != claims.Sub {
		return sessionPlan{}, errorf(http.StatusForbidden, codeForbidden, "Last-Event-ID belongs to another user's session")
	}
	plan := sessionPlan{id: rec.ID, channels: rec.Channels, after: cur.LastID, record: &rec}
	snap, err := s.history.Snapshot(ctx, t.ID, rec.Channels, cur.LastID, window(t), false)
	if err != nil {
		return sessionPlan{}, toError(s.log, err)
	}
	switch {
	case snap.Epoch != cur.Epoch:
		plan.reset = "event log restarted"
	case snap.Gap:
		plan.reset = "history window exceeded"
	}
	if plan.reset != "" {
		plan.channels = requested
	}
	return plan, nil
}

// register adds the session to this node's registry. A resume of a session this node still
// holds (the old connection has not noticed it is dead) takes it over.
func (s *Server) register(info session.Info, channels []string, maxConns, maxSubs int) (*session.Session, error) {
	for range 2 {
		sess, err := s.sessions.Register(info, channels, maxConns, maxSubs)
		if !errors.Is(err, session.ErrDuplicate) {
			return sess, err
		}
		s.sessions.Close(info.ID, session.Disconnect("session resumed elsewhere", false))
	}
	return nil, errors.New("register session: still held after takeover")
}

// queryChannels validates the channels named in the query and drops duplicates.
func queryChannels(requested []string) ([]string, *Error) {
	if len(requested) > maxQueryChannels {
		return nil, errorf(http.StatusBadRequest, codeInvalid, "A stream may name at most %d channels", maxQueryChannels)
	}
	seen := make(map[string]bool, len(requested))
	channels := make([]string, 0, len(requested))
	for _, ch := range requested {
		if !streamgate.ValidChannel(ch) {
			return nil, errorf(http.StatusBadRequest, codeInvalid, "Channel names are 1 to 200 characters of A-Z a-z 0-9 _ - . : @ = ,")
		}
		if !seen[ch] {
			seen[ch] = true
			channels = append(channels, ch)
		}
	}
	return channels, nil
}

// historyTTL is how long a session's record is kept: its tenant's history window (beyond it a
// resume can only reset), plus a margin for the periodic refresh.
func historyTTL(t tenant.Tenant) time.Duration {
	return time.Duration(t.Limits.HistorySeconds)*time.Second + 2*recordRefresh
}

// liveStream is one open stream on this node: its registry session, the pub/sub references it
// holds, and what its writer needs to stitch replay and live together.
type liveStream struct {
	srv      *Server
	sess     *session.Session
	tenantID string
	window   stream.Window
	ttl      time.Duration
	// connectedAt is when the session first connected, kept across resumes.
	connectedAt time.Time

	cursor     stream.Cursor
	prefix     []byte
	floor      uint64 // live events at or below it were replayed or predate the session
	floorID    string
	replayFrom string // replay (replayFrom, floorID] before going live; "" for none
	reset      string
	states     []stream.Entry // current job and workflow states to send first, as of the floor

	mu       sync.Mutex // guards acquired against the sessions API
	acquired []string
	closed   bool
}

func (st *liveStream) close() {
	st.srv.live.remove(st)
	st.srv.sessions.Leave(st.sess)
	st.mu.Lock()
	acquired := st.acquired
	st.acquired, st.closed = nil, true
	st.mu.Unlock()
	for _, ch := range acquired {
		st.srv.hub.Release(st.tenantID, ch)
	}
}

// serveStream writes the stream until the session closes, the client goes away or the node
// stops: first the replay of what a resumed session missed (or current job and workflow
// state), then live frames above the floor. Frames that are ready together go out in one flush.
func (s *Server) serveStream(ctx context.Context, out sink, st *liveStream) {
	sw := &sseWriter{out: out, st: st}
	head := []*streamgate.Frame{
		{Body: []byte("retry: " + strconv.FormatInt(s.cfg.Retry.Milliseconds(), 10) + "\n\n")},
		st.connectedFrame(),
	}
	if st.reset != "" {
		head = append(head, resetFrame(st.reset, st.sess.Channels()))
	}
	if err := sw.write(head); err != nil {
		return
	}
	if err := s.replay(ctx, sw, st); err != nil {
		if !errors.Is(err, context.Canceled) {
			s.log.Debug("stream replay ended", "session", st.sess.ID(), "err", err)
		}
		return
	}
	// From here on only live frames come, and those at or below the floor were replayed or
	// predate the session.
	sw.floor = st.floor

	sess := st.sess
	batch := make([]*streamgate.Frame, 0, 16)
	for {
		select {
		case <-sess.Ready():
			batch = sess.Take(batch[:0])
			if err := s.writeLive(ctx, sw, st, batch); err != nil {
				return
			}
			clear(batch)
		case <-sess.Done():
			// Closed: evicted, expired, suspended, the node stopping (a final notice goes out
			// alone; what was still queued is left for a resume), or the client gone (none).
			if f := sess.Final(); f != nil {
				_ = sw.write([]*streamgate.Frame{f})
			}
			return
		}
	}
}

// writeLive writes a batch of live frames. A resync marker among them (this node's
// subscription broke and came back) first fetches from history what the stream may have missed.
func (s *Server) writeLive(ctx context.Context, sw *sseWriter, st *liveStream, batch []*streamgate.Frame) error {
	for i, f := range batch {
		if !f.Resync {
			continue
		}
		if err := sw.write(batch[:i]); err != nil {
			return err
		}
		if err := s.catchUp(ctx, sw, st); err != nil {
			return err
		}
		return s.writeLive(ctx, sw, st, batch[i+1:])
	}
	return sw.write(batch)
}

// catchUp replays what was published after the last event the stream wrote, up to now, and
// raises the floor so that live frames already replayed are skipped. When that cannot be done
// (trimmed meanwhile, or the event log restarted), the stream is ended with a reconnectable
// disconnect: the client resumes from its cursor and gets reset if it must.
func (s *Server) catchUp(ctx context.Context, sw *sseWriter, st *liveStream) error {
	channels := st.sess.Channels()
	snap, err := s.history.Snapshot(ctx, st.tenantID, channels, sw.lastID, st.window, false)
	if err != nil {
		return err
	}
	if snap.Gap || snap.Epoch != st.cursor.Epoch {
		_ = sw.write([]*streamgate.Frame{session.Disconnect("missed events: resume", true)})
		return errors.New("stream cannot catch up")
	}
	if err := s.replayRange(ctx, sw, st.tenantID, channels, sw.lastID, snap.LastID); err != nil {
		return err
	}
	sw.floor = max(sw.floor, snap.Seq)
	return nil
}

// replay sends what a resumed session missed, page by page, then the current state of its job
// and workflow channels when it starts afresh. Live frames queue meanwhile and are written
// after, above the floor.
func (s *Server) replay(ctx context.Context, sw *sseWriter, st *liveStream) error {
	if err := s.replayRange(ctx, sw, st.tenantID, st.sess.Channels(), st.replayFrom, st.floorID); err != nil {
		return err
	}
	frames := make([]*streamgate.Frame, len(st.states))
	for i, e := range st.states {
		frames[i] = st.stateFrame(e)
	}
	return sw.write(frames)
}

// replayRange writes the channels' events with after < id <= upto from history, in id order,
// one page per round trip. An empty after replays nothing.
func (s *Server) replayRange(ctx context.Context, sw *sseWriter, tenantID string, channels []string, after, upto string) error {
	for after != "" {
		entries, more, err := s.history.Read(ctx, tenantID, channels, after, upto, replayPage)
		if err != nil {
			return err
		}
		frames := make([]*streamgate.Frame, len(entries))
		for i, e := range entries {
			frames[i] = e.Frame()
		}
		if err := sw.write(frames); err != nil {
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
func (st *liveStream) stateFrame(e stream.Entry) *streamgate.Frame {
	f := stream.NewFrame(e.Channel, st.floorID, e.Kind, e.Data)
	f.Seq, f.Snapshot = e.Seq, true
	return f
}

// sseWriter writes frames to one stream: each frame with an id gets the session's cursor, live
// frames already covered by the replay are skipped, and a job's or workflow's state never goes
// back to an older one.
type sseWriter struct {
	out     sink
	st      *liveStream
	floor   uint64            // zero while replaying
	state   map[string]uint64 // channel → Seq of the newest job/workflow state written
	pieces  [][]byte          // reused between batches
	lastID  string            // the id of the newest event written, the client's cursor
	lastSeq uint64
}

// write sends the frames that are not skipped as one batch: the shared bytes of each frame,
// with the session's cursor before those that have an id.
func (sw *sseWriter) write(frames []*streamgate.Frame) error {
	pieces, messages := sw.pieces[:0], 0
	for _, f := range frames {
		if f.Resync || sw.skip(f) {
			continue
		}
		switch {
		case f.ID == "":
			pieces = append(pieces, f.Body)
		case f.Snapshot && sw.lastSeq > sw.st.floor:
			// A state sent mid-stream (a sessions-API subscription) carries the cursor the
			// stream has reached, not the floor it started from: a resume must not go back.
			pieces = append(pieces, idPrefix, sw.st.prefix, []byte(sw.lastID), f.Body[len(f.ID):])
		default:
			pieces = append(pieces, idPrefix, sw.st.prefix, f.Body)
			if !f.Snapshot {
				sw.lastID, sw.lastSeq = f.ID, f.Seq
			}
		}
		if f.Message {
			messages++
		}
	}
	sw.pieces = pieces[:0]
	if len(pieces) == 0 {
		return nil
	}
	err := sw.out.writeBatch(pieces)
	clear(pieces)
	if err != nil {
		return err
	}
	sw.st.sess.Wrote(messages)
	return nil
}

func (sw *sseWriter) skip(f *streamgate.Frame) bool {
	if f.Seq == 0 {
		return false
	}
	if !f.Snapshot && f.Seq <= sw.floor {
		return true
	}
	if !streamgate.Reserved(f.Channel) {
		return false
	}
	if sw.state == nil {
		sw.state = make(map[string]uint64)
	}
	if f.Seq <= sw.state[f.Channel] {
		return true
	}
	sw.state[f.Channel] = f.Seq
	return false
}

var idPrefix = []byte("id: ")

func (st *liveStream) connectedFrame() *streamgate.Frame {
	data, _ := json.Marshal(struct {
		SessionID string   `json:"session_id"`
		NodeID    string   `json:"node_id"`
		Channels  []string `json:"channels"`
	}{st.sess.ID(), st.srv.cfg.NodeID, nonNil(st.sess.Channels())})
	// A resumed session's cursor stays where the client was until replay moves it on.
	id := st.floorID
	if st.replayFrom != "" {
		id = st.replayFrom
	}
	f := stream.NewFrame("", id, "connected", string(data))
	f.Seq, f.Message = 0, false
	return f
}

func resetFrame(reason string, channels []string) *streamgate.Frame {
	data, _ := json.Marshal(struct {
		Reason   string   `json:"reason"`
		Channels []string `json:"channels"`
	}{reason, nonNil(channels)})
	return &streamgate.Frame{Body: []byte("event: reset\ndata: " + string(data) + "\n\n")}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
