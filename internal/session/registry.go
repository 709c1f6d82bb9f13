// Package session holds one api node's live SSE sessions, grouped per tenant: subscription and
// connection caps, bounded per-session buffers, drop counting and eviction of slow clients,
// token-expiry, heartbeat and stale sweeps, and the node's delivery statistics.
//
// It carries over the Forge session server's semantics (evict after 10 consecutive or 50 total
// drops with lagging first, expired tokens evicted with auth_failed), with every index kept per
// tenant so one tenant's channel names never reach another's sessions. It knows neither Redis
// nor HTTP: the fan-out loop calls Broadcast, the SSE handler registers a Session and runs its
// writer loop on it.
package session

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	streamgate "github.com/streamgate/streamgate"
	"github.com/streamgate/streamgate/internal/memory"
)

var (
	// ErrNotFound means no live session has the id on this node.
	ErrNotFound = errors.New("session not found")
	// ErrDuplicate means a session with the id is already registered; ids must be unique.
	ErrDuplicate = errors.New("session already exists")
	// ErrLimitExceeded means a tenant cap refused the request; the wrapping message names the
	// cap and its value.
	ErrLimitExceeded = errors.New("limit exceeded")
	// ErrFull means the session's buffer was full: the frame was dropped for it and counted.
	ErrFull = errors.New("session buffer full")
	// ErrEvicted means this drop crossed a threshold: the session got lagging and was removed.
	ErrEvicted = errors.New("session evicted")
	// ErrTokenExpired means the session's token had expired: it got auth_failed and was removed.
	ErrTokenExpired = errors.New("token expired")
	// ErrClosed means the session was already closed (its writer is gone); it was removed.
	ErrClosed = errors.New("session closed")
)

// Defaults for the zero fields of Config.
const (
	DefaultBufferSize          = 256
	DefaultMaxConsecutiveDrops = 10
	DefaultMaxTotalDrops       = 50
	DefaultHeartbeatInterval   = 15 * time.Second
	DefaultMaxIdle             = 2 * time.Minute
	DefaultSweepInterval       = time.Second
	DefaultTokenWarning        = time.Minute
)

// Config tunes a Registry. Zero (or negative) fields take the defaults.
type Config struct {
	// BufferSize is how many frames a session may hold unwritten before sends to it drop. A
	// pub/sub reconnect's catch-up marker comes on top and is never dropped (see mark).
	BufferSize int
	// MaxConsecutiveDrops is how many drops in a row a session survives; the next evicts it.
	MaxConsecutiveDrops int
	// MaxTotalDrops is how many drops a session survives over its life; the next evicts it.
	MaxTotalDrops int
	// HeartbeatInterval is how long a session may go without a write before a ping is queued,
	// so proxies keep the stream open and the writer notices a dead peer.
	HeartbeatInterval time.Duration
	// MaxIdle is how long a writer may go without completing a write before stale cleanup
	// removes its session; with heartbeats, only a wedged writer gets there.
	MaxIdle time.Duration
	// SweepInterval is how often Run sweeps (token expiry, heartbeat, stale cleanup). It bounds
	// how late an expired token is noticed on a quiet channel.
	SweepInterval time.Duration
	// TokenWarning is how long before its token expires a session gets token_expiring, once
	// per token, so that the client can refresh it in time.
	TokenWarning time.Duration
	// Now is the clock; tests inject one. Default time.Now.
	Now func() time.Time
}

