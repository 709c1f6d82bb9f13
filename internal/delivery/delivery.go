// Package delivery is the life of an end user's stream on one node, free of HTTP: open (a
// verified identity, the requested channels and a cursor), authorize, register, replay or resume,
// live, catch-up after the hub's pub/sub connection broke, changes through the sessions API,
// token refresh, presence on the channels that keep it, and close. A transport (the SSE endpoint) parses its request, calls Open, and hands Serve a Sink
// that puts bytes on its connection.
package delivery

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"runtime"
	"sync"
	"time"

	streamgate "github.com/streamgate/streamgate"
	"github.com/streamgate/streamgate/internal/cluster"
	"github.com/streamgate/streamgate/internal/memory"
	"github.com/streamgate/streamgate/internal/presence"
	"github.com/streamgate/streamgate/internal/session"
	"github.com/streamgate/streamgate/internal/stream"
	"github.com/streamgate/streamgate/internal/tenant"
)

// Errors of the lifecycle; wrapping messages say what to do.
var (
	// ErrInvalid means the request is malformed (a Last-Event-ID this service never issued).
	ErrInvalid = errors.New("invalid request")
	// ErrForbidden means the identity may not do this: a channel its token does not grant, or a
	// session or cursor of another user.
	ErrForbidden = errors.New("forbidden")
	// ErrNotFound means no such session, or it just ended.
	ErrNotFound = errors.New("session not found")
	// ErrShuttingDown means the node is stopping and opens no new streams.
	ErrShuttingDown = errors.New("node shutting down")
)

// Sink is where a stream's bytes go: the pieces of one batch of frames, to be written and
// flushed together. A Sink is used by one goroutine at a time.
type Sink interface {
	WriteBatch(pieces [][]byte) error
}

// A TrySink can also write a batch without ever blocking, so that the node's flushers (see
// flusher) write live frames to many streams from a few goroutines. What the connection does
// not take at once the sink keeps, in order, and writes before anything else: in the next
// WriteBatch, or in Flush.
type TrySink interface {
	Sink
	// TryWriteBatch writes pieces as far as the connection takes them now; done is false when
	// the sink kept some (a full socket buffer, a batch too large to try), which Flush writes.
	TryWriteBatch(pieces [][]byte) (done bool, err error)
	// Flush writes what the sink kept, blocking as WriteBatch does.
	Flush() error
}

// History is what the lifecycle reads from the tenants' event logs.
type History interface {
	Snapshot(ctx context.Context, tenantID string, channels []string, after string, w stream.Window, states bool) (stream.Snapshot, error)
	Read(ctx context.Context, tenantID string, channels []string, after, upto string, limit int) ([]stream.Entry, bool, error)
	State(ctx context.Context, tenantID, channel string) (stream.Entry, bool, error)
	Page(ctx context.Context, tenantID, channel, epoch, after string, limit int, w stream.Window) (stream.Page, error)
}

// Hub makes this node receive a tenant channel's live events, reference-counted.
type Hub interface {
	Acquire(ctx context.Context, tenantID, channel string) error
	Release(tenantID, channel string)
	// Reconnected is signalled after pub/sub came back from a break.
	Reconnected() <-chan struct{}
}

// Records keeps what a session needs to resume on any node. A stream's admission saves it.
type Records interface {
	Load(ctx context.Context, tenantID, id string) (cluster.SessionRecord, error)
	// SetChannels replaces a record's channels if it is as expected, else fails with
	// cluster.ErrRecordChanged (or cluster.ErrSessionNotFound).
	SetChannels(ctx context.Context, tenantID, id string, expect cluster.Expect, channels []string, ttl time.Duration) error
	Delete(ctx context.Context, tenantID, id string) error
	Touch(ctx context.Context, live []cluster.Live) error
}

// Nodes is what the lifecycle knows of the other nodes: their last reports.
type Nodes interface {
	Nodes(ctx context.Context) ([]cluster.NodeReport, error)
	Alive(ctx context.Context, nodeID string) (bool, error)
	TenantUsage(ctx context.Context, tenantID, except string) (cluster.TenantReport, error)
}

// Admission admits a stream in one Redis round trip: the tenant's connect rate and
// max_connections, the session's record and the position it starts from (see cluster.Admit).
// Release gives back one of the tenant's max_connections that an admission took.
type Admission interface {
	Admit(ctx context.Context, a cluster.Admit) (cluster.Admitted, error)
	Release(tenantID string)
}

// Calls reach the node that holds a stream.
type Calls interface {
	Subscribe(ctx context.Context, nodeID string, c cluster.SubscriptionChange) error
	Unsubscribe(ctx context.Context, nodeID string, c cluster.SubscriptionChange) error
	Evict(ctx context.Context, nodeID, sessionID string) error
	Sessions(ctx context.Context, nodeID, tenantID string) ([]cluster.SessionSummary, error)
	RefreshToken(ctx context.Context, nodeID string, r cluster.TokenRefresh) error
}

