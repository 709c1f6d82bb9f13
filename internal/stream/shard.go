package stream

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	streamgate "github.com/streamgate/streamgate"
	"github.com/streamgate/streamgate/internal/keys"
)

// The hub on a Redis Cluster.
//
// Tenant channels use sharded pub/sub: an SSUBSCRIBE goes to the master of the channel's slot,
// and one SSUBSCRIBE may only name channels of one slot. The hub keeps one connection per
// master (not per slot: a cluster has 16,384 of them) and sends one SSUBSCRIBE per slot, from
// the slot's reconcile goroutine.
//
// When a slot moves to another master (resharding), the old master drops its subscribers with
// a sunsubscribe of each of the slot's channels; a SSUBSCRIBE that reaches a master that no
// longer serves the slot gets a MOVED reply instead. Either way the hub moves the whole slot:
// its channels are subscribed at the new master, and once Redis has confirmed them all, their
// streams catch up from history (a resync marker, as after a reconnect). Until then the slot's
// messages that still arrive are dropped, so that a stream never writes a live event ahead of
// one it is about to read from history.
//
// go-redis subscribes again by itself after a reconnect, but in one SSUBSCRIBE for all the
// connection's channels, which Redis refuses when they span slots (CROSSSLOT): the hub does it
// itself, slot by slot, and treats the refusal as noise.

// shardLocked returns the connection to the master client serves, made (without connecting
// yet) for its first slot; h.mu must be held.
func (h *Hub) shardLocked(client *redis.Client) *psConn {
	addr := client.Options().Addr
	c := h.shards[addr]
	if c == nil {
		// Bound to that master: with no channel given, go-redis sends nothing yet.
		c = &psConn{ps: client.SSubscribe(h.ctx), sharded: true, addr: addr,
			unsubs: make(map[string]int), waiters: make(map[uint64]chan struct{})}
		h.shards[addr] = c
	}
	return c
}

// master returns the client of the master serving the slot of the channel name. After a move,
// hint is where Redis said the slot went, or left the master it left: the client's view of the
// cluster is reloaded until it agrees, for a few seconds at most (then it is taken as it is,
// and a wrong master answers MOVED).
func (h *Hub) master(name, hint, left string) (*redis.Client, error) {
	wait := 20 * time.Millisecond
	for attempt := 0; ; attempt++ {
		ctx, cancel := context.WithTimeout(h.ctx, h.ConfirmTimeout)
		client, err := h.cc.MasterForKey(ctx, name)
		cancel()
		if err != nil {
			return nil, err
		}
		addr := client.Options().Addr
		if (hint == "" || addr == hint) && (left == "" || addr != left) || attempt == 15 {
			return client, nil
		}
		h.cc.ReloadState(h.ctx)
		select {
		case <-time.After(wait):
		case <-h.ctx.Done():
			return nil, h.ctx.Err()
		}
		wait = min(2*wait, 250*time.Millisecond)
	}
}

// resyncLocked owes the slot's streams a catch-up with marker, unless one is owed already; its
// SSUBSCRIBE is to be sent again. h.mu must be held.
func (h *Hub) resyncLocked(g *slotSubs, marker *streamgate.Frame) {
	if g.resync == nil {
		g.resync = &resync{marker: marker}
		h.resyncing.Add(1)
		return
	}
	g.resync.waiting = nil
}

// confirmed handles Redis's reply to an SSUBSCRIBE on c: the channel is live there. When it
// was the last the slot's catch-up waited for, the slot's streams are told to catch up, on this
// receive loop, before anything else it receives: the slot's messages come on it alone.
func (h *Hub) confirmed(c *psConn, name string) {
	h.mu.Lock()
	g := h.slots[hashSlot(name)]
	if g == nil || g.conn != c {
		h.mu.Unlock()
		return
	}
	if s := g.subs[name]; s != nil && s.listed {
		s.subscribed = true
	}
	r := g.resync
	if r == nil || r.waiting == nil || !r.waiting[name] {
		h.mu.Unlock()
		return
	}
	delete(r.waiting, name)
	if len(r.waiting) > 0 {
		h.mu.Unlock()
		return
	}
	g.resync = nil
	h.resyncing.Add(-1)
	var names []string
	for name, s := range g.subs {
		if s.refs > 0 {
			names = append(names, name)
		}
	}
	h.mu.Unlock()
	h.resync(names, r.marker)
}

// resync hands marker to the streams of the pub/sub channels names: they catch up from history.
func (h *Hub) resync(names []string, marker *streamgate.Frame) {
	for _, name := range names {
		if tenantID, channel, ok := keys.ParseChannel(name); ok {
			h.handlers.Deliver.Broadcast(tenantID, channel, marker)
		}
	}
}