func (c Config) withDefaults() Config {
	if c.BufferSize <= 0 {
		c.BufferSize = DefaultBufferSize
	}
	if c.MaxConsecutiveDrops <= 0 {
		c.MaxConsecutiveDrops = DefaultMaxConsecutiveDrops
	}
	if c.MaxTotalDrops <= 0 {
		c.MaxTotalDrops = DefaultMaxTotalDrops
	}
	if c.HeartbeatInterval <= 0 {
		c.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if c.MaxIdle <= 0 {
		c.MaxIdle = DefaultMaxIdle
	}
	if c.SweepInterval <= 0 {
		c.SweepInterval = DefaultSweepInterval
	}
	if c.TokenWarning <= 0 {
		c.TokenWarning = DefaultTokenWarning
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Registry is one node's live sessions, grouped per tenant. It is safe for concurrent use:
// one fan-out goroutine broadcasting, many writers taking, handlers registering and removing,
// and the sweeper, all at once.
//
// Locking: mu guards the maps, the reverse index and every Session.subs; each Session's own
// mutex guards its queue and drop counts. Whoever needs both takes mu first.
type Registry struct {
	nodeID string
	cfg    Config

	mu       sync.RWMutex
	sessions map[string]*Session
	tenants  map[string]*tenant
	high     int // the most sessions held since sessions was last sized (memory.Shrink)
}

// tenant is one tenant's part of the node. It is never deleted, so its counters survive its
// sessions and a Session may keep a pointer to it without locking.
type tenant struct {
	id       string
	sessions map[string]*Session
	// high and highChannels are the most sessions and channels held since their maps were
	// last sized (memory.Shrink).
	high, highChannels int
	// channels is the reverse index: who on this node listens to each of the tenant's channels.
	// A slice rather than a set, because Broadcast walks it for every event.
	channels      map[string][]*Session
	subscriptions int

	delivered atomic.Uint64
	dropped   atomic.Uint64
	evicted   atomic.Uint64
}

// NewRegistry returns an empty registry for the node nodeID.
func NewRegistry(nodeID string, cfg Config) *Registry {
	return &Registry{
		nodeID:   nodeID,
		cfg:      cfg.withDefaults(),
		sessions: make(map[string]*Session),
		tenants:  make(map[string]*tenant),
	}
}

// Len returns how many sessions the node holds.
func (r *Registry) Len() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.sessions)
}

// NodeID returns the node's id, as given to NewRegistry.
func (r *Registry) NodeID() string { return r.nodeID }

// Config returns the configuration in effect, defaults filled in.
func (r *Registry) Config() Config { return r.cfg }

func (r *Registry) now() int64 { return r.cfg.Now().UnixNano() }

// Register adds a connection subscribed to channels (duplicates count once) and returns the
// Session its writer runs on. It registers nothing and returns an error wrapping
// ErrLimitExceeded when the tenant already has maxConnections sessions on this node or when
// there are more than maxSubscriptions channels (either cap <= 0 means unlimited), and one
// wrapping ErrDuplicate when the id is taken. The caller must Remove the session when its
// writer ends, whatever ended it.
func (r *Registry) Register(info Info, channels []string, maxConnections, maxSubscriptions int) (*Session, error) {
	if info.ID == "" || info.TenantID == "" {
		return nil, errors.New("register session: empty session or tenant id")
	}
	chans := slices.Clone(channels)
	slices.Sort(chans)
	chans = slices.Compact(chans)
	if maxSubscriptions > 0 && len(chans) > maxSubscriptions {
		return nil, fmt.Errorf("at most %d subscriptions per session: %w", maxSubscriptions, ErrLimitExceeded)
	}
	now := r.cfg.Now()
	s := &Session{
		reg:         r,
		info:        info,
		connectedAt: now,
		expires:     !info.TokenExp.IsZero(),
		exp:         info.TokenExp.UnixNano(),
		ready:       make(chan struct{}, 1),
		done:        make(chan struct{}),
		subs:        make([]sub, len(chans)),
	}
	s.lastWrite.Store(now.UnixNano())

	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.sessions[info.ID]; ok {
		return nil, fmt.Errorf("register session %s: %w", info.ID, ErrDuplicate)
	}
	t := r.tenants[info.TenantID]
	if t == nil {
		t = &tenant{
			id:       info.TenantID,
			sessions: make(map[string]*Session),
			channels: make(map[string][]*Session),
		}
		r.tenants[info.TenantID] = t
	}
	if maxConnections > 0 && len(t.sessions) >= maxConnections {
		return nil, fmt.Errorf("at most %d connections per tenant: %w", maxConnections, ErrLimitExceeded)
	}
	s.tenant = t
	for i, ch := range chans {
		s.subs[i] = sub{channel: ch, pos: r.index(t, ch, s)}
	}
	t.subscriptions += len(chans)
	t.sessions[info.ID] = s
	r.sessions[info.ID] = s
	return s, nil
}

// Remove takes a session out of the registry and closes it without a final frame if it is
// still open; it returns the channels the session had, or nil if the id is unknown. It is
// idempotent. A session the registry already evicted is unknown here: its writer learns its
// channels from Session.Channels.
func (r *Registry) Remove(id string) []string {
	r.mu.Lock()
	s := r.sessions[id]
	if s == nil {
		r.mu.Unlock()
		return nil
	}
	r.detachLocked(s)
	chans := s.channelsLocked()
	r.mu.Unlock()
	s.close(nil)
	if chans == nil {
		chans = []string{}
	}
	return chans
}

// Leave takes s itself out of the registry and closes it without a final frame. Unlike Remove
// it never touches a newer session that took over s's id (a resume on the same node).
func (r *Registry) Leave(s *Session) {
	r.detach(s)
	s.close(nil)
}

// Subscribe adds channel to a live session. It returns added false when the session already
// had it, ErrNotFound for an unknown or closed session, and an error wrapping ErrLimitExceeded
// when the session already has maxSubscriptions channels (<= 0 means unlimited).
func (r *Registry) Subscribe(id, channel string, maxSubscriptions int) (added bool, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.subscribeLocked(r.sessions[id], channel, maxSubscriptions)
}

// Subscribe is Registry.Subscribe for this very session: ErrNotFound once it is closed or a
// newer session took over its id (a resume on the same node).
func (s *Session) Subscribe(channel string, maxSubscriptions int) (added bool, err error) {
	r := s.reg
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.sessions[s.info.ID] != s {
		return false, ErrNotFound
	}
	return r.subscribeLocked(s, channel, maxSubscriptions)
}

func (r *Registry) subscribeLocked(s *Session, channel string, maxSubscriptions int) (bool, error) {
	if s == nil || s.isClosed() {
		return false, ErrNotFound
	}
	i, ok := s.findSub(channel)
	if ok {
		return false, nil
	}
	if maxSubscriptions > 0 && len(s.subs) >= maxSubscriptions {
		return false, fmt.Errorf("at most %d subscriptions per session: %w", maxSubscriptions, ErrLimitExceeded)
	}
	s.subs = slices.Insert(s.subs, i, sub{channel: channel, pos: r.index(s.tenant, channel, s)})
	s.tenant.subscriptions++
	return true, nil
}

// Unsubscribe removes channel from a session. It returns removed false when the session did
// not have it, and ErrNotFound for an unknown session.
func (r *Registry) Unsubscribe(id, channel string) (removed bool, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.unsubscribeLocked(r.sessions[id], channel)
}

// Unsubscribe is Registry.Unsubscribe for this very session: ErrNotFound once a newer session
// took over its id or it left the registry.
func (s *Session) Unsubscribe(channel string) (removed bool, err error) {
	r := s.reg
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.sessions[s.info.ID] != s {
		return false, ErrNotFound
	}
	return r.unsubscribeLocked(s, channel)
}

func (r *Registry) unsubscribeLocked(s *Session, channel string) (bool, error) {
	if s == nil {
		return false, ErrNotFound
	}
	i, ok := s.findSub(channel)
	if !ok {
		return false, nil
	}
	r.unindex(s.tenant, channel, s.subs[i].pos)
	s.subs = slices.Delete(s.subs, i, i+1)
	s.tenant.subscriptions--
	return true, nil
}

// Send enqueues f for one session without ever blocking. It returns ErrNotFound for an unknown
// id; ErrTokenExpired when the token has expired (the session is closed with auth_failed and
// removed); ErrClosed when the session was already closed (it is removed); ErrFull when the
// buffer is full (f is dropped for this session and counted); and ErrEvicted when that drop
// crossed MaxConsecutiveDrops or MaxTotalDrops (the session is closed with lagging and
// removed). A successful send resets the consecutive drops.
func (r *Registry) Send(id string, f *streamgate.Frame) error {
	r.mu.RLock()
	s := r.sessions[id]
	r.mu.RUnlock()
	if s == nil {
		return ErrNotFound
	}
	o := s.offer(f, r.now(), &r.cfg)
	var c tally
	c.add(o)
	c.flush(s.tenant)
	if o.leaving() {
		r.detach(s)
	}
	return o.err()
}

// tally counts outcomes locally so that a broadcast to thousands of sessions touches the
// shared counters once, not once per drop.
type tally struct{ dropped, evicted uint64 }

func (c *tally) add(o outcome) {
	switch o {
	case full:
		c.dropped++
	case evicted:
		c.dropped++
		c.evicted++
	case expired:
		c.evicted++
	}
}

func (c *tally) flush(t *tenant) {
	if c.dropped > 0 {
		t.dropped.Add(c.dropped)
	}
	if c.evicted > 0 {
		t.evicted.Add(c.evicted)
	}
}

// Broadcast offers f, with Send's semantics, to every session of tenantID subscribed to
// channel, and returns how many enqueued it. It never blocks on a session: a full buffer
// drops for that session alone. Sessions evicted during the walk are removed after it, so the
// walk holds only the read lock.
func (r *Registry) Broadcast(tenantID, channel string, f *streamgate.Frame) int {
	return r.BroadcastAny(tenantID, []string{channel}, f)
}

// BroadcastAny is Broadcast to the sessions subscribed to at least one of channels: each gets
// f once, however many of the channels it has.
func (r *Registry) BroadcastAny(tenantID string, channels []string, f *streamgate.Frame) int {
	now := r.now()
	var (
		n    int
		c    tally
		gone []*Session
		seen map[*Session]struct{} // sessions on several of the channels, offered f already
	)
	r.mu.RLock()
	t := r.tenants[tenantID]
	if t == nil {
		r.mu.RUnlock()
		return 0
	}
	for i, ch := range channels {
		for _, s := range t.channels[ch] {
			if len(channels) > 1 && len(s.subs) > 1 {
				if _, dup := seen[s]; dup {
					continue
				}
				if i < len(channels)-1 {
					if seen == nil {
						seen = make(map[*Session]struct{})
					}
					seen[s] = struct{}{}
				}
			}
			switch o := s.offer(f, now, &r.cfg); o {
			case queued:
				n++
			case full:
				c.add(o)
			default:
				c.add(o)
				gone = append(gone, s)
			}
		}
	}
	r.mu.RUnlock()
	c.flush(t)
	for _, s := range gone {
		r.detach(s)
	}
	return n
}

// Close closes one session with final (nil for none) and removes it; it returns false if the
// id is unknown. It does not count as an eviction.
func (r *Registry) Close(id string, final *streamgate.Frame) bool {
	r.mu.Lock()
	s := r.sessions[id]
	if s == nil {
		r.mu.Unlock()
		return false
	}
	r.detachLocked(s)
	r.mu.Unlock()
	s.close(final)
	return true
}

// CloseTenant closes every session of tenantID with final and removes them (tenant suspended);
// it returns how many.
func (r *Registry) CloseTenant(tenantID string, final *streamgate.Frame) int {
	return r.closeWhere(final, func(s *Session) bool { return s.info.TenantID == tenantID })
}

// CloseKey closes the sessions of tenantID whose token was signed with keyID and removes them
// (signing key deleted); it returns how many.
func (r *Registry) CloseKey(tenantID, keyID string, final *streamgate.Frame) int {
	return r.closeWhere(final, func(s *Session) bool {
		return s.info.TenantID == tenantID && s.info.KeyID == keyID
	})
}

// CloseAll closes every session with final and removes them (node shutdown); it returns how
// many.
func (r *Registry) CloseAll(final *streamgate.Frame) int {
	return r.closeWhere(final, func(*Session) bool { return true })
}

func (r *Registry) closeWhere(final *streamgate.Frame, match func(*Session) bool) int {
	var victims []*Session
	r.mu.Lock()
	for _, s := range r.sessions {
		if match(s) {
			victims = append(victims, s)
		}
	}
	for _, s := range victims {
		r.detachLocked(s)
	}
	r.mu.Unlock()
	// Closing wakes the writers; do it outside the lock so they find the registry free.
	for _, s := range victims {
		s.close(final)
	}
	return len(victims)
}

// ExpireTokens closes every session whose token has expired with auth_failed ("token
// expired"), removes them, counts them as evicted and returns their ids, sorted. Send and
// Broadcast already catch expiry on a busy channel; this catches it on a quiet one.
func (r *Registry) ExpireTokens() []string {
	now := r.now()
	victims := r.collect(func(s *Session) bool { return s.expires && now >= s.exp })
	var ids []string
	for _, s := range victims {
		if s.expireIfDue(now) {
			s.tenant.evicted.Add(1)
			ids = append(ids, s.info.ID)
		}
		r.detach(s)
	}
	slices.Sort(ids)
	return ids
}

// WarnTokens sends token_expiring to every session whose token expires within TokenWarning and
// was not warned yet, and returns their ids, sorted. The notice goes through the session's
// buffer like any frame: a full buffer drops it (and counts the drop).
func (r *Registry) WarnTokens() []string {
	now := r.now()
	lead := int64(r.cfg.TokenWarning)
	victims := r.collect(func(s *Session) bool { return s.expires && now >= s.exp-lead && !s.warned.Load() })
	var ids []string
	for _, s := range victims {
		if !s.warned.CompareAndSwap(false, true) {
			continue
		}
		r.mu.RLock()
		exp, due := s.info.TokenExp, s.expires && now >= s.exp-lead
		r.mu.RUnlock()
		if !due {
			s.warned.Store(false) // refreshed since the look
			continue
		}
		var c tally
		o := s.offer(TokenExpiring(exp), now, &r.cfg)
		c.add(o)
		c.flush(s.tenant)
		if o.leaving() {
			r.detach(s)
		}
		ids = append(ids, s.info.ID)
	}
	slices.Sort(ids)
	return ids
}

// CleanupStale removes, without a final frame, every session whose writer has not completed
// a write (or, failing that, registered) within maxIdle, and returns their ids, sorted. With
// heartbeats flowing, only a writer wedged on its socket goes that long.
func (r *Registry) CleanupStale(maxIdle time.Duration) []string {
	cutoff := r.now() - int64(maxIdle)
	victims := r.collect(func(s *Session) bool { return s.lastWrite.Load() < cutoff })
	var ids []string
	for _, s := range victims {
		if r.detach(s) {
			s.close(nil)
			ids = append(ids, s.info.ID)
		}
	}
	slices.Sort(ids)
	return ids
}

// Heartbeat queues streamgate.Ping to every session with no write for HeartbeatInterval less
// one SweepInterval, so that with a sweep every SweepInterval no session goes longer than
// HeartbeatInterval without a write. A session with something already pending gets nothing
// (that write will do), so a full buffer is never a drop here.
func (r *Registry) Heartbeat() {
	cutoff := r.now() - int64(r.cfg.HeartbeatInterval-min(r.cfg.SweepInterval, r.cfg.HeartbeatInterval/2))
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, s := range r.sessions {
		if s.lastWrite.Load() <= cutoff {
			s.ping()
		}
	}
}

// Run sweeps every SweepInterval (WarnTokens, ExpireTokens, Heartbeat, CleanupStale(MaxIdle)) until ctx
// ends, then returns nil. One sweeper serves every session, so sessions need no timers.
func (r *Registry) Run(ctx context.Context) error {
	tick := time.NewTicker(r.cfg.SweepInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			r.WarnTokens()
			r.ExpireTokens()
			r.Heartbeat()
			r.CleanupStale(r.cfg.MaxIdle)
		}
	}
}

