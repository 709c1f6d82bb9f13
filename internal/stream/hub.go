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
//
// No Redis command runs under the hub's lock: Acquire and Release only change a channel's
// reference count there, and one goroutine per channel at a time (reconcile) sends that
// channel's SUBSCRIBE, PING and UNSUBSCRIBE. A shard that does not answer so holds up the
// channels waiting for it, never the others, nor the receive loops that take the lock to mark
// a connection broken or recovered.
type Hub struct {
	rdb      redis.UniversalClient
	cluster  bool
	nodeID   string
	handlers Handlers
	log      *slog.Logger
	// ConfirmTimeout bounds how long Redis may take to confirm a subscription before the
	// Acquires waiting for it fail.
	ConfirmTimeout time.Duration
	// idleCheck is how long a pub/sub connection may be quiet before it is pinged, and
	// pongTimeout how long the ping may go unanswered before the connection counts as dead
	// and is replaced (followed by catch-up). See WithKeepalive.
	idleCheck, pongTimeout time.Duration

	// ctx lives until Run returns; receive loops and every Redis command run under it, never
	// under a caller's context (see reconcile).
	ctx    context.Context
	cancel context.CancelFunc
	main   *psConn // control, node and (on a single Redis) tenant channels

	mu      sync.Mutex
	subs    map[string]*subscription // pub/sub name → state
	shards  map[int]*psConn          // hash slot → sharded connection (cluster only)
	stopped bool                     // Run returned: no more commands
	ops     sync.WaitGroup           // reconcile goroutines, which Run waits for

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

// subscription is one tenant channel's state on this node; h.mu guards it. refs is what the
// node wants (subscribed while it is above zero); listed, active and the attempt counters are
// what Redis has been told and has confirmed, which reconcile brings in line with refs.
type subscription struct {
	refs int
	conn *psConn // chosen when the entry is made, kept until it is removed
	// listed is set once SUBSCRIBE was sent: the client then has the channel in its list and
	// subscribes to it again after every reconnect, until UNSUBSCRIBE takes it out.
	listed bool
	// active is set once Redis confirmed the subscription on the connection as it is now (a
	// ping sent after it came back); a break clears it, so that the next Acquire confirms again.
	active bool
	// want asks reconcile for a confirmation attempt; confirming is set while one runs.
	want, confirming bool
	busy             bool // a reconcile goroutine owns the channel's commands
	// attempts counts finished confirmation attempts and err is the last one's failure; settled
	// is closed (and replaced) when one finishes, waking the Acquires waiting for it.
	attempts uint64
	err      error
	settled  chan struct{}
}

// psConn is one pub/sub connection with its own receive loop.
type psConn struct {
	ps      *redis.PubSub
	sharded bool
	slot    int
	// names counts the subscription entries on it, h.mu held; a sharded connection goes with
	// its last one.
	names int
	// broken is set when a receive failed: what was published until it came back may be
	// missing. gen counts the breaks, so that a confirmation that straddled one is not taken
	// for a live subscription. Both change under h.mu, on the receive loop.
	broken bool
	gen    uint64

	receiving sync.Once // the receive loop is started

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
	hub.main = &psConn{ps: rdb.Subscribe(ctx), waiters: make(map[uint64]chan struct{})}
	hub.startReceiving(hub.main)
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

func (h *Hub) startReceiving(c *psConn) {
	c.receiving.Do(func() { go h.receive(c) })
}

// Acquire makes sure this node receives the tenant channel's events, and returns once Redis has
// confirmed the subscription, so that an event published after Acquire returns is delivered.
// Each successful Acquire must be paired with a Release; a failed one holds nothing.
//
// Concurrent Acquires of one channel wait for the same confirmation. ctx bounds only how long
// this caller waits: the commands themselves run on the hub's own context, because go-redis
// takes a command whose write deadline passed for a dead connection and replaces it, which
// would cost every channel on it a reconnect and a catch-up. It returns ctx's error when the
// caller gave up first, and an error wrapping ErrUnavailable when Redis did not confirm.
func (h *Hub) Acquire(ctx context.Context, tenantID, channel string) error {
	name := keys.Channel(tenantID, channel)
	h.mu.Lock()
	if h.stopped {
		h.mu.Unlock()
		return fmt.Errorf("subscribe %s: %w: the hub has stopped", channel, ErrUnavailable)
	}
	s := h.subs[name]
	if s == nil {
		s = &subscription{conn: h.connLocked(name), settled: make(chan struct{})}
		s.conn.names++
		h.subs[name] = s
	}
	s.refs++
	if s.refs == 1 && h.handlers.Occupancy != nil && channel != MercureChannel { // internal: occupies nothing
		h.handlers.Occupancy.Occupied(tenantID, channel)
	}
	if s.active {
		h.mu.Unlock()
		return nil
	}
	// A confirmation under way answers this caller too; otherwise one is asked for.
	if !s.confirming {
		s.want = true
	}
	h.kickLocked(name, s)
	settled := s.settled
	h.mu.Unlock()

	select {
	case <-settled:
	case <-ctx.Done():
		h.Release(tenantID, channel)
		return fmt.Errorf("subscribe %s: %w", channel, ctx.Err())
	}
	h.mu.Lock()
	err := s.err // settled closes only as an attempt finishes
	h.mu.Unlock()
	if err != nil {
		h.Release(tenantID, channel)
		return fmt.Errorf("subscribe %s: %w", channel, err)
	}
	return nil
}

// connLocked returns the connection a tenant channel belongs on; h.mu must be held. On a
// cluster, a slot's connection is made (without connecting yet) for its first channel: it
// connects with its first SSUBSCRIBE, to the master of that slot.
func (h *Hub) connLocked(name string) *psConn {
	if !h.cluster {
		return h.main
	}
	slot := hashSlot(name)
	c := h.shards[slot]
	if c == nil {
		// With no channel given, go-redis sends nothing yet.
		c = &psConn{ps: h.rdb.(*redis.ClusterClient).SSubscribe(h.ctx), sharded: true, slot: slot, waiters: make(map[uint64]chan struct{})}
		h.shards[slot] = c
	}
	return c
}

// Release drops one reference taken by Acquire; the last one unsubscribes, in the background:
// Release never waits for Redis.
func (h *Hub) Release(tenantID, channel string) {
	name := keys.Channel(tenantID, channel)
	h.mu.Lock()
	defer h.mu.Unlock()
	s := h.subs[name]
	if s == nil || s.refs == 0 {
		return
	}
	s.refs--
	if s.refs > 0 {
		return
	}
	if h.handlers.Occupancy != nil && channel != MercureChannel {
		h.handlers.Occupancy.Vacated(tenantID, channel)
	}
	h.kickLocked(name, s)
}

// kickLocked starts the channel's reconcile goroutine unless one runs; h.mu must be held.
func (h *Hub) kickLocked(name string, s *subscription) {
	if s.busy {
		return // it looks at refs and want again before it ends
	}
	if h.stopped {
		h.settleLocked(s, fmt.Errorf("%w: the hub has stopped", ErrUnavailable))
		return
	}
	s.busy = true
	h.ops.Add(1)
	go h.reconcile(name, s)
}

// reconcile sends the channel's commands, one at a time, until Redis is where the reference
// count says: subscribed and confirmed while someone waits for it, unsubscribed once nobody
// holds it. Then it removes the entry of a channel nobody holds and ends. It is the only
// goroutine that sends commands for the channel, so a Release racing a SUBSCRIBE in flight is
// simply followed by its UNSUBSCRIBE, and an Acquire racing an UNSUBSCRIBE by a new SUBSCRIBE.
//
// The commands run on the hub's context, never a caller's: a write is bounded by the client's
// WriteTimeout and a dial by its DialTimeout, and a confirmation by ConfirmTimeout.
func (h *Hub) reconcile(name string, s *subscription) {
	defer h.ops.Done()
	for {
		h.mu.Lock()
		c := s.conn
		switch {
		case s.refs == 0 && s.listed:
			s.listed, s.active = false, false
			if c.sharded && c.names == 1 {
				// The slot has no other channel here: its connection goes instead.
				h.forgetLocked(name, s)
				h.mu.Unlock()
				c.ps.Close()
				return
			}
			h.mu.Unlock()
			// An error here means the connection is gone; the reconnect will not subscribe
			// again to a channel the client no longer lists.
			if err := c.unsubscribe(h.ctx, name); err != nil {
				h.log.Debug("unsubscribe", "channel", name, "err", err)
			}
		case s.refs > 0 && s.want:
			s.want, s.confirming = false, true
			listed, gen := s.listed, c.gen
			s.listed = true // go-redis lists the channel even when the SUBSCRIBE fails
			h.mu.Unlock()
			var err error
			if !listed {
				if err = c.subscribe(h.ctx, name); err != nil {
					err = fmt.Errorf("%w: %w", ErrUnavailable, err)
				}
				// A new slot connection receives once it has a channel, which picks its node.
				h.startReceiving(c)
			}
			if err == nil {
				err = c.sync(h.ctx, h.ConfirmTimeout)
			}
			h.mu.Lock()
			s.confirming = false
			// Confirmed across a break, the subscription is real but no longer known live.
			s.active = err == nil && c.gen == gen && !c.broken
			h.settleLocked(s, err)
			h.mu.Unlock()
		default:
			s.busy = false
			var gone *psConn
			if s.refs == 0 {
				if h.forgetLocked(name, s) {
					gone = c
				}
			}
			h.mu.Unlock()
			if gone != nil {
				gone.ps.Close()
			}
			return
		}
	}
}

// settleLocked ends a confirmation attempt with err (nil: confirmed) and wakes its waiters.
func (h *Hub) settleLocked(s *subscription, err error) {
	s.attempts++
	s.err = err
	close(s.settled)
	s.settled = make(chan struct{})
}

// forgetLocked removes the entry of a channel nobody holds and reports whether its connection,
// a slot's with no channel left, must now be closed; h.mu must be held.
func (h *Hub) forgetLocked(name string, s *subscription) bool {
	if h.subs[name] == s {
		delete(h.subs, name)
	}
	c := s.conn
	c.names--
	if !c.sharded || c.names > 0 {
		return false
	}
	if h.shards[c.slot] == c {
		delete(h.shards, c.slot)
	}
	return true
}

func (c *psConn) subscribe(ctx context.Context, name string) error {
	if c.sharded {
		return c.ps.SSubscribe(ctx, name)
	}
	return c.ps.Subscribe(ctx, name)
}

func (c *psConn) unsubscribe(ctx context.Context, name string) error {
	if c.sharded {
		return c.ps.SUnsubscribe(ctx, name)
	}
	return c.ps.Unsubscribe(ctx, name)
}

// sync returns once Redis has processed every command sent on the connection so far: it sends
// a PING with a fresh payload and waits for its reply, which Redis sends in order. ctx must be
// the hub's (see Acquire); timeout bounds the wait for the reply.
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
		return fmt.Errorf("%w: %w", ErrUnavailable, ctx.Err())
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
// then it closes every connection and waits for the commands in flight to give up.
func (h *Hub) Run(ctx context.Context) error {
	if err := h.main.ps.Subscribe(h.ctx, keys.Control(), keys.Node(h.nodeID)); err != nil {
		h.log.Warn("subscribe control and node channels", "err", err)
	}
	select {
	case <-ctx.Done():
	case <-h.ctx.Done():
	}
	h.cancel()
	h.mu.Lock()
	h.stopped = true
	conns := []*psConn{h.main}
	for _, c := range h.shards {
		conns = append(conns, c)
	}
	h.mu.Unlock()
	// Closing waits for the client's own lock, which a dial in progress may hold: not under ours.
	for _, c := range conns {
		c.ps.Close()
	}
	h.ops.Wait()
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
		c.gen++
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
	// One marker for the whole reconnect: the streams that get it can share their history
	// reads, whichever of the connection's channels brought it.
	marker := &streamgate.Frame{Resync: true}
	for _, name := range names {
		if tenantID, channel, ok := keys.ParseChannel(name); ok {
			h.handlers.Deliver.Broadcast(tenantID, channel, marker)
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