// unsent takes back the count of SUNSUBSCRIBEs for names that could not be sent on c: no reply
// will come for them.
func (h *Hub) unsent(c *psConn, names []string) {
	if !c.sharded {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, name := range names {
		c.takeUnsub(name)
	}
}

// takeUnsub counts off one SUNSUBSCRIBE of name awaiting its reply on c, and reports whether
// there was one; h.mu must be held.
func (c *psConn) takeUnsub(name string) bool {
	switch n := c.unsubs[name]; {
	case n > 1:
		c.unsubs[name] = n - 1
	case n == 1:
		delete(c.unsubs, name)
	default:
		return false
	}
	return true
}

// unsubscribed handles a sunsubscribe on c: the reply to the hub's own SUNSUBSCRIBE, or Redis
// dropping a channel whose slot is no longer served by this master. The slot then moves.
func (h *Hub) unsubscribed(c *psConn, name string) {
	h.mu.Lock()
	if c.takeUnsub(name) {
		h.mu.Unlock()
		return
	}
	g := h.slots[hashSlot(name)]
	if g == nil || g.conn != c || g.subs[name] == nil || !g.subs[name].listed {
		h.mu.Unlock()
		return
	}
	h.log.Info("redis cluster: slot moved away from its master; its channels follow", "slot", g.slot, "master", c.addr)
	h.moveAndUnlock(g, "", c.addr)
}

// replyError handles an error reply on c: Redis refused a command sent on it. MOVED, to a
// SSUBSCRIBE or SUNSUBSCRIBE, says the slot is served by another master: its channels move
// there. Anything else (CROSSSLOT, when go-redis subscribed again to everything after a
// reconnect) only leaves the commands' channels unconfirmed, which reconcile sees.
func (h *Hub) replyError(c *psConn, err error) {
	slot, addr, ok := parseMoved(err.Error())
	if !ok || !c.sharded {
		if strings.HasPrefix(err.Error(), "CROSSSLOT") {
			h.log.Debug("redis pub/sub error reply", "master", c.addr, "err", err)
		} else {
			h.log.Warn("redis pub/sub error reply", "master", c.addr, "err", err)
		}
		return
	}
	h.mu.Lock()
	for name := range c.unsubs { // the SUNSUBSCRIBEs of the slot get no other reply
		if hashSlot(name) == slot {
			delete(c.unsubs, name)
		}
	}
	g := h.slots[slot]
	if g == nil || g.conn != c {
		h.mu.Unlock()
		return
	}
	h.log.Info("redis cluster: slot served by another master; its channels follow", "slot", slot, "from", c.addr, "to", addr)
	h.moveAndUnlock(g, addr, "")
}

// parseMoved reads "MOVED <slot> <host:port>".
func parseMoved(s string) (slot int, addr string, ok bool) {
	f := strings.Fields(s)
	if len(f) != 3 || f[0] != "MOVED" {
		return 0, "", false
	}
	slot, err := strconv.Atoi(f[1])
	if err != nil {
		return 0, "", false
	}
	return slot, f[2], true
}

// moveAndUnlock takes the slot off its connection, to be subscribed by reconcile at the master
// that serves it now (hint, or any but left), with a catch-up for its streams once confirmed
// there. h.mu must be held; it is released before the old connection is written to. It runs on
// the old connection's receive loop.
func (h *Hub) moveAndUnlock(g *slotSubs, hint, left string) {
	old, listed, gone := h.detachLocked(g, hint, left)
	if gone == nil && len(listed) > 0 {
		// Take them off go-redis's list, which it would send again after a reconnect. The old
		// master answers MOVED, or sunsubscribe should the slot be back: counted as ours.
		for _, name := range listed {
			old.unsubs[name]++
		}
	}
	h.mu.Unlock()
	if gone != nil {
		gone.ps.Close()
	} else if len(listed) > 0 {
		// Before reconcile may subscribe the slot again, should it come back here.
		if err := old.ps.SUnsubscribe(h.ctx, listed...); err != nil {
			h.unsent(old, listed)
		}
	}
	h.mu.Lock()
	h.kickLocked(g)
	h.mu.Unlock()
}

// detachLocked takes the slot off its connection (see moveAndUnlock). It returns that
// connection, the slot's channels that were listed on it, and the connection again when it has
// no slot left and must now be closed; h.mu must be held.
func (h *Hub) detachLocked(g *slotSubs, hint, left string) (old *psConn, listed []string, gone *psConn) {
	old = g.conn
	g.conn = nil
	g.hint, g.left = hint, left
	for name, s := range g.subs {
		if s.listed {
			listed = append(listed, name)
		}
		s.listed, s.subscribed, s.active = false, false, false
	}
	h.resyncLocked(g, &streamgate.Frame{Resync: true})
	h.moves.Add(1)
	old.slots--
	return old, listed, h.retireLocked(old)
}

// rehome runs while c cannot reconnect: the slots that the client's view of the cluster now
// puts on another master (after a failover) move there.
func (h *Hub) rehome(c *psConn) {
	type slotName struct {
		g    *slotSubs
		name string
	}
	var on []slotName
	h.mu.Lock()
	for _, g := range h.slots {
		if g.conn != c {
			continue
		}
		for name := range g.subs {
			on = append(on, slotName{g, name})
			break
		}
	}
	h.mu.Unlock()
	if len(on) == 0 {
		return
	}
	h.cc.ReloadState(h.ctx)
	for _, e := range on {
		ctx, cancel := context.WithTimeout(h.ctx, time.Second)
		client, err := h.cc.MasterForKey(ctx, e.name)
		cancel()
		if err != nil || client.Options().Addr == c.addr {
			continue
		}
		addr := client.Options().Addr
		h.mu.Lock()
		if e.g.conn != c || h.slots[e.g.slot] != e.g {
			h.mu.Unlock()
			continue
		}
		h.log.Info("redis cluster: slot served by another master; its channels follow", "slot", e.g.slot, "from", c.addr, "to", addr)
		// Not taken off the broken connection's list: that would wait for it to reconnect.
		_, _, gone := h.detachLocked(e.g, addr, "")
		h.kickLocked(e.g)
		h.mu.Unlock()
		if gone != nil {
			gone.ps.Close()
		}
	}
}

// resyncPending reports whether the slot of the tenant channel name owes its streams a
// catch-up, whose history read covers the message: the message is dropped.
func (h *Hub) resyncPending(name string) bool {
	if h.resyncing.Load() == 0 {
		return false
	}
	slot := hashSlot(name)
	h.mu.Lock()
	defer h.mu.Unlock()
	g := h.slots[slot]
	return g != nil && g.resync != nil
}
