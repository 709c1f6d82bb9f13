package stream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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

// Occupancy hears when this node starts and stops holding a tenant channel: its first local
// subscriber came, or its last one left. Both run with the hub's lock held: they must return at
// once, without calling back into the hub.
type Occupancy interface {
	Occupied(tenantID, channel string)
	Vacated(tenantID, channel string)
}

// ErrUnavailable means Redis did not confirm a subscription in time.
var ErrUnavailable = errors.New("redis unavailable")

// Hub holds this node's Redis pub/sub subscriptions: one per tenant channel that has at least
// one local session (reference-counted), plus the control channel and the node's own channel.
// It turns every message into an SSE frame once and hands it to the Deliverer.
//
// On a single Redis one connection carries everything. On a Redis Cluster tenant channels use
// sharded pub/sub (SSUBSCRIBE), one connection per hash slot in use (a tenant's channels share
// its slot), so that a publish travels only to its shard; the control and node channels use
// ordinary pub/sub. Subscriptions survive a reconnect: the client subscribes again to
// everything a connection holds.
type Hub struct {
	rdb      redis.UniversalClient
	cluster  bool
	nodeID   string
	handlers Handlers
	log      *slog.Logger
	// ConfirmTimeout bounds how long Acquire waits for Redis to confirm a subscription.
	ConfirmTimeout time.Duration
	// idleCheck is how long a pub/sub connection may be quiet before it is pinged, and
	// pongTimeout how long the ping may go unanswered before the connection counts as dead
	// and is replaced (followed by catch-up). See WithKeepalive.
	idleCheck, pongTimeout time.Duration

	ctx    context.Context // lives until Run returns; receive loops run under it
	cancel context.CancelFunc
	main   *psConn // control, node and (on a single Redis) tenant channels

	mu     sync.Mutex
	subs   map[string]*subscription // pub/sub name → state
	shards map[int]*psConn          // hash slot → sharded connection (cluster only)

	reconnected chan struct{} // signalled after a pub/sub connection came back

	breaks, reconnects atomic.Int64
}

// HubStats counts the pub/sub connections' failures since the hub started.
type HubStats struct {
	// Breaks counts connections found dead: a receive failed, or a keepalive ping went
	// unanswered.
	Breaks int64
	// Reconnects counts connections that delivered again after a break (and whose streams
	// then caught up from history).
	Reconnects int64
}

// Stats returns the hub's counts.
func (h *Hub) Stats() HubStats {
	return HubStats{Breaks: h.breaks.Load(), Reconnects: h.reconnects.Load()}
}

type subscription struct {
	refs   int
	conn   *psConn
	active bool // Redis confirmed the subscription (a ping sent after it came back)
}

// psConn is one pub/sub connection with its own receive loop.
type psConn struct {
	ps      *redis.PubSub
	sharded bool
	names   int  // tenant channels subscribed on it
	broken  bool // a receive failed: what was published until it came back may be missing

	mu      sync.Mutex
	pingSeq uint64
	waiters map[uint64]chan struct{}
}

// Handlers are what the hub hands its messages to. Each must return quickly: they run on the
// receive loop of a pub/sub connection.
type Handlers struct {
	// Deliver receives the events of every tenant channel the node holds, encoded once.
	Deliver Deliverer
	// Control receives the payloads of the control channel: changes that every node must act
	// on (a deleted signing key, a suspended tenant). Nil ignores them.
	Control func(payload []byte)
	// Node receives the payloads of this node's own channel: calls from other nodes and their
	// replies. Nil ignores them.
	Node func(payload string)
	// Occupancy hears of the node's first and last subscriber of each tenant channel (for
	// webhooks). Nil tells no one.
	Occupancy Occupancy
}

// NewHub returns the hub of node nodeID, handing what it receives to h.
func NewHub(rdb redis.UniversalClient, nodeID string, h Handlers, log *slog.Logger, opts ...HubOption) *Hub {
	ctx, cancel := context.WithCancel(context.Background())
	hub := &Hub{
		rdb:            rdb,
		cluster:        Sharded(rdb),
		nodeID:         nodeID,
		handlers:       h,
		log:            log,
		ConfirmTimeout: 5 * time.Second,
		idleCheck:      15 * time.Second,
		pongTimeout:    10 * time.Second,
		ctx:            ctx,
		cancel:         cancel,
		subs:           make(map[string]*subscription),
		shards:         make(map[int]*psConn),
		reconnected:    make(chan struct{}, 1),
	}
	for _, o := range opts {
		o(hub)
	}
	hub.main = hub.newConn(rdb.Subscribe(ctx), false)
	return hub
}

// HubOption changes a hub's defaults.
type HubOption func(*Hub)

