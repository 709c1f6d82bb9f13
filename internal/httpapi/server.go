// Package httpapi is Streamgate's HTTP edge: the routes, request validation, the mapping of
// errors to the public contract, and the SSE writer.
package httpapi

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/metric"
	noopmetric "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace"

	"github.com/streamgate/streamgate/internal/cluster"
	"github.com/streamgate/streamgate/internal/ratelimit"
	"github.com/streamgate/streamgate/internal/session"
	"github.com/streamgate/streamgate/internal/stream"
	"github.com/streamgate/streamgate/internal/telemetry"
	"github.com/streamgate/streamgate/internal/tenant"
)

// Config is the edge's behaviour that operators set.
type Config struct {
	NodeID     string
	AdminToken string
	// SignupOpen lets anyone create a tenant; when false only the admin token may.
	SignupOpen bool
	// CORSOrigins lists the origins browsers may call from; empty allows any.
	CORSOrigins []string
	// WriteTimeout bounds each write to a stream; a client that cannot take a batch of frames
	// within it is disconnected.
	WriteTimeout time.Duration
	// Retry is the reconnection delay streams advise to EventSource.
	Retry time.Duration
	// Rates are the request rate limits other than publishing (which is each tenant's
	// publish_per_second). A zero Rate leaves that limit off.
	Rates Rates
	// TrustedProxies are the addresses or CIDRs of proxies whose X-Forwarded-For (or X-Real-IP)
	// names the client; from anyone else the header is ignored. Empty trusts none.
	TrustedProxies []string
}

// Rates are the request rate limits, counted in Redis across all nodes.
type Rates struct {
	Signup       ratelimit.Rate // POST /v1/tenants, per client address
	StreamClient ratelimit.Rate // GET /v1/stream, per client address
	StreamTenant ratelimit.Rate // GET /v1/stream, per tenant
	Tokens       ratelimit.Rate // POST /v1/tokens, per tenant
}

// Deps are the node's parts the edge drives.
type Deps struct {
	Tenants   *tenant.Store
	Publisher *stream.Publisher
	History   *stream.History
	Records   *stream.Sessions
	Hub       *stream.Hub
	Registry  *session.Registry
	Cluster   *cluster.View
	States    *stream.States
	Updates   *stream.Updates
	Ready     func() bool // whether the node can serve, for /readyz
	// Limiter counts the rate limits; nil leaves them all off.
	Limiter *ratelimit.Limiter
	// Tracer traces every request, continuing a trace whose context the request carries; nil
	// traces nothing (a no-op).
	Tracer trace.TracerProvider
	// Meter makes the request duration and publish instruments; nil measures nothing.
	Meter metric.MeterProvider
	// Metrics serves GET /metrics; nil leaves the route out.
	Metrics http.Handler
}

// Server holds the edge's dependencies. Build it with New.
type Server struct {
	cfg            Config
	log            *slog.Logger
	tenants        *tenant.Store
	publisher      *stream.Publisher
	history        *stream.History
	sessionRecords *stream.Sessions
	hub            *stream.Hub
	sessions       *session.Registry
	stateReader    *stream.States
	updates        *stream.Updates
	cluster        *cluster.View
	ready          func() bool
	limiter        *ratelimit.Limiter
	tracer         trace.Tracer
	metricsHandler http.Handler
	instruments    instruments
	live           liveSet
	statsCache     statsCache

	stopOnce sync.Once
	stopping chan struct{}
	streams  sync.WaitGroup // open streams, including those taken over from net/http
}

