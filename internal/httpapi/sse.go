package httpapi

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	streamgate "github.com/streamgate/streamgate"
	"github.com/streamgate/streamgate/internal/session"
	"github.com/streamgate/streamgate/internal/stream"
	"github.com/streamgate/streamgate/internal/tenant"
)

// maxQueryChannels bounds the channels one stream request may name before any other check:
// beyond every tenant's subscription cap, so it only cuts off abuse early.
const maxQueryChannels = 10_000

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
		st, e := s.openStream(r)
		if e != nil {
			writeError(w, e)
			return
		}
		defer st.close()
		s.serveStream(w, r, st)
	})
}

// openStream authenticates the request, checks its channels and caps, registers the session and
// subscribes this node to its channels. On success the caller must call close.
func (s *Server) openStream(r *http.Request) (*liveStream, *Error) {
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

	channels, e := streamChannels(q["channel"], claims, t.Limits)
	if e != nil {
		return nil, e
	}

	info := session.Info{
		ID:       streamgate.NewID("ses_"),
		TenantID: t.ID,
		Sub:      claims.Sub,
		KeyID:    claims.KeyID,
		TokenExp: claims.ExpiresAt,
	}
	sess, err := s.sessions.Register(info, channels, t.Limits.MaxConnections, t.Limits.MaxSubscriptionsPerSession)
	if err != nil {
		return nil, toError(s.log, err)
	}
	st := &liveStream{srv: s, sess: sess, tenantID: t.ID}
	for _, ch := range channels {
		if err := s.hub.Acquire(ctx, t.ID, ch); err != nil {
			st.close()
			return nil, toError(s.log, err)
		}
		st.acquired = append(st.acquired, ch)
	}
	// Read the position after subscribing: whatever is published from here on is either live or
	// after the cursor.
	epoch, last, err := s.publisher.Position(ctx, t.ID)
	if err != nil {
		st.close()
		return nil, toError(s.log, err)
	}
	st.cursorPrefix = []byte(info.ID + ":" + epoch + ":")
	st.connected = connectedFrame(last, info.ID, s.cfg.NodeID, channels)
	return st, nil
}

// streamChannels validates the requested channels: syntax, count against the tenant's cap,
// then the token's grant.
func streamChannels(requested []string, claims tenant.Claims, limits tenant.Limits) ([]string, *Error) {
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
	if len(channels) > limits.MaxSubscriptionsPerSession {
		return nil, errorf(http.StatusForbidden, codeLimitExceeded,
			"A session may subscribe to at most %d channels; this stream asks for %d", limits.MaxSubscriptionsPerSession, len(channels))
	}
	for _, ch := range channels {
		if !streamgate.Granted(claims.Channels, ch) {
			return nil, errorf(http.StatusForbidden, codeForbidden, "The token does not grant channel %q", ch)
		}
	}
	return channels, nil
}

// liveStream is one open stream: its registry session and the pub/sub references it holds.
type liveStream struct {
	srv          *Server
	sess         *session.Session
	tenantID     string
	acquired     []string
	cursorPrefix []byte
	connected    *streamgate.Frame
}

func (st *liveStream) close() {
	st.srv.sessions.Remove(st.sess.ID())
	for _, ch := range st.acquired {
		st.srv.hub.Release(st.tenantID, ch)
	}
	st.acquired = nil
}

// serveStream writes the stream until the session closes, the client goes away or the node
// stops. Frames that are ready together go out in one flush.
func (s *Server) serveStream(w http.ResponseWriter, r *http.Request, st *liveStream) {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)

	rc := http.NewResponseController(w)
	sess := st.sess
	write := func(frames []*streamgate.Frame) error {
		if err := rc.SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
			return err
		}
		messages := 0
		for _, f := range frames {
			if f.ID != "" {
				if _, err := w.Write(idPrefix); err != nil {
					return err
				}
				if _, err := w.Write(st.cursorPrefix); err != nil {
					return err
				}
			}
			if _, err := w.Write(f.Body); err != nil {
				return err
			}
			if f.Message {
				messages++
			}
		}
		if err := rc.Flush(); err != nil {
			return err
		}
		sess.Wrote(messages)
		return nil
	}

	retry := []byte("retry: " + strconv.FormatInt(s.cfg.Retry.Milliseconds(), 10) + "\n\n")
	if err := write([]*streamgate.Frame{{Body: retry}, st.connected}); err != nil {
		return
	}
	batch := make([]*streamgate.Frame, 0, 16)
	for {
		select {
		case <-sess.Ready():
			batch = sess.Take(batch[:0])
			if err := write(batch); err != nil {
				return
			}
			clear(batch)
		case <-sess.Done():
			// Closed by the registry: evicted, expired, suspended, or the node stopping. The
			// final notice goes out alone; what was still queued is left for a resume.
			if f := sess.Final(); f != nil {
				_ = write([]*streamgate.Frame{f})
			}
			return
		case <-s.stopping:
			_ = write([]*streamgate.Frame{session.Disconnect("node shutting down", true)})
			return
		case <-r.Context().Done():
			return
		}
	}
}

var idPrefix = []byte("id: ")

func connectedFrame(lastID, sessionID, nodeID string, channels []string) *streamgate.Frame {
	data, _ := json.Marshal(struct {
		SessionID string   `json:"session_id"`
		NodeID    string   `json:"node_id"`
		Channels  []string `json:"channels"`
	}{sessionID, nodeID, channels})
	f := stream.NewFrame(lastID, "connected", string(data))
	f.Message = false
	return f
}
