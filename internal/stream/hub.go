package stream

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	streamgate "github.com/streamgate/streamgate"
	"github.com/streamgate/streamgate/internal/keys"
)

// Deliverer is what the hub needs of the node's session registry: hand one encoded frame to
// every local session of tenantID subscribed to channel, without ever blocking.
type Deliverer interface {
	Broadcast(tenantID, channel string, f *streamgate.Frame) int
}

// ErrUnavailable means Redis did not confirm a subscription in time.
var ErrUnavailable = errors.New("redis unavailable")

// Hub holds this node's Redis pub/sub subscriptions: one per tenant channel that has at least
// one local session (reference-counted), plus the control channel. It turns every message into
// an SSE frame once and hands it to the Deliverer.
//
// Subscriptions survive a Redis reconnect: the client subscribes again to everything it holds.
type Hub struct {
	rdb     redis.UniversalClient
	ps      *redis.PubSub
	rpc     rpc
	deliver Deliverer
	control func(payload []byte)
	log     *slog.Logger
	// ConfirmTimeout bounds how long Acquire waits for Redis to confirm a subscription.
	ConfirmTimeout time.Duration

	mu      sync.Mutex
	subs    map[string]*subscription // pub/sub name → state
	pingSeq uint64
	waiters map[uint64]chan struct{}
}

type subscription struct {
	refs   int
	active bool // Redis confirmed the subscription (a ping sent after it came back)
}

// NewHub returns the hub of node nodeID: it delivers to d, passes control-channel payloads to
// control, and takes calls from other nodes (SetRPCHandler).
func NewHub(rdb redis.UniversalClient, nodeID string, d Deliverer, control func(payload []byte), log *slog.Logger) *Hub {
	return &Hub{
		rdb:            rdb,
		rpc:            rpc{nodeID: nodeID, pending: make(map[string]chan rpcMessage)},
		ps:             rdb.Subscribe(context.Background()),
		deliver:        d,
		control:        control,
		log:            log,
		ConfirmTimeout: 5 * time.Second,
		subs:           make(map[string]*subscription),
		waiters:        make(map[uint64]chan struct{}),
	}
}

// Acquire makes sure this node receives the tenant channel's events, and returns once Redis has
// confirmed the subscription, so that an event published after Acquire returns is delivered.
// Each successful Acquire must be paired with a Release.
func (h *Hub) Acquire(ctx context.Context, tenantID, channel string) error {
	name := keys.Channel(tenantID, channel)
	h.mu.Lock()
	s := h.subs[name]
	if s == nil {
		s = &subscription{}
		h.subs[name] = s
	}
	s.refs++
	if s.refs == 1 {
		if err := h.ps.Subscribe(ctx, name); err != nil {
			h.releaseLocked(name, s)
			h.mu.Unlock()
			return fmt.Errorf("subscribe %s: %w: %w", channel, ErrUnavailable, err)
		}
	}
	active := s.active
	h.mu.Unlock()
	if active {
		return nil
	}
	if err := h.sync(ctx); err != nil {
		h.Release(tenantID, channel)
		return fmt.Errorf("subscribe %s: %w", channel, err)
	}
	h.mu.Lock()
	if h.subs[name] == s {
		s.active = true
	}
	h.mu.Unlock()
	return nil
}

// Release drops one reference taken by Acquire; the last one unsubscribes.
func (h *Hub) Release(tenantID, channel string) {
	name := keys.Channel(tenantID, channel)
	h.mu.Lock()
	defer h.mu.Unlock()
	if s := h.subs[name]; s != nil {
		h.releaseLocked(name, s)
	}
}

func (h *Hub) releaseLocked(name string, s *subscription) {
	s.refs--
	if s.refs > 0 {
		return
	}
	delete(h.subs, name)
	// An error here means the connection is gone; the reconnect will not resubscribe to a
	// channel the client no longer lists.
	if err := h.ps.Unsubscribe(context.Background(), name); err != nil {
		h.log.Debug("unsubscribe", "channel", name, "err", err)
	}
}

// Channels reports how many pub/sub channels the node holds for tenants.
func (h *Hub) Channels() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs)
}

