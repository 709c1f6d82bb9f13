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
// sharded pub/sub (SSUBSCRIBE), so that a publish travels only to its shard, over one
// connection per master that serves a channel of the node (see shard.go); the control and node
// channels use ordinary pub/sub. Subscriptions survive a reconnect, and on a cluster they follow
// their slot when it moves to another master; either way the streams on them then catch up from
// history.
//
// Channels are handled by hash slot: a tenant's channels share its slot, and so its
// connection, its SUBSCRIBE commands and its catch-ups. No Redis command runs under the hub's
// lock: Acquire and Release only change a channel's reference count there, and one goroutine per
// slot at a time (reconcile) sends that slot's SUBSCRIBE, PING and UNSUBSCRIBE. A shard that
// does not answer so holds up the channels waiting for it, never the others, nor the receive
// loops that take the lock to mark a connection broken or recovered.
type Hub struct {
	rdb      redis.UniversalClient
	cc       *redis.ClusterClient // nil on a single Redis
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
	slots   map[int]*slotSubs        // hash slot → the channels of it the node holds
	shards  map[string]*psConn       // master address → sharded connection (cluster only)
	stopped bool                     // Run returned: no more commands
	ops     sync.WaitGroup           // reconcile goroutines, which Run waits for

	// resyncing counts the slots with a catch-up pending (slotSubs.resync): while it is above
	// zero, dispatch looks up the slot of every tenant message.
	resyncing atomic.Int32

	reconnected chan struct{} // signalled after a pub/sub connection came back

	breaks, reconnects, moves atomic.Int64
}

// HubStats counts the pub/sub connections' failures since the hub started.
type HubStats struct {
	// Breaks counts connections found dead: a receive failed, or a keepalive ping went
	// unanswered.
	Breaks int64
	// Reconnects counts connections that delivered again after a break (and whose streams
	// then caught up from history).
	Reconnects int64
	// Moves counts the times a slot's channels left their connection on a cluster, because
	// the slot moved to another master: they were subscribed at the new one and their streams
	// caught up from history.
	Moves int64
	// ShardConns is how many sharded pub/sub connections the hub holds now (cluster only): one
	// per master serving a channel of the node.
	ShardConns int
}

// Stats returns the hub's counts.
func (h *Hub) Stats() HubStats {
	h.mu.Lock()
	conns := len(h.shards)
	h.mu.Unlock()
	return HubStats{Breaks: h.breaks.Load(), Reconnects: h.reconnects.Load(), Moves: h.moves.Load(), ShardConns: conns}
}

// subscription is one tenant channel's state on this node; h.mu guards it. refs is what the
// node wants (subscribed while it is above zero); listed, subscribed, active and the attempt
// counters are what Redis has been told and has confirmed, which its slot's reconcile brings in
// line with refs.
type subscription struct {
	name string // the pub/sub channel
	refs int
	slot *slotSubs // for life
	// listed is set once SUBSCRIBE was sent on the slot's connection: the client then has the
	// channel in its list, until UNSUBSCRIBE takes it out. A move or (on a cluster) a reconnect
	// clears it, so that it is sent again.
	listed bool
	// subscribed is set (sharded only) when Redis confirmed the SSUBSCRIBE on the connection as
	// it is now: the receive loop saw its reply.
	subscribed bool
	// active is set once Redis confirmed the subscription on the connection as it is now (a
	// ping sent after it came back); a break clears it, so that the next Acquire confirms again.
	active bool
	// want asks reconcile for a confirmation attempt; confirming is set while one runs.
	want, confirming bool
	// err is the last confirmation attempt's failure; settled is closed (and replaced) when one
	// finishes, waking the Acquires waiting for it.
	err     error
	settled chan struct{}
}

