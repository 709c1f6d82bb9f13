package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	streamgate "github.com/streamgate/streamgate"
	"github.com/streamgate/streamgate/internal/session"
	"github.com/streamgate/streamgate/internal/stream"
	"github.com/streamgate/streamgate/internal/tenant"
)

// callTimeout bounds a call to the node that holds a stream.
const callTimeout = 3 * time.Second

// Node call methods.
const (
	rpcSubscribe   = "subscribe"
	rpcUnsubscribe = "unsubscribe"
	rpcEvict       = "evict"
	rpcSessions    = "sessions"
)

type subscriptionChange struct {
	TenantID  string `json:"tenant_id"`
	SessionID string `json:"session_id"`
	Channel   string `json:"channel"`
	MaxSubs   int    `json:"max_subs"`
}

// handleSubscribe serves POST /v1/sessions/{id}/subscriptions for the session's own end user,
// on any node: the node holding the stream applies it.
func (s *Server) handleSubscribe() gin.HandlerFunc {
	type request struct {
		Channel *string `json:"channel"`
	}
	return func(c *gin.Context) {
		var req request
		if e := decodeJSON(c.Request, smallBodyLimit, &req, false); e != nil {
			s.abort(c, e)
			return
		}
		if req.Channel == nil || !streamgate.ValidChannel(*req.Channel) {
			s.abort(c, errorf(http.StatusBadRequest, codeInvalid, "Field \"channel\" must be a channel name: 1 to 200 characters of A-Z a-z 0-9 _ - . : @ = ,"))
			return
		}
		s.changeSubscription(c, rpcSubscribe, *req.Channel, http.StatusCreated)
	}
}

// handleUnsubscribe serves DELETE /v1/sessions/{id}/subscriptions/{channel}. Removing a channel
// the session does not have is not an error: retries stay harmless.
func (s *Server) handleUnsubscribe() gin.HandlerFunc {
	return func(c *gin.Context) {
		ch := c.Param("channel")
		if !streamgate.ValidChannel(ch) {
			s.abort(c, errorf(http.StatusBadRequest, codeInvalid, "Channel names are 1 to 200 characters of A-Z a-z 0-9 _ - . : @ = ,"))
			return
		}
		s.changeSubscription(c, rpcUnsubscribe, ch, http.StatusNoContent)
	}
}

func (s *Server) changeSubscription(c *gin.Context, method, channel string, okStatus int) {
	ctx := c.Request.Context()
	raw := bearer(c.Request)
	if raw == "" {
		s.abort(c, errorf(http.StatusUnauthorized, codeUnauthorized, "Send the end-user token of the session as Authorization: Bearer <token>"))
		return
	}
	claims, err := s.tenants.VerifyToken(ctx, raw)
	if err != nil {
		s.fail(c, err)
		return
	}
	t, err := s.tenants.Cached(ctx, claims.TenantID)
	if err != nil {
		s.fail(c, err)
		return
	}
	id := c.Param("id")
	rec, err := s.sessionRecords.Load(ctx, t.ID, id)
	if errors.Is(err, stream.ErrSessionNotFound) {
		s.abort(c, errorf(http.StatusNotFound, codeNotFound, "No session %s (sessions last as long as their tenant's history window)", truncated(id)))
		return
	}
	if err != nil {
		s.fail(c, err)
		return
	}
	if rec.Sub != claims.Sub {
		s.abort(c, errorf(http.StatusForbidden, codeForbidden, "The session belongs to another user"))
		return
	}
	if method == rpcSubscribe && !streamgate.Granted(claims.Channels, channel) {
		s.abort(c, errorf(http.StatusForbidden, codeForbidden, "The token does not grant channel %q", channel))
		return
	}
	change := subscriptionChange{TenantID: t.ID, SessionID: id, Channel: channel, MaxSubs: t.Limits.MaxSubscriptionsPerSession}
	if err := s.onSessionNode(ctx, rec, method, change, nil); err != nil {
		s.fail(c, err)
		return
	}
	c.Status(okStatus)
}

// onSessionNode runs method where the session's stream is: here, on the node its record names,
// or — when that node is gone and the stream with it — on the record alone, so that the change
// holds when the client resumes.
func (s *Server) onSessionNode(ctx context.Context, rec stream.SessionRecord, method string, body, out any) error {
	if rec.NodeID == s.cfg.NodeID {
		res, err := s.handleRPC(ctx, method, mustJSON(body))
		if err == nil && out != nil && res != nil {
			return json.Unmarshal(mustJSON(res), out)
		}
		return err
	}
	err := s.hub.Call(ctx, rec.NodeID, method, body, out, callTimeout)
	if !errors.Is(err, stream.ErrNoReply) {
		return err
	}
	alive, aerr := s.cluster.Alive(ctx, rec.NodeID)
	if aerr != nil || alive {
		return err // the node lives but did not answer: nothing was applied
	}
	return s.applyToRecord(ctx, method, body)
}

// handleRPC runs a call from another node (or this one) against this node's streams.
func (s *Server) handleRPC(ctx context.Context, method string, body json.RawMessage) (any, error) {
	switch method {
	case rpcSubscribe, rpcUnsubscribe:
		var ch subscriptionChange
		if err := json.Unmarshal(body, &ch); err != nil {
			return nil, err
		}
		st := s.live.get(ch.SessionID)
		if st == nil || st.tenantID != ch.TenantID {
			// Not streaming here (between a disconnect and its resume): the record is the session.
			return nil, s.applyToRecord(ctx, method, ch)
		}
		if method == rpcSubscribe {
			return nil, st.subscribe(ctx, ch.Channel, ch.MaxSubs)
		}
		return nil, st.unsubscribe(ctx, ch.Channel)
	case rpcEvict:
		var ev evictRequest
		if err := json.Unmarshal(body, &ev); err != nil {
			return nil, err
		}
		return nil, s.evictLocal(ctx, ev)
	case rpcSessions:
		var req sessionsRequest
		if err := json.Unmarshal(body, &req); err != nil {
			return nil, err
		}
		return s.localSessions(req.TenantID), nil
	default:
		return nil, &stream.RemoteError{Code: codeNotFound, Message: "unknown node call " + method}
	}
}