// collect walks every session under the read lock; a sweep that finds nothing allocates nothing.
func (r *Registry) collect(match func(*Session) bool) []*Session {
	var out []*Session
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, s := range r.sessions {
		if match(s) {
			out = append(out, s)
		}
	}
	return out
}

// detach takes s out of the registry; it reports false if it was already out.
func (r *Registry) detach(s *Session) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.detachLocked(s)
}

func (r *Registry) detachLocked(s *Session) bool {
	if r.sessions[s.info.ID] != s {
		return false
	}
	delete(r.sessions, s.info.ID)
	r.sessions = memory.Shrink(r.sessions, &r.high)
	t := s.tenant
	delete(t.sessions, s.info.ID)
	t.sessions = memory.Shrink(t.sessions, &t.high)
	for _, x := range s.subs {
		r.unindex(t, x.channel, x.pos)
	}
	t.subscriptions -= len(s.subs)
	// s.subs stays as it was: Session.Channels still answers for the departed session.
	return true
}

// index appends s to the subscribers of channel and returns its position; r.mu must be held.
func (r *Registry) index(t *tenant, channel string, s *Session) int {
	list := t.channels[channel]
	t.channels[channel] = append(list, s)
	return len(list)
}

// unindex swap-removes the subscriber at pos from channel; r.mu must be held.
func (r *Registry) unindex(t *tenant, channel string, pos int) {
	list := t.channels[channel]
	last := len(list) - 1
	if pos != last {
		moved := list[last]
		list[pos] = moved
		i, _ := moved.findSub(channel)
		moved.subs[i].pos = pos
	}
	list[last] = nil
	list = list[:last]
	switch {
	case len(list) == 0:
		delete(t.channels, channel)
		t.channels = memory.Shrink(t.channels, &t.highChannels)
		return
	case cap(list) > 64 && len(list) < cap(list)/4:
		// A channel that once had a crowd keeps no crowd-sized array.
		list = slices.Clip(slices.Clone(list))
		for i, s := range list {
			j, _ := s.findSub(channel)
			s.subs[j].pos = i
		}
	}
	t.channels[channel] = list
}

