package stream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	streamgate "github.com/streamgate/streamgate"
	"github.com/streamgate/streamgate/internal/keys"
)

// Nodes call each other over Redis: every node listens on its own channel, a request names the
// channel to answer on, and the caller waits for the answer with a timeout. It carries the few
// operations that must run where a stream is held (the sessions API, admin eviction, listing a
// node's sessions).

// RemoteError is a refusal that the node that ran a call sends back: a contract error code
// and its message.
type RemoteError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *RemoteError) Error() string { return e.Code + ": " + e.Message }

// ErrNoReply means the node did not answer in time: it may be gone, or Redis may be.
var ErrNoReply = errors.New("node did not answer")

// HandlerTimeout bounds the work a node does for another node's call; callers wait longer.
const HandlerTimeout = 2 * time.Second

// RPCHandler runs a call on this node. Returning a *RemoteError sends that refusal back; any
// other error is sent as an internal error.
type RPCHandler func(ctx context.Context, method string, body json.RawMessage) (any, error)

type rpcMessage struct {
	ID      string          `json:"id"`
	ReplyTo string          `json:"reply_to,omitempty"` // set on requests
	Method  string          `json:"method,omitempty"`
	Body    json.RawMessage `json:"body,omitempty"`
	Error   *RemoteError    `json:"error,omitempty"`
}

type rpc struct {
	nodeID  string
	handler atomic.Pointer[RPCHandler]
	mu      sync.Mutex
	pending map[string]chan rpcMessage
}

// SetRPCHandler installs what runs calls addressed to this node.
func (h *Hub) SetRPCHandler(fn RPCHandler) { h.rpc.handler.Store(&fn) }

// Call runs method on node nodeID with body and decodes its answer into out (which may be
// nil). It returns a *RemoteError for the node's refusal and ErrNoReply after timeout.
func (h *Hub) Call(ctx context.Context, nodeID, method string, body, out any, timeout time.Duration) error {
	raw, err := json.Marshal(body)
	if err != nil {
		return fmt.Errorf("encode %s: %w", method, err)
	}
	req := rpcMessage{ID: streamgate.NewID("rpc_"), ReplyTo: keys.Node(h.rpc.nodeID), Method: method, Body: raw}
	wire, _ := json.Marshal(req)
	ch := make(chan rpcMessage, 1)
	h.rpc.mu.Lock()
	h.rpc.pending[req.ID] = ch
	h.rpc.mu.Unlock()
	defer func() {
		h.rpc.mu.Lock()
		delete(h.rpc.pending, req.ID)
		h.rpc.mu.Unlock()
	}()
	n, err := h.rdb.Publish(ctx, keys.Node(nodeID), wire).Result()
	if err != nil {
		return fmt.Errorf("call %s on %s: %w: %w", method, nodeID, ErrUnavailable, err)
	}
	if n == 0 && !h.cluster {
		// A single Redis counts every listener; a cluster counts only those on the shard
		// that took the PUBLISH, so there the reply's timeout decides.
		return fmt.Errorf("call %s on %s: %w (nobody listens)", method, nodeID, ErrNoReply)
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case resp := <-ch:
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
		return fmt.Errorf("call %s on %s: %w within %s", method, nodeID, ErrNoReply, timeout)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// onRPC handles a message on this node's channel: a reply wakes its caller, a request runs in
// its own goroutine so that the receive loop never waits on it.
func (h *Hub) onRPC(payload string) {
	var m rpcMessage
	if err := json.Unmarshal([]byte(payload), &m); err != nil || m.ID == "" {
		h.log.Warn("malformed node message")
		return
	}
	if m.ReplyTo == "" {
		h.rpc.mu.Lock()
		ch := h.rpc.pending[m.ID]
		h.rpc.mu.Unlock()
		if ch != nil {
			ch <- m
		}
		return
	}
	fn := h.rpc.handler.Load()
	go func() {
		// Shorter than any caller waits (3 s): a change that finishes after the caller gave
		// up and answered 503 would contradict "a 5xx was not accepted".
		ctx, cancel := context.WithTimeout(context.Background(), HandlerTimeout)
		defer cancel()
		reply := rpcMessage{ID: m.ID}
		if fn == nil {
			reply.Error = &RemoteError{Code: "unavailable", Message: "node is starting"}
		} else if out, err := (*fn)(ctx, m.Method, m.Body); err != nil {
			var re *RemoteError
			if !errors.As(err, &re) {
				h.log.Error("node call failed", "method", m.Method, "err", err)
				re = &RemoteError{Code: "internal_error", Message: "the node holding the stream failed"}
			}
			reply.Error = re
		} else if out != nil {
			reply.Body, _ = json.Marshal(out)
		}
		wire, _ := json.Marshal(reply)
		if err := h.rdb.Publish(ctx, m.ReplyTo, wire).Err(); err != nil {
			h.log.Warn("send node reply", "method", m.Method, "err", err)
		}
	}()
}

// Canary sends a message to this node's own channel through Redis and waits for it to come
// back over the hub's subscription. It succeeds only when publishing works and the receive loop
// is alive and subscribed: readiness end to end, not merely a PING.
func (h *Hub) Canary(ctx context.Context, timeout time.Duration) error {
	id := streamgate.NewID("canary_")
	ch := make(chan rpcMessage, 1)
	h.rpc.mu.Lock()
	h.rpc.pending[id] = ch
	h.rpc.mu.Unlock()
	defer func() {
		h.rpc.mu.Lock()
		delete(h.rpc.pending, id)
		h.rpc.mu.Unlock()
	}()
	wire, _ := json.Marshal(rpcMessage{ID: id})
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := h.rdb.Publish(ctx, keys.Node(h.rpc.nodeID), wire).Err(); err != nil {
		return fmt.Errorf("canary: %w: %w", ErrUnavailable, err)
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("canary: %w: it did not come back within %s", ErrUnavailable, timeout)
	}
}