// slotSubs is the node's channels of one hash slot; h.mu guards it. On a single Redis it only
// groups the work; on a cluster the slot is what moves between masters.
type slotSubs struct {
	slot int
	// conn carries the slot's channels: the main connection on a single Redis; on a cluster the
	// connection to the slot's master, nil until reconcile has found it and while the slot moves.
	conn *psConn
	subs map[string]*subscription
	busy bool // a reconcile goroutine owns the slot's commands
	// What reconcile's next pass looks at: every channel of the slot (all: after a move or a
	// reconnect), or only those whose reference count or confirmation changed since its last
	// (dirty), so that a node holding many channels of one slot (every channel, on a single
	// Redis) does not walk all of them, under the hub's lock, for each one that comes or goes.
	all   bool
	dirty map[string]*subscription
	// After a move, where Redis said the slot went (MOVED), or the master it left (a server
	// sunsubscribe): the client's view of the cluster must agree before the slot subscribes again.
	hint, left string
	// resync is the catch-up owed to the slot's streams since their subscriptions were lost
	// (moved or reconnected), or nil.
	resync *resync
}

// resync is a catch-up owed to the streams on a slot's channels: Redis stopped delivering them
// for a while (the slot moved to another master, or the connection broke), and until the slot's
// channels are all subscribed again, the messages of the slot that do arrive are dropped. Then
// marker goes to every channel of the slot, and the streams read from history what they missed:
// the dropped messages too, so that nothing comes out of order.
type resync struct {
	marker *streamgate.Frame
	// waiting holds the channels of the SSUBSCRIBEs sent since, whose confirmation has not
	// come; nil until one is sent. The marker goes when the last one comes.
	waiting map[string]bool
}