// Channels returns the channels of tenantID that have at least one session on this node,
// sorted.
func (r *Registry) Channels(tenantID string) []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	t := r.tenants[tenantID]
	if t == nil || len(t.channels) == 0 {
		return nil
	}
	out := make([]string, 0, len(t.channels))
	for ch := range t.channels {
		out = append(out, ch)
	}
	slices.Sort(out)
	return out
}

// Subscribers returns how many sessions of tenantID on this node listen to channel.
func (r *Registry) Subscribers(tenantID, channel string) int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if t := r.tenants[tenantID]; t != nil {
		return len(t.channels[channel])
	}
	return 0
}

// TenantStats is one tenant's part of a node: gauges of what is open now, and counters since
// the node started.
type TenantStats struct {
	Connections, Subscriptions  int
	Delivered, Dropped, Evicted uint64
}

// NodeStats is the node's totals and its tenants' parts. Tenants includes a tenant with no
// sessions left but counters to report.
type NodeStats struct {
	NodeID                      string
	Connections, Subscriptions  int
	Delivered, Dropped, Evicted uint64
	Tenants                     map[string]TenantStats
}

func (t *tenant) stats() TenantStats {
	return TenantStats{
		Connections:   len(t.sessions),
		Subscriptions: t.subscriptions,
		Delivered:     t.delivered.Load(),
		Dropped:       t.dropped.Load(),
		Evicted:       t.evicted.Load(),
	}
}

