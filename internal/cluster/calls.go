package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	streamgate "github.com/streamgate/streamgate"
	"github.com/streamgate/streamgate/internal/keys"
)

// Nodes call each other over Redis: every node listens on its own channel (the hub's receive
// loop hands its messages to Calls.Receive), a request names the channel to answer on, and the
// caller waits for the answer with a timeout. The calls carry the few operations that must run
// where a stream is held: the sessions API, token refresh, admin eviction, listing a node's
// sessions. A node calls itself directly, never through Redis: see Handler.

// Timeouts of node calls: the node doing the work gives up before its caller stops waiting, so
// that a change the caller reported as failed (503: nothing accepted) is never applied after.
const (
	CallTimeout    = 3 * time.Second
	HandlerTimeout = 2 * time.Second
)

// ErrNoReply means the node did not answer in time: it may be gone, or Redis may be.
var ErrNoReply = errors.New("node did not answer")

// ErrUnavailable means the call could not be sent: Redis is unreachable.
var ErrUnavailable = errors.New("redis unavailable")

// RemoteError is a refusal that the node that ran a call sends back: a code that the caller's
// package turns back into its own error, and a message for people.
type RemoteError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *RemoteError) Error() string { return e.Code + ": " + e.Message }

// SubscriptionChange adds or removes a channel of a live session (the sessions API).
type SubscriptionChange struct {
	TenantID  string `json:"tenant_id"`
	SessionID string `json:"session_id"`
	Channel   string `json:"channel"`
	MaxSubs   int    `json:"max_subs"`
}

// TokenRefresh gives a session the token its user refreshed: the session expires with it, is
// closed when KeyID is deleted, and keeps only the channels that Grants still cover.
type TokenRefresh struct {
	TenantID  string    `json:"tenant_id"`
	SessionID string    `json:"session_id"`
	KeyID     string    `json:"key_id"`
	Grants    []string  `json:"grants"`
	ExpiresAt time.Time `json:"expires_at"`
}

// SessionSummary describes one live session for the operator.
type SessionSummary struct {
	ID          string    `json:"id"`
	Sub         string    `json:"sub"`
	NodeID      string    `json:"node_id"`
	ConnectedAt time.Time `json:"connected_at"`
	Channels    []string  `json:"channels"`
	Dropped     uint64    `json:"dropped"`
	// Mercure is what a Mercure subscriber's hub lists of it (its subscriber id and token
	// payload); absent for other streams.
	Mercure json.RawMessage `json:"mercure,omitempty"`
}

// Handler runs calls on the node that holds the streams. An error that is a *RemoteError goes
// back to the caller as it is; any other is logged and sent as an internal error.
type Handler interface {
	Subscribe(ctx context.Context, c SubscriptionChange) error
	Unsubscribe(ctx context.Context, c SubscriptionChange) error
	Evict(ctx context.Context, sessionID string) error
	Sessions(ctx context.Context, tenantID string) ([]SessionSummary, error)
	RefreshToken(ctx context.Context, r TokenRefresh) error
}

// The calls' names on the wire.
const (
	callSubscribe   = "subscribe"
	callUnsubscribe = "unsubscribe"
	callEvict       = "evict"
	callSessions    = "sessions"
	callRefresh     = "refresh_token"
)

type message struct {
	ID      string          `json:"id"`
	ReplyTo string          `json:"reply_to,omitempty"` // set on requests
	Method  string          `json:"method,omitempty"`
	Body    json.RawMessage `json:"body,omitempty"`
	Error   *RemoteError    `json:"error,omitempty"`
}

// Calls sends calls to other nodes and takes theirs for this one.
type Calls struct {
	rdb     redis.UniversalClient
	nodeID  string
	sharded bool
	log     *slog.Logger

	mu      sync.Mutex
	pending map[string]chan message
	// requests queue calls from other nodes until Serve runs them; a call that finds the queue
	// full is answered unavailable at once rather than left to time out.
	requests chan message
}

// NewCalls returns the calls of node nodeID on rdb.
func NewCalls(rdb redis.UniversalClient, nodeID string, log *slog.Logger) *Calls {
	_, sharded := rdb.(*redis.ClusterClient)
	return &Calls{rdb: rdb, nodeID: nodeID, sharded: sharded, log: log,
		pending: make(map[string]chan message), requests: make(chan message, 256)}
}

// Subscribe asks node nodeID to add a channel to a session it holds.
func (c *Calls) Subscribe(ctx context.Context, nodeID string, req SubscriptionChange) error {
	return call(ctx, c, nodeID, callSubscribe, req, (*struct{})(nil))
}

// Unsubscribe asks node nodeID to remove a channel from a session it holds.
func (c *Calls) Unsubscribe(ctx context.Context, nodeID string, req SubscriptionChange) error {
	return call(ctx, c, nodeID, callUnsubscribe, req, (*struct{})(nil))
}

// Evict asks node nodeID to close a session it holds for good.
func (c *Calls) Evict(ctx context.Context, nodeID, sessionID string) error {
	return call(ctx, c, nodeID, callEvict, sessionID, (*struct{})(nil))
}

// Sessions asks node nodeID for a tenant's sessions on it.
func (c *Calls) Sessions(ctx context.Context, nodeID, tenantID string) ([]SessionSummary, error) {
	var out []SessionSummary
	err := call(ctx, c, nodeID, callSessions, tenantID, &out)
	return out, err
}

// RefreshToken asks node nodeID to give a session it holds a refreshed token.
func (c *Calls) RefreshToken(ctx context.Context, nodeID string, req TokenRefresh) error {
	return call(ctx, c, nodeID, callRefresh, req, (*struct{})(nil))
}