// sync returns once Redis has processed every command sent on the pub/sub connection so far:
// it sends a PING with a fresh payload and waits for its reply, which Redis sends in order.
func (h *Hub) sync(ctx context.Context) error {
	h.mu.Lock()
	h.pingSeq++
	seq := h.pingSeq
	done := make(chan struct{})
	h.waiters[seq] = done
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		delete(h.waiters, seq)
		h.mu.Unlock()
	}()
	if err := h.ps.Ping(ctx, "sg:"+strconv.FormatUint(seq, 10)); err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	t := time.NewTimer(h.ConfirmTimeout)
	defer t.Stop()
	select {
	case <-done:
		return nil
	case <-t.C:
		return fmt.Errorf("%w: no confirmation within %s", ErrUnavailable, h.ConfirmTimeout)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// pong wakes every sync waiting for a ping up to seq: replies come in order.
func (h *Hub) pong(payload string) {
	seq, err := strconv.ParseUint(payload[min(3, len(payload)):], 10, 64)
	if err != nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for s, ch := range h.waiters {
		if s <= seq {
			close(ch)
			delete(h.waiters, s)
		}
	}
}

// Run receives from Redis until ctx ends. Connection errors are retried with backoff; the
// client reconnects and resubscribes by itself.
func (h *Hub) Run(ctx context.Context) error {
	if err := h.ps.Subscribe(ctx, keys.Control(), keys.Node(h.rpc.nodeID)); err != nil {
		h.log.Warn("subscribe control and node channels", "err", err)
	}
	stop := context.AfterFunc(ctx, func() { h.ps.Close() })
	defer stop()
	backoff := 50 * time.Millisecond
	for {
		msg, err := h.ps.ReceiveTimeout(ctx, 30*time.Second)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			var nerr interface{ Timeout() bool }
			if errors.As(err, &nerr) && nerr.Timeout() {
				// Quiet for a while: make sure the connection is still alive.
				_ = h.ps.Ping(ctx, "sg:keepalive")
				continue
			}
			h.log.Warn("redis pub/sub receive", "err", err, "retry_in", backoff.String())
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
				return nil
			}
			backoff = min(backoff*2, 2*time.Second)
			continue
		}
		backoff = 50 * time.Millisecond
		switch m := msg.(type) {
		case *redis.Message:
			h.dispatch(m.Channel, m.Payload)
		case *redis.Pong:
			h.pong(m.Payload)
		}
	}
}

func (h *Hub) dispatch(name, payload string) {
	switch name {
	case keys.Control():
		if h.control != nil {
			h.control([]byte(payload))
		}
		return
	case keys.Node(h.rpc.nodeID):
		h.onRPC(payload)
		return
	}
	tenantID, channel, ok := keys.ParseChannel(name)
	if !ok {
		return
	}
	f, ok := EncodeFrame(channel, payload)
	if !ok {
		h.log.Warn("malformed pub/sub payload", "channel", name)
		return
	}
	h.deliver.Broadcast(tenantID, channel, f)
}

// EncodeFrame turns a payload published on channel ("<id>\n<kind>\n<json>") into the SSE
// frame every subscriber on this node receives: the bytes after "id: <cursor prefix>".
func EncodeFrame(channel, payload string) (*streamgate.Frame, bool) {
	id, rest, ok := strings.Cut(payload, "\n")
	if !ok {
		return nil, false
	}
	kind, data, ok := strings.Cut(rest, "\n")
	if !ok {
		return nil, false
	}
	if _, _, ok := ParseID(id); !ok {
		return nil, false
	}
	return NewFrame(channel, id, kind, data), true
}

// NewFrame encodes one event of channel with an id. kind and data must hold no line breaks
// (they are validated names and compact JSON).
func NewFrame(channel, id, kind, data string) *streamgate.Frame {
	var b bytes.Buffer
	b.Grow(len(id) + len(kind) + len(data) + 17)
	b.WriteString(id)
	b.WriteString("\nevent: ")
	b.WriteString(kind)
	b.WriteString("\ndata: ")
	b.WriteString(data)
	b.WriteString("\n\n")
	_, seq, _ := ParseID(id)
	return &streamgate.Frame{ID: id, Seq: seq, Channel: channel, Body: b.Bytes(), Message: true}
}