// New returns the edge.
func New(cfg Config, log *slog.Logger, d Deps) *Server {
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = 10 * time.Second
	}
	if cfg.Retry <= 0 {
		cfg.Retry = 2 * time.Second
	}
	if d.Meter == nil {
		d.Meter = noopmetric.NewMeterProvider()
	}
	s := &Server{
		cfg: cfg, log: log, tenants: d.Tenants, publisher: d.Publisher, history: d.History,
		sessionRecords: d.Records, hub: d.Hub, sessions: d.Registry, stateReader: d.States, updates: d.Updates, cluster: d.Cluster, ready: d.Ready,
		limiter: d.Limiter, tracer: telemetry.Tracer(d.Tracer), metricsHandler: d.Metrics,
		live: liveSet{m: make(map[string]*liveStream)}, stopping: make(chan struct{}),
	}
	s.instruments = newInstruments(telemetry.Meter(d.Meter), log)
	return s
}

// HandleRPC runs a call from another node; install it with the hub's SetRPCHandler.
func (s *Server) HandleRPC(ctx context.Context, method string, body json.RawMessage) (any, error) {
	return s.handleRPC(ctx, method, body)
}

// Run keeps the records of this node's sessions fresh in Redis, so that they can be resumed
// for as long as their history lasts, until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	t := time.NewTicker(recordRefresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		live := s.live.records()
		if err := s.sessionRecords.Touch(ctx, live); err != nil && ctx.Err() == nil {
			s.log.Warn("refresh session records", "sessions", len(live), "err", err)
		}
	}
}

// recordRefresh is how often live sessions' records are extended; records live a minute longer
// than their history window, so a refresh may be missed without losing one.
const recordRefresh = 30 * time.Second

// liveSet indexes this node's open streams by session id, for the sessions API.
type liveSet struct {
	mu sync.Mutex
	m  map[string]*liveStream
}

func (l *liveSet) add(st *liveStream) {
	l.mu.Lock()
	l.m[st.sess.ID()] = st
	l.mu.Unlock()
}

// remove forgets st, but not a newer stream that resumed the same session.
func (l *liveSet) remove(st *liveStream) {
	l.mu.Lock()
	if l.m[st.sess.ID()] == st {
		delete(l.m, st.sess.ID())
	}
	l.mu.Unlock()
}

func (l *liveSet) get(id string) *liveStream {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.m[id]
}

func (l *liveSet) records() []stream.Live {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]stream.Live, 0, len(l.m))
	for id, st := range l.m {
		out = append(out, stream.Live{TenantID: st.tenantID, ID: id, TTL: st.ttl})
	}
	return out
}

// Stop tells every open stream that the node is going away (disconnect, reconnect: true) and
// refuses new streams. http.Server.Shutdown does not end open streams by itself; call Stop first.
func (s *Server) Stop() {
	s.stopOnce.Do(func() {
		close(s.stopping)
		s.sessions.CloseAll(session.Disconnect("node shutting down", true))
	})
}

// Drain waits until every stream has ended after Stop, or ctx ends. http.Server.Shutdown does
// not know the streams taken over from it.
func (s *Server) Drain(ctx context.Context) error {
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

func (s *Server) stopped() bool {
	select {
	case <-s.stopping:
		return true
	default:
		return false
	}
}

// HandleControl applies a control-channel event from any node to this node's sessions.
func (s *Server) HandleControl(ev tenant.Event) {
	switch ev.Type {
	case tenant.EventSigningKeyDeleted:
		n := s.sessions.CloseKey(ev.TenantID, ev.KeyID, session.AuthFailed("signing key deleted"))
		if n > 0 {
			s.log.Info("closed sessions of a deleted signing key", "tenant", ev.TenantID, "sessions", n)
		}
	case tenant.EventSuspended:
		n := s.sessions.CloseTenant(ev.TenantID, session.Disconnect("tenant suspended", false))
		s.log.Info("tenant suspended", "tenant", ev.TenantID, "sessions_closed", n)
	}
}

// bearer returns the token of an "Authorization: Bearer <token>" header, or "".
func bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

func (s *Server) isAdmin(r *http.Request) bool {
	tok := bearer(r)
	return tok != "" && s.cfg.AdminToken != "" &&
		subtle.ConstantTimeCompare([]byte(tok), []byte(s.cfg.AdminToken)) == 1
}