// WithKeepalive sets how long a pub/sub connection may be quiet before it is pinged, and how
// long that ping may go unanswered before the connection counts as dead. The defaults, 15 s
// and 10 s, notice a half-open connection within 25 s.
func WithKeepalive(idle, pong time.Duration) HubOption {
	return func(h *Hub) { h.idleCheck, h.pongTimeout = idle, pong }
}

func (h *Hub) newConn(ps *redis.PubSub, sharded bool) *psConn {
	c := &psConn{ps: ps, sharded: sharded, waiters: make(map[uint64]chan struct{})}
	go h.receive(c)
	return c
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
		if h.handlers.Occupancy != nil && channel != MercureChannel { // internal: occupies nothing
			h.handlers.Occupancy.Occupied(tenantID, channel)
		}
		var err error
		s.conn, err = h.subscribeLocked(ctx, name)
		if err != nil {
			h.releaseLocked(name, s)
			h.mu.Unlock()
			return fmt.Errorf("subscribe %s: %w: %w", channel, ErrUnavailable, err)
		}
	}
	c, active := s.conn, s.active
	h.mu.Unlock()
	if active {
		return nil
	}
	if err := c.sync(ctx, h.ConfirmTimeout); err != nil {
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

// subscribeLocked subscribes to a tenant channel on the connection it belongs on and returns
// that connection; h.mu must be held. On a cluster, a slot's connection is opened with its first
// channel, so that it goes to the master of that slot.
func (h *Hub) subscribeLocked(ctx context.Context, name string) (*psConn, error) {
	c := h.main
	if h.cluster {
		slot := hashSlot(name)
		if c = h.shards[slot]; c == nil {
			c = h.newConn(h.rdb.(*redis.ClusterClient).SSubscribe(ctx, name), true)
			h.shards[slot] = c
			c.names++
			return c, nil
		}
	}
	c.names++
	return c, c.subscribe(ctx, name)
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
	if h.handlers.Occupancy != nil {
		if tenantID, channel, ok := keys.ParseChannel(name); ok && channel != MercureChannel {
			h.handlers.Occupancy.Vacated(tenantID, channel)
		}
	}
	c := s.conn
	c.names--
	if c.sharded && c.names == 0 {
		// The slot has no channel left here: its connection goes.
		delete(h.shards, hashSlot(name))
		c.ps.Close()
		return
	}
	// An error here means the connection is gone; the reconnect will not resubscribe to a
	// channel the client no longer lists.
	if err := c.unsubscribe(name); err != nil {
		h.log.Debug("unsubscribe", "channel", name, "err", err)
	}
}

func (c *psConn) subscribe(ctx context.Context, name string) error {
	if c.sharded {
		return c.ps.SSubscribe(ctx, name)
	}
	return c.ps.Subscribe(ctx, name)
}

func (c *psConn) unsubscribe(name string) error {
	if c.sharded {
		return c.ps.SUnsubscribe(context.Background(), name)
	}
	return c.ps.Unsubscribe(context.Background(), name)
}

// sync returns once Redis has processed every command sent on the connection so far: it sends
// a PING with a fresh payload and waits for its reply, which Redis sends in order.
func (c *psConn) sync(ctx context.Context, timeout time.Duration) error {
	c.mu.Lock()
	c.pingSeq++
	seq := c.pingSeq
	done := make(chan struct{})
	c.waiters[seq] = done
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.waiters, seq)
		c.mu.Unlock()
	}()
	if err := c.ps.Ping(ctx, "sg:"+strconv.FormatUint(seq, 10)); err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-done:
		return nil
	case <-t.C:
		return fmt.Errorf("%w: no confirmation within %s", ErrUnavailable, timeout)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// pong wakes every sync waiting for a ping up to seq: replies come in order.
func (c *psConn) pong(payload string) {
	seq, err := strconv.ParseUint(payload[min(3, len(payload)):], 10, 64)
	if err != nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for s, ch := range c.waiters {
		if s <= seq {
			close(ch)
			delete(c.waiters, s)
		}
	}
}

// Run subscribes to the control and node channels and keeps the hub receiving until ctx ends;
// then it closes every connection.
func (h *Hub) Run(ctx context.Context) error {
	if err := h.main.ps.Subscribe(ctx, keys.Control(), keys.Node(h.nodeID)); err != nil {
		h.log.Warn("subscribe control and node channels", "err", err)
	}
	select {
	case <-ctx.Done():
	case <-h.ctx.Done():
	}
	h.cancel()
	h.mu.Lock()
	defer h.mu.Unlock()
	h.main.ps.Close()
	for _, c := range h.shards {
		c.ps.Close()
	}
	return nil
}