// psConn is one pub/sub connection with its own receive loop.
type psConn struct {
	ps      *redis.PubSub
	sharded bool
	// The sharded connection's master, the slots on it (it is closed with its last) and whether
	// the hub closed it; h.mu guards slots and closed.
	addr   string
	slots  int
	closed bool
	// unsubs counts, by channel, the SUNSUBSCRIBEs sent whose reply has not come (h.mu): any
	// other sunsubscribe is Redis dropping the channel because its slot moved.
	unsubs map[string]int
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
	cc, _ := rdb.(*redis.ClusterClient)
	hub := &Hub{
		rdb:            rdb,
		cc:             cc,
		nodeID:         nodeID,
		handlers:       h,
		log:            log,
		ConfirmTimeout: 5 * time.Second,
		idleCheck:      15 * time.Second,
		pongTimeout:    10 * time.Second,
		ctx:            ctx,
		cancel:         cancel,
		subs:           make(map[string]*subscription),
		slots:          make(map[int]*slotSubs),
		shards:         make(map[string]*psConn),
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
		g := h.slotLocked(name)
		s = &subscription{name: name, slot: g, settled: make(chan struct{})}
		g.subs[name] = s
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
	h.kickOneLocked(s)
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

// slotLocked returns the slot entry a tenant channel belongs to, made for its first channel;
// h.mu must be held. On a cluster its connection is found by reconcile, outside the lock.
func (h *Hub) slotLocked(name string) *slotSubs {
	slot := hashSlot(name)
	g := h.slots[slot]
	if g == nil {
		g = &slotSubs{slot: slot, subs: make(map[string]*subscription)}
		if h.cc == nil {
			g.conn = h.main
		}
		h.slots[slot] = g
	}
	return g
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
	h.kickOneLocked(s)
}

// kickLocked has the slot's reconcile look at every channel of it (their state changed
// together: a move, a reconnect), starting it unless it runs; h.mu must be held.
func (h *Hub) kickLocked(g *slotSubs) {
	g.all, g.dirty = true, nil
	h.startLocked(g)
}

// kickOneLocked has s's slot's reconcile look at s, whose reference count or wish for a
// confirmation changed, starting it unless it runs; h.mu must be held.
func (h *Hub) kickOneLocked(s *subscription) {
	h.touchLocked(s)
	h.startLocked(s.slot)
}

// pending is what the slot's next reconcile pass looks at: the channels touched since its
// last, or all of them; h.mu must be held.
func (g *slotSubs) pending() map[string]*subscription {
	if g.all {
		return g.subs
	}
	return g.dirty
}

// touchLocked puts s among what its slot's next reconcile pass looks at; h.mu must be held.
func (h *Hub) touchLocked(s *subscription) {
	g := s.slot
	if g.all {
		return
	}
	if g.dirty == nil {
		g.dirty = make(map[string]*subscription)
	}
	g.dirty[s.name] = s
}

// startLocked starts the slot's reconcile goroutine unless one runs; h.mu must be held.
func (h *Hub) startLocked(g *slotSubs) {
	if g.busy {
		return // it looks at what was touched before it ends
	}
	if h.stopped {
		h.failLocked(g, fmt.Errorf("%w: the hub has stopped", ErrUnavailable))
		return
	}
	g.busy = true
	h.ops.Add(1)
	go h.reconcile(g)
}

// reconcile sends the slot's commands until Redis is where the reference counts say: each
// channel subscribed and confirmed while someone waits for it, unsubscribed once nobody holds
// it. Channels that change together go in one command (a tenant's channels share its slot).
// Then it removes the entries of channels nobody holds and ends. It is the only goroutine that
// sends the slot's commands, so a Release racing a SUBSCRIBE in flight is simply followed by
// its UNSUBSCRIBE, and an Acquire racing an UNSUBSCRIBE by a new SUBSCRIBE.
//
// On a cluster it first finds the slot's master, when the slot is new or has moved, and it
// keeps trying, with a pause, while the node holds a channel Redis refused.
//
// The commands run on the hub's context, never a caller's: a write is bounded by the client's
// WriteTimeout and a dial by its DialTimeout, and a confirmation by ConfirmTimeout.
func (h *Hub) reconcile(g *slotSubs) {
	defer h.ops.Done()
	var pause time.Duration
	for {
		if pause > 0 {
			select {
			case <-time.After(pause):
			case <-h.ctx.Done():
			}
		}
		h.mu.Lock()
		if h.stopped {
			h.failLocked(g, fmt.Errorf("%w: the hub has stopped", ErrUnavailable))
			g.busy = false
			h.mu.Unlock()
			return
		}
		h.forgetLocked(g)
		if len(g.subs) == 0 {
			gone := h.dropSlotLocked(g)
			g.busy = false
			h.mu.Unlock()
			if gone != nil {
				gone.ps.Close()
			}
			return
		}
		c := g.conn
		if c == nil {
			// A cluster slot with no master yet: any of its channels names it.
			var name string
			for name = range g.subs {
				break
			}
			hint, left := g.hint, g.left
			h.mu.Unlock()
			client, err := h.master(name, hint, left)
			h.mu.Lock()
			switch {
			case h.stopped: // Run has closed the connections: make none
			case err != nil:
				h.failLocked(g, fmt.Errorf("%w: find the master of %s: %w", ErrUnavailable, name, err))
				pause = nextPause(pause)
			default:
				g.conn = h.shardLocked(client)
				g.conn.slots++
				g.hint, g.left = "", ""
			}
			h.mu.Unlock()
			continue
		}

		look := g.pending()
		g.all, g.dirty = false, nil
		var drop, add []string
		var confirm []*subscription
		for name, s := range look {
			switch {
			case s.refs == 0 && s.listed:
				drop = append(drop, name)
				s.listed, s.subscribed, s.active = false, false, false
				if c.sharded {
					c.unsubs[name]++
				}
			case s.refs > 0 && !s.listed:
				// go-redis lists the channel even when the SUBSCRIBE fails.
				add = append(add, name)
				s.listed, s.subscribed = true, false
			}
			if s.refs > 0 && s.want {
				s.want, s.confirming = false, true
				confirm = append(confirm, s)
			}
		}
		if len(drop)+len(add)+len(confirm) == 0 {
			g.busy = false
			h.mu.Unlock()
			return
		}
		if r := g.resync; r != nil && c.sharded && len(add) > 0 {
			// The catch-up waits for these to be confirmed; a channel held meanwhile is in a
			// later SSUBSCRIBE, and hears of the catch-up all the same.
			if r.waiting == nil {
				r.waiting = make(map[string]bool, len(add))
			}
			for _, name := range add {
				r.waiting[name] = true
			}
		}
		gen := c.gen
		h.mu.Unlock()

		if len(drop) > 0 {
			// An error here means the connection is gone; the reconnect will not subscribe
			// again to a channel the client no longer lists.
			if err := c.unsubscribe(h.ctx, drop...); err != nil {
				h.log.Debug("unsubscribe", "channels", drop, "err", err)
				h.unsent(c, drop)
			}
		}
		var err error
		if len(add) > 0 {
			if err = c.subscribe(h.ctx, add...); err != nil {
				err = fmt.Errorf("%w: %w", ErrUnavailable, err)
			}
			// A new master's connection receives once it has a channel, which connects it.
			h.startReceiving(c)
		}
		// On a cluster every SSUBSCRIBE is followed to its reply: Redis may refuse it (the slot
		// moved meanwhile), and then it is sent again.
		if err == nil && (len(confirm) > 0 || c.sharded && len(add) > 0) {
			err = c.sync(h.ctx, h.ConfirmTimeout)
		}

		h.mu.Lock()
		moved := g.conn != c
		refused := false
		if c.sharded && err == nil && !moved && c.gen == gen {
			for _, name := range add {
				// Refused: sent again after a pause while held, else taken off the client's list.
				if s := g.subs[name]; s != nil && s.listed && !s.subscribed && s.refs > 0 {
					s.listed = false
					refused = true
				}
			}
		}
		for _, s := range confirm {
			s.confirming = false
			switch {
			case moved:
				s.want = true // the slot moved meanwhile: confirmed at its new master instead
			case err != nil:
				h.settleLocked(s, err)
			case c.gen != gen:
				// Confirmed across a break, the subscription is real but no longer known live;
				// the streams on it catch up once it is back.
				h.settleLocked(s, nil)
			case c.sharded && !s.subscribed:
				h.settleLocked(s, fmt.Errorf("%w: Redis refused the subscription", ErrUnavailable))
			default:
				s.active = !c.broken
				h.settleLocked(s, nil)
			}
		}
		// The next pass looks again at what this one changed: a channel unsubscribed is
		// forgotten then, one refused or moved is sent again.
		for _, names := range [][]string{drop, add} {
			for _, name := range names {
				if s := g.subs[name]; s != nil {
					h.touchLocked(s)
				}
			}
		}
		for _, s := range confirm {
			h.touchLocked(s)
		}
		if moved || refused {
			pause = nextPause(pause)
		} else {
			pause = 0
		}
		h.mu.Unlock()
	}
}

// nextPause is how long reconcile waits before trying a slot again after prev.
func nextPause(prev time.Duration) time.Duration {
	return min(max(2*prev, 20*time.Millisecond), time.Second)
}

// settleLocked ends a confirmation attempt with err (nil: confirmed) and wakes its waiters.
func (h *Hub) settleLocked(s *subscription, err error) {
	s.err = err
	close(s.settled)
	s.settled = make(chan struct{})
}

// failLocked ends with err the confirmation the slot's waiting channels asked for.
func (h *Hub) failLocked(g *slotSubs, err error) {
	for _, s := range g.subs {
		if s.want {
			s.want = false
			h.settleLocked(s, err)
		}
	}
}

// forgetLocked removes the entries of the slot's channels that nobody holds and Redis no
// longer has, of those the next pass looks at; h.mu must be held.
func (h *Hub) forgetLocked(g *slotSubs) {
	for name, s := range g.pending() {
		if s.refs == 0 && !s.listed {
			delete(g.subs, name)
			delete(g.dirty, name)
			if h.subs[name] == s {
				delete(h.subs, name)
			}
		}
	}
}

// dropSlotLocked removes the entry of a slot with no channel left, and returns its connection
// when that must now be closed: a master's with no slot left; h.mu must be held.
func (h *Hub) dropSlotLocked(g *slotSubs) *psConn {
	if h.slots[g.slot] == g {
		delete(h.slots, g.slot)
	}
	if g.resync != nil {
		g.resync = nil
		h.resyncing.Add(-1)
	}
	c := g.conn
	g.conn = nil
	if c == nil || !c.sharded {
		return nil
	}
	c.slots--
	return h.retireLocked(c)
}

// retireLocked closes (after the caller unlocks: it returns it) a master's connection that
// carries no slot any more; h.mu must be held.
func (h *Hub) retireLocked(c *psConn) *psConn {
	if c.slots > 0 || c.closed {
		return nil
	}
	if h.shards[c.addr] == c {
		delete(h.shards, c.addr)
	}
	c.closed = true
	return c
}

func (c *psConn) subscribe(ctx context.Context, names ...string) error {
	if c.sharded {
		return c.ps.SSubscribe(ctx, names...)
	}
	return c.ps.Subscribe(ctx, names...)
}

func (c *psConn) unsubscribe(ctx context.Context, names ...string) error {
	if c.sharded {
		return c.ps.SUnsubscribe(ctx, names...)
	}
	return c.ps.Unsubscribe(ctx, names...)
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
		c.closed = true
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

// receive reads one connection until the hub stops or closes it. Errors are retried with
// backoff; the client reconnects by itself, and subscribes again to what the connection had
// (on a cluster the hub does that itself, slot by slot: see recovered).
func (h *Hub) receive(c *psConn) {
	backoff := 50 * time.Millisecond
	awaitingPong := false
	failures := 0
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
		if h.ctx.Err() != nil || h.closedConn(c, err) {
			return
		}
		var rerr redis.Error
		if err != nil && !errors.As(err, &rerr) {
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
			if failures++; c.sharded && failures%4 == 3 {
				// Still no answer: the master may be gone for good (a failover), and its slots
				// served elsewhere.
				h.rehome(c)
			}
			select {
			case <-time.After(backoff):
			case <-h.ctx.Done():
				return
			}
			backoff = min(backoff*2, 2*time.Second)
			continue
		}
		// Anything received, an error reply too, proves the connection alive.
		awaitingPong = false
		backoff = 50 * time.Millisecond
		failures = 0
		if c.broken {
			h.recovered(c)
		}
		if err != nil {
			h.replyError(c, err)
			continue
		}
		switch m := msg.(type) {
		case *redis.Message:
			h.dispatch(m.Channel, m.Payload)
		case *redis.Pong:
			c.pong(m.Payload)
		case *redis.Subscription:
			if c.sharded {
				switch m.Kind {
				case "ssubscribe":
					h.confirmed(c, m.Channel)
				case "sunsubscribe":
					h.unsubscribed(c, m.Channel)
				}
			}
		}
	}
}

// closedConn reports whether the receive of c failed because the hub closed it. A sharded
// connection's client may also be closed by go-redis, when its master left the cluster: that
// is a break, after which its slots find their new master (rehome).
func (h *Hub) closedConn(c *psConn, err error) bool {
	if !errors.Is(err, redis.ErrClosed) {
		return false
	}
	if !c.sharded {
		return true
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return c.closed || h.stopped
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
	clear(c.unsubs) // their replies are lost with the connection
	for _, g := range h.slots {
		if g.conn != c {
			continue
		}
		for _, s := range g.subs {
			s.active, s.subscribed = false, false
		}
	}
}

// recovered runs once a broken connection delivers again (the client has reconnected): every
// stream on its channels is told to fetch from history what was published in between, so that
// nothing is lost across the gap.
//
// On a single Redis the client has subscribed anew to everything the connection had, before
// anything it now receives: the streams are told at once. A sharded connection carries the
// channels of many slots, which go-redis sends in one SSUBSCRIBE that Redis refuses (CROSSSLOT):
// the hub subscribes again itself, one SSUBSCRIBE per slot, and each slot's streams are told
// once Redis has confirmed all of it (see resync).
func (h *Hub) recovered(c *psConn) {
	h.reconnects.Add(1)
	h.mu.Lock()
	c.broken = false
	if c.sharded {
		marker := &streamgate.Frame{Resync: true}
		n := 0
		for _, g := range h.slots {
			if g.conn != c {
				continue
			}
			held := false
			for _, s := range g.subs {
				if s.refs > 0 {
					s.listed, s.subscribed = false, false
					held = true
					n++
				}
			}
			if held {
				h.resyncLocked(g, marker)
				h.kickLocked(g)
			}
		}
		h.mu.Unlock()
		if n > 0 {
			h.log.Info("pub/sub reconnected: subscribing again, then streams catch up from history", "master", c.addr, "channels", n)
		}
		h.signalReconnected()
		return
	}
	var names []string
	for _, g := range h.slots {
		if g.conn != c {
			continue
		}
		for name := range g.subs {
			names = append(names, name)
		}
	}
	h.mu.Unlock()
	// One marker for the whole reconnect: the streams that get it can share their history
	// reads, whichever of the connection's channels brought it.
	h.resync(names, &streamgate.Frame{Resync: true})
	if len(names) > 0 {
		h.log.Info("pub/sub reconnected: streams catch up from history", "channels", len(names))
	}
	h.signalReconnected()
}

func (h *Hub) signalReconnected() {
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
	if !ok || h.resyncPending(name) {
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