// call runs method on node nodeID with req and decodes the answer into out. It returns a
// *RemoteError for the node's refusal and ErrNoReply after CallTimeout.
func call[Req, Resp any](ctx context.Context, c *Calls, nodeID, method string, req Req, out *Resp) error {
	raw, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("encode %s: %w", method, err)
	}
	m := message{ID: streamgate.NewID("rpc_"), ReplyTo: keys.Node(c.nodeID), Method: method, Body: raw}
	reply, wait := c.expect(m.ID)
	defer wait()
	wire, _ := json.Marshal(m)
	n, err := c.rdb.Publish(ctx, keys.Node(nodeID), wire).Result()
	if err != nil {
		return fmt.Errorf("call %s on %s: %w: %w", method, nodeID, ErrUnavailable, err)
	}
	if n == 0 && !c.sharded {
		// A single Redis counts every listener; a cluster counts only those on the shard that
		// took the PUBLISH, so there the reply's timeout decides.
		return fmt.Errorf("call %s on %s: %w (nobody listens)", method, nodeID, ErrNoReply)
	}
	t := time.NewTimer(CallTimeout)
	defer t.Stop()
	select {
	case resp := <-reply:
		if resp.Error != nil {
			return resp.Error
		}
		if out != nil && len(resp.Body) > 0 {
			if err := json.Unmarshal(resp.Body, out); err != nil {
				return fmt.Errorf("decode %s reply: %w", method, err)
			}
		}
		return nil
	case <-t.C:
		return fmt.Errorf("call %s on %s: %w within %s", method, nodeID, ErrNoReply, CallTimeout)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// expect registers a wait for the reply to id; done forgets it.
func (c *Calls) expect(id string) (reply <-chan message, done func()) {
	ch := make(chan message, 1)
	c.mu.Lock()
	c.pending[id] = ch
	c.mu.Unlock()
	return ch, func() {
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
	}
}

// Receive takes a message from this node's channel: a reply wakes its caller, a request is
// queued for Serve. It never blocks: the hub's receive loop calls it.
func (c *Calls) Receive(payload string) {
	var m message
	if err := json.Unmarshal([]byte(payload), &m); err != nil || m.ID == "" {
		c.log.Warn("malformed node message")
		return
	}
	if m.ReplyTo == "" {
		c.mu.Lock()
		ch := c.pending[m.ID]
		c.mu.Unlock()
		if ch != nil {
			select {
			case ch <- m:
			default: // a duplicate reply
			}
		}
		return
	}
	select {
	case c.requests <- m:
	default:
		go c.reply(m, nil, &RemoteError{Code: "unavailable", Message: "the node holding the stream is overloaded"})
	}
}

// Serve runs the calls of other nodes with h until ctx ends, each in its own goroutine so that a
// slow one holds up no other.
func (c *Calls) Serve(ctx context.Context, h Handler) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case m := <-c.requests:
			go c.run(ctx, h, m)
		}
	}
}

func (c *Calls) run(ctx context.Context, h Handler, m message) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), HandlerTimeout)
	defer cancel()
	var (
		out any
		err error
	)
	switch m.Method {
	case callSubscribe, callUnsubscribe:
		var req SubscriptionChange
		if err = json.Unmarshal(m.Body, &req); err == nil {
			if m.Method == callSubscribe {
				err = h.Subscribe(ctx, req)
			} else {
				err = h.Unsubscribe(ctx, req)
			}
		}
	case callEvict:
		var id string
		if err = json.Unmarshal(m.Body, &id); err == nil {
			err = h.Evict(ctx, id)
		}
	case callSessions:
		var tenantID string
		if err = json.Unmarshal(m.Body, &tenantID); err == nil {
			out, err = h.Sessions(ctx, tenantID)
		}
	case callRefresh:
		var req TokenRefresh
		if err = json.Unmarshal(m.Body, &req); err == nil {
			err = h.RefreshToken(ctx, req)
		}
	default:
		err = &RemoteError{Code: "not_found", Message: "unknown node call " + m.Method}
	}
	var refusal *RemoteError
	if err != nil && !errors.As(err, &refusal) {
		c.log.Error("node call failed", "method", m.Method, "err", err)
		refusal = &RemoteError{Code: "internal_error", Message: "the node holding the stream failed"}
	}
	c.reply(m, out, refusal)
}

func (c *Calls) reply(m message, out any, refusal *RemoteError) {
	resp := message{ID: m.ID, Error: refusal}
	if out != nil && refusal == nil {
		resp.Body, _ = json.Marshal(out)
	}
	wire, _ := json.Marshal(resp)
	ctx, cancel := context.WithTimeout(context.Background(), HandlerTimeout)
	defer cancel()
	if err := c.rdb.Publish(ctx, m.ReplyTo, wire).Err(); err != nil {
		c.log.Warn("send node reply", "method", m.Method, "err", err)
	}
}

// Canary sends a message to this node's own channel through Redis and waits for it to come
// back over the hub's subscription. It succeeds only when publishing works and the receive loop
// is alive and subscribed: readiness end to end, not merely a PING.
func (c *Calls) Canary(ctx context.Context, timeout time.Duration) error {
	id := streamgate.NewID("canary_")
	reply, done := c.expect(id)
	defer done()
	wire, _ := json.Marshal(message{ID: id})
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := c.rdb.Publish(ctx, keys.Node(c.nodeID), wire).Err(); err != nil {
		return fmt.Errorf("canary: %w: %w", ErrUnavailable, err)
	}
	select {
	case <-reply:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("canary: %w: it did not come back within %s", ErrUnavailable, timeout)
	}
}