// receive reads one connection until the hub stops or the connection is closed for good.
// Errors are retried with backoff; the client reconnects and resubscribes by itself.
func (h *Hub) receive(c *psConn) {
	backoff := 50 * time.Millisecond
	awaitingPong := false
	for {
		var msg any
		var err error
		if awaitingPong {
			// A keepalive ping is out: with a zero timeout the read is bounded by the context
			// alone, and go-redis then counts a timeout as a dead connection and reconnects.
			// That is what catches a half-open connection (no RST: a paused Redis, a dropped
			// link), which would otherwise look quiet for ever.
			ctx, cancel := context.WithTimeout(h.ctx, h.pongTimeout)
			msg, err = c.ps.ReceiveTimeout(ctx, 0)
			cancel()
		} else {
			msg, err = c.ps.ReceiveTimeout(h.ctx, h.idleCheck)
		}
		if h.ctx.Err() != nil || errors.Is(err, redis.ErrClosed) {
			return
		}
		if err != nil {
			var nerr interface{ Timeout() bool }
			if !awaitingPong && errors.As(err, &nerr) && nerr.Timeout() {
				// Quiet for a while: make sure the connection is still alive.
				_ = c.ps.Ping(h.ctx, "sg:keepalive")
				awaitingPong = true
				continue
			}
			awaitingPong = false
			h.log.Warn("redis pub/sub receive", "err", err, "retry_in", backoff.String())
			h.broke(c)
			select {
			case <-time.After(backoff):
			case <-h.ctx.Done():
				return
			}
			backoff = min(backoff*2, 2*time.Second)
			continue
		}
		awaitingPong = false // anything received proves the connection alive
		backoff = 50 * time.Millisecond
		if c.broken {
			h.recovered(c)
		}
		switch m := msg.(type) {
		case *redis.Message:
			h.dispatch(m.Channel, m.Payload)
		case *redis.Pong:
			c.pong(m.Payload)
		}
	}
}

// broke marks a connection whose receive failed: its subscriptions are no longer known to be
// live, so new Acquires wait for a confirmation again.
func (h *Hub) broke(c *psConn) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !c.broken {
		h.breaks.Add(1)
	}
	c.broken = true
	for _, s := range h.subs {
		if s.conn == c {
			s.active = false
		}
	}
}

// recovered runs once a broken connection delivers again (the client has reconnected and
// subscribed anew): every stream on its channels is told to fetch from history what was
// published in between, so that nothing is lost across the gap.
func (h *Hub) recovered(c *psConn) {
	h.reconnects.Add(1)
	h.mu.Lock()
	c.broken = false
	var names []string
	for name, s := range h.subs {
		if s.conn == c {
			names = append(names, name)
		}
	}
	h.mu.Unlock()
	for _, name := range names {
		if tenantID, channel, ok := keys.ParseChannel(name); ok {
			h.handlers.Deliver.Broadcast(tenantID, channel, &streamgate.Frame{Channel: channel, Resync: true})
		}
	}
	if len(names) > 0 {
		h.log.Info("pub/sub reconnected: streams catch up from history", "channels", len(names))
	}
	select {
	case h.reconnected <- struct{}{}:
	default: // one signal pending is enough
	}
}

// Reconnected is signalled after a pub/sub connection came back from a break: control
// messages sent during the break (a deleted key, a suspended tenant) were missed and must be
// re-checked.
func (h *Hub) Reconnected() <-chan struct{} { return h.reconnected }

func (h *Hub) dispatch(name, payload string) {
	switch name {
	case keys.Control():
		if h.handlers.Control != nil {
			h.handlers.Control([]byte(payload))
		}
		return
	case keys.Node(h.nodeID):
		if h.handlers.Node != nil {
			h.handlers.Node(payload)
		}
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
	h.handlers.Deliver.Broadcast(tenantID, channel, f)
}

// EncodeFrame turns a payload published on channel ("<id>\n<kind>\n<json>") into the SSE
// frame every subscriber on this node receives; on the Mercure channel, into the frame the
// node's Mercure index takes. A payload without an id is a live event that is neither kept nor
// replayed (presence): its frame has no id.
func EncodeFrame(channel, payload string) (*streamgate.Frame, bool) {
	id, rest, ok := strings.Cut(payload, "\n")
	if !ok {
		return nil, false
	}
	kind, data, ok := strings.Cut(rest, "\n")
	if !ok {
		return nil, false
	}
	if id == "" {
		if !streamgate.ValidEventName(kind) {
			return nil, false
		}
		return &streamgate.Frame{Channel: channel, Body: streamgate.AppendEvent(nil, kind, data)}, true
	}
	_, seq, ok := ParseID(id)
	if !ok {
		return nil, false
	}
	if channel == MercureChannel {
		return encodeMercure(id, seq, data), true
	}
	return streamgate.NewEventFrame(channel, id, seq, kind, data), true
}