// Stats returns the node's statistics.
func (r *Registry) Stats() NodeStats {
	r.mu.RLock()
	defer r.mu.RUnlock()
	ns := NodeStats{NodeID: r.nodeID, Tenants: make(map[string]TenantStats, len(r.tenants))}
	for id, t := range r.tenants {
		ts := t.stats()
		ns.Tenants[id] = ts
		ns.Connections += ts.Connections
		ns.Subscriptions += ts.Subscriptions
		ns.Delivered += ts.Delivered
		ns.Dropped += ts.Dropped
		ns.Evicted += ts.Evicted
	}
	return ns
}

// TenantStats returns one tenant's statistics on this node; zero for a tenant never seen.
func (r *Registry) TenantStats(tenantID string) TenantStats {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if t := r.tenants[tenantID]; t != nil {
		return t.stats()
	}
	return TenantStats{}
}

// SessionInfo describes a live session for listings.
// Credentials lists, per tenant with sessions on this node, the distinct key ids (signing keys
// or identity providers) its sessions were opened with: what a periodic re-check of
// revocations must look at.
func (r *Registry) Credentials() map[string][]string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make(map[string][]string, len(r.tenants))
	for id, t := range r.tenants {
		for _, s := range t.sessions {
			if !slices.Contains(out[id], s.info.KeyID) {
				out[id] = append(out[id], s.info.KeyID)
			}
		}
	}
	return out
}