// Events hears of sessions the server ended in a way a tenant's backend may want to know of
// (webhooks): evicted for lagging, a failed authentication, or by the operator.
type Events interface {
	SessionEvicted(ctx context.Context, tenantID, sessionID, sub, reason string) error
}

// Presence counts the sessions on the tenants' presence channels, cluster-wide. Join and Leave
// never fail: a change Redis may have missed is counted anew by the tracker itself.
type Presence interface {
	Join(ctx context.Context, tenantID, sub string, info json.RawMessage, channels []string)
	Leave(ctx context.Context, tenantID, sub string, channels []string)
	Read(ctx context.Context, tenantID, channel string, limit int) (presence.List, error)
	Totals(ctx context.Context, tenantIDs ...string) (map[string]presence.Totals, error)
	Busiest(ctx context.Context, tenantID string, limit int) (presence.Busiest, error)
}

// Tenants reads a tenant's current limits and settings, and what was revoked of the
// credentials live sessions were opened with.
type Tenants interface {
	Cached(ctx context.Context, id string) (tenant.Tenant, error)
	Revocations(ctx context.Context, creds map[string][]string) ([]tenant.Event, error)
}

// Config is the lifecycle's behaviour that operators set.
type Config struct {
	NodeID string
	// Retry is the reconnection delay streams advise to EventSource. Default 2 s.
	Retry time.Duration
	// Revalidate is how often live sessions are re-checked against Redis for revocations a
	// lost control message did not bring (a deleted key, a suspended tenant). Default 10 s.
	// They are re-checked after every pub/sub reconnect too.
	Revalidate time.Duration

	// catchUpReads bounds the history reads that streams catching up after a pub/sub reconnect
	// run at once on the node, and catchUpLinger how long one channel's read is kept for
	// streams that come to it late (see catchUps). Not operators' settings: the defaults suit
	// every node; tests change them.
	catchUpReads  int
	catchUpLinger time.Duration
	// writerLinger is how long a stream's writer waits for more after writing live frames
	// before it ends (default writerLinger); tests change it.
	writerLinger time.Duration
}

// Deps are the parts of the node a stream's life runs on.
type Deps struct {
	Registry  *session.Registry
	Hub       Hub
	History   History
	Records   Records
	Nodes     Nodes
	Admission Admission
	Calls     Calls
	Tenants   Tenants
	// Events hears of evicted sessions; nil tells no one.
	Events Events
	// Presence may be nil: then no channel keeps presence.
	Presence Presence
}

// Service opens and runs the streams of one node. Build it with New.
type Service struct {
	cfg Config
	Deps
	log      *slog.Logger
	live     liveSet
	catchUps *catchUps
	flusher  *flusher

	stopOnce sync.Once
	stopping chan struct{}
	streams  sync.WaitGroup // open streams, until their Close
}

// New returns the lifecycle of node cfg.NodeID.
func New(cfg Config, d Deps, log *slog.Logger) *Service {
	if cfg.Retry <= 0 {
		cfg.Retry = 2 * time.Second
	}
	if cfg.Revalidate <= 0 {
		cfg.Revalidate = 10 * time.Second
	}
	if cfg.catchUpReads <= 0 {
		cfg.catchUpReads = defaultCatchUpReads
	}
	if cfg.catchUpLinger <= 0 {
		cfg.catchUpLinger = defaultCatchUpLinger
	}
	if cfg.writerLinger <= 0 {
		cfg.writerLinger = writerLinger
	}
	return &Service{
		cfg: cfg, Deps: d, log: log,
		live:     liveSet{m: make(map[string]*Stream)},
		catchUps: newCatchUps(cfg.catchUpReads, cfg.catchUpLinger),
		flusher:  newFlusher(runtime.GOMAXPROCS(0), flushQueue, flusherLinger),
		stopping: make(chan struct{}),
	}
}

// recordRefresh is how often live sessions' records are extended; records live a minute longer
// than their history window, so a refresh may be missed without losing one.
const recordRefresh = 30 * time.Second

// Run keeps the records of this node's sessions fresh in Redis, so that they can be resumed
// for as long as their history lasts, and re-checks live sessions for revocations
// periodically and after every pub/sub reconnect, until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	refresh := time.NewTicker(recordRefresh)
	defer refresh.Stop()
	revalidate := time.NewTicker(s.cfg.Revalidate)
	defer revalidate.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-refresh.C:
			live := s.live.records()
			if err := s.Records.Touch(ctx, live); err != nil && ctx.Err() == nil {
				s.log.Warn("refresh session records", "sessions", len(live), "err", err)
			}
		case <-revalidate.C:
			s.revalidate(ctx)
		case <-s.Hub.Reconnected():
			s.revalidate(ctx)
		}
	}
}