// applyToRecord changes the subscriptions of a session that is not streaming anywhere.
func (s *Server) applyToRecord(ctx context.Context, method string, body any) error {
	ch, ok := body.(subscriptionChange)
	if !ok {
		return &stream.RemoteError{Code: codeNotFound, Message: "the session is not streaming"}
	}
	rec, err := s.sessionRecords.Load(ctx, ch.TenantID, ch.SessionID)
	if errors.Is(err, stream.ErrSessionNotFound) {
		return &stream.RemoteError{Code: codeNotFound, Message: "no such session"}
	}
	if err != nil {
		return err
	}
	has := slices.Contains(rec.Channels, ch.Channel)
	switch {
	case method == rpcSubscribe && !has:
		if len(rec.Channels) >= ch.MaxSubs {
			return limitError(ch.MaxSubs)
		}
		rec.Channels = append(rec.Channels, ch.Channel)
		slices.Sort(rec.Channels)
	case method == rpcUnsubscribe && has:
		rec.Channels = slices.DeleteFunc(rec.Channels, func(c string) bool { return c == ch.Channel })
	default:
		return nil
	}
	t, err := s.tenants.Cached(ctx, ch.TenantID)
	if err != nil {
		return err
	}
	return s.sessionRecords.SetChannels(ctx, ch.TenantID, ch.SessionID, rec.Channels, historyTTL(t))
}

func limitError(max int) error {
	return &stream.RemoteError{Code: codeLimitExceeded, Message: "A session may subscribe to at most " + strconv.Itoa(max) + " channels"}
}

// subscribe adds a channel to the live stream: the registry's cap, this node's pub/sub, the
// record, then the notice and, for jobs and workflows, the current state.
func (st *liveStream) subscribe(ctx context.Context, channel string, maxSubs int) error {
	s := st.srv
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.closed {
		return &stream.RemoteError{Code: codeNotFound, Message: "the session's stream just ended; retry"}
	}
	added, err := st.sess.Subscribe(channel, maxSubs)
	if errors.Is(err, session.ErrLimitExceeded) {
		return limitError(maxSubs)
	}
	if errors.Is(err, session.ErrNotFound) {
		return &stream.RemoteError{Code: codeNotFound, Message: "the session's stream just ended; retry"}
	}
	if err != nil {
		return err
	}
	if added {
		if err := s.hub.Acquire(ctx, st.tenantID, channel); err != nil {
			_, _ = st.sess.Unsubscribe(channel)
			return err
		}
		st.acquired = append(st.acquired, channel)
	}
	if err := s.sessionRecords.SetChannels(ctx, st.tenantID, st.sess.ID(), st.sess.Channels(), st.ttl); err != nil {
		return err
	}
	_ = s.sessions.Send(st.sess.ID(), channelNotice("subscribed", channel))
	// Live changes of the channel already flow; its state read now is at least as new as any
	// of them queued so far, and the writer skips those older than what it wrote.
	e, ok, err := s.stateReader.Current(ctx, st.tenantID, channel)
	if err != nil {
		return err
	}
	if ok {
		_ = s.sessions.Send(st.sess.ID(), st.stateFrame(e))
	}
	return nil
}

func (st *liveStream) unsubscribe(ctx context.Context, channel string) error {
	s := st.srv
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.closed {
		return &stream.RemoteError{Code: codeNotFound, Message: "the session's stream just ended; retry"}
	}
	removed, err := st.sess.Unsubscribe(channel)
	if err != nil {
		return &stream.RemoteError{Code: codeNotFound, Message: "the session's stream just ended; retry"}
	}
	if !removed {
		return nil
	}
	if i := slices.Index(st.acquired, channel); i >= 0 {
		st.acquired = slices.Delete(st.acquired, i, i+1)
		s.hub.Release(st.tenantID, channel)
	}
	if err := s.sessionRecords.SetChannels(ctx, st.tenantID, st.sess.ID(), st.sess.Channels(), st.ttl); err != nil {
		return err
	}
	_ = s.sessions.Send(st.sess.ID(), channelNotice("unsubscribed", channel))
	return nil
}

func channelNotice(event, channel string) *streamgate.Frame {
	data, _ := json.Marshal(struct {
		Channel string `json:"channel"`
	}{channel})
	return &streamgate.Frame{Body: []byte("event: " + event + "\ndata: " + string(data) + "\n\n")}
}

func mustJSON(v any) json.RawMessage {
	b, _ := json.Marshal(v)
	return b
}

func truncated(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

// tenantUsage is a tenant's live connections and subscriptions over the cluster: this node's
// exact figures plus the other nodes' last heartbeats.
func (s *Server) tenantUsage(ctx context.Context, t tenant.Tenant) (connections, subscriptions int, err error) {
	others, err := s.cluster.TenantUsage(ctx, t.ID, s.cfg.NodeID)
	if err != nil {
		return 0, 0, err
	}
	local := s.sessions.TenantStats(t.ID)
	return local.Connections + others.Connections, local.Subscriptions + others.Subscriptions, nil
}