type SessionInfo struct {
	ID, TenantID, Sub, KeyID string
	ConnectedAt              time.Time
	Channels                 []string // sorted
	Dropped                  uint64
}

func (s *Session) describeLocked() SessionInfo {
	return SessionInfo{
		ID:          s.info.ID,
		TenantID:    s.info.TenantID,
		Sub:         s.info.Sub,
		KeyID:       s.info.KeyID,
		ConnectedAt: s.connectedAt,
		Channels:    s.channelsLocked(),
		Dropped:     s.dropped(),
	}
}

// Sessions lists the tenant's sessions on this node, oldest first (ties by id).
func (r *Registry) Sessions(tenantID string) []SessionInfo {
	r.mu.RLock()
	t := r.tenants[tenantID]
	var out []SessionInfo
	if t != nil {
		out = make([]SessionInfo, 0, len(t.sessions))
		for _, s := range t.sessions {
			out = append(out, s.describeLocked())
		}
	}
	r.mu.RUnlock()
	slices.SortFunc(out, func(a, b SessionInfo) int {
		return cmp.Or(a.ConnectedAt.Compare(b.ConnectedAt), cmp.Compare(a.ID, b.ID))
	})
	return out
}

// Lookup describes one live session; false if the id is unknown.
func (r *Registry) Lookup(id string) (SessionInfo, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	s := r.sessions[id]
	if s == nil {
		return SessionInfo{}, false
	}
	return s.describeLocked(), true
}