// revalidate closes the live sessions whose tenant was suspended or whose key was deleted
// while this node may have missed the control message. Its cost is one pipelined round trip
// for the whole node.
func (s *Service) revalidate(ctx context.Context) {
	creds := s.Registry.Credentials()
	if len(creds) == 0 {
		return
	}
	events, err := s.Tenants.Revocations(ctx, creds)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("re-check revocations", "tenants", len(creds), "err", err)
		}
		return
	}
	for _, ev := range events {
		applyControl(s.Registry, ev, s.log)
	}
}

// Stop tells every open stream that the node is going away (disconnect, reconnect: true) and
// refuses new streams. Transports' own shutdown does not end open streams; call Stop first.
func (s *Service) Stop() {
	s.stopOnce.Do(func() {
		close(s.stopping)
		s.Registry.CloseAll(session.Disconnect(streamgate.ReasonShutdown, true))
	})
}

// Stopping is closed once Stop was called.
func (s *Service) Stopping() <-chan struct{} { return s.stopping }

// Drain waits until every stream has been closed after Stop, or ctx ends.
func (s *Service) Drain(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		s.streams.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *Service) stopped() bool {
	select {
	case <-s.stopping:
		return true
	default:
		return false
	}
}

// Control applies a change every node must act on to this node's sessions.
func (s *Service) Control(ev tenant.Event) { applyControl(s.Registry, ev, s.log) }

// ControlHandler returns what the hub calls with each control-channel payload: it closes the
// sessions a change ends on this node (a deleted signing key or identity provider, a suspended
// tenant), after passing the change to each of also (caches that must forget it first, so
// that a client reconnecting at once is refused).
func ControlHandler(reg *session.Registry, log *slog.Logger, also ...func(tenant.Event)) func(payload []byte) {
	return func(payload []byte) {
		var ev tenant.Event
		if err := json.Unmarshal(payload, &ev); err != nil {
			log.Warn("malformed control event", "err", err)
			return
		}
		for _, f := range also {
			f(ev)
		}
		applyControl(reg, ev, log)
	}
}

func applyControl(reg *session.Registry, ev tenant.Event, log *slog.Logger) {
	switch ev.Type {
	case tenant.EventSigningKeyDeleted:
		if n := reg.CloseKey(ev.TenantID, ev.KeyID, session.AuthFailed(streamgate.ReasonKeyDeleted)); n > 0 {
			log.Info("closed sessions of a deleted signing key", "tenant", ev.TenantID, "sessions", n)
		}
	case tenant.EventMercureChanged:
		// Mercure subscribers reconnect (with their Last-Event-ID) and are admitted, or not,
		// under the tenant's new configuration.
		if n := reg.CloseKey(ev.TenantID, tenant.MercureKeyID, session.Disconnect(streamgate.ReasonReconfigured, true)); n > 0 {
			log.Info("closed Mercure subscribers of a reconfigured hub", "tenant", ev.TenantID, "sessions", n)
		}
	case tenant.EventIdentityProviderDeleted:
		// Sessions opened with a provider's token carry the provider's id as their key.
		if n := reg.CloseKey(ev.TenantID, ev.KeyID, session.AuthFailed(streamgate.ReasonProviderDeleted)); n > 0 {
			log.Info("closed sessions of a deleted identity provider", "tenant", ev.TenantID, "sessions", n)
		}
	case tenant.EventSuspended:
		n := reg.CloseTenant(ev.TenantID, session.Disconnect(streamgate.ReasonSuspended, false))
		log.Info("tenant suspended", "tenant", ev.TenantID, "sessions_closed", n)
	}
}

// Usage is a tenant's live connections and subscriptions over the cluster: this node's exact
// figures plus the other nodes' last reports.
func (s *Service) Usage(ctx context.Context, tenantID string) (connections, subscriptions int, err error) {
	others, err := s.Nodes.TenantUsage(ctx, tenantID, s.cfg.NodeID)
	if err != nil {
		return 0, 0, err
	}
	local := s.Registry.TenantStats(tenantID)
	return local.Connections + others.Connections, local.Subscriptions + others.Subscriptions, nil
}

// liveSet indexes this node's open streams by session id, for the sessions API.
type liveSet struct {
	mu   sync.Mutex
	m    map[string]*Stream
	high int // the most streams held since m was last sized (memory.Shrink)
}

func (l *liveSet) add(st *Stream) {
	l.mu.Lock()
	l.m[st.sess.ID()] = st
	l.mu.Unlock()
}

// remove forgets st, but not a newer stream that resumed the same session.
func (l *liveSet) remove(st *Stream) {
	l.mu.Lock()
	if l.m[st.sess.ID()] == st {
		delete(l.m, st.sess.ID())
		l.m = memory.Shrink(l.m, &l.high)
	}
	l.mu.Unlock()
}

func (l *liveSet) get(id string) *Stream {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.m[id]
}

func (l *liveSet) records() []cluster.Live {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]cluster.Live, 0, len(l.m))
	for id, st := range l.m {
		if st.log == nil { // a log stream has no record
			out = append(out, cluster.Live{TenantID: st.tenantID, ID: id, TTL: st.ttl})
		}
	}
	return out
}
