// Package httpapi is Streamgate's HTTP edge: the routes, request validation, the mapping of
// errors to the public contract, and the SSE writer.
package httpapi

import (
	"crypto/subtle"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"go.opentelemetry.io/otel/metric"
	noopmetric "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace"

	"github.com/streamgate/streamgate/internal/cluster"
	"github.com/streamgate/streamgate/internal/delivery"
	"github.com/streamgate/streamgate/internal/jobs"
	"github.com/streamgate/streamgate/internal/mercure"
	"github.com/streamgate/streamgate/internal/ratelimit"
	"github.com/streamgate/streamgate/internal/stream"
	"github.com/streamgate/streamgate/internal/telemetry"
	"github.com/streamgate/streamgate/internal/tenant"
	"github.com/streamgate/streamgate/internal/webhook"
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
	// BodyTimeout bounds how long a request's body may take to arrive once its headers have
	// (the headers have the http.Server's ReadHeaderTimeout); past it the request is answered
	// 408 and its connection closed.
	BodyTimeout time.Duration
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
	Streams   *delivery.Service
	// Mercure is the node's index of Mercure subscribers, which the hub's frames pass through.
	Mercure   *mercure.Index
	Cluster   *cluster.View
	JobStates *jobs.States
	Updates   *jobs.Updates
	Webhooks  *webhook.Store
	Ready     func() bool // whether the node can serve, for /readyz
	// Limiter counts the rate limits; nil leaves them all off. The stream connect rate per
	// client address is counted by each node in its own memory (ratelimit.NewLocal): it is
	// checked before anything else a stream costs, and so costs no Redis round trip.
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
	streams        *delivery.Service
	mercure        *mercure.Index
	trustedProxies []netip.Prefix
	jobStates      *jobs.States
	updates        *jobs.Updates
	webhooks       *webhook.Store
	cluster        *cluster.View
	ready          func() bool
	limiter        *ratelimit.Limiter
	nodeLimiter    *ratelimit.Limiter // counts per node, when limiter is set
	tracer         trace.Tracer
	metricsHandler http.Handler
	instruments    instruments
	statsCache     statsCache
	clients        closeWatcher // taken-over streams' clients, watched while WatchClients runs
}

// New returns the edge.
func New(cfg Config, log *slog.Logger, d Deps) *Server {
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = 10 * time.Second
	}
	if cfg.BodyTimeout <= 0 {
		cfg.BodyTimeout = 30 * time.Second
	}
	if d.Meter == nil {
		d.Meter = noopmetric.NewMeterProvider()
	}
	s := &Server{
		cfg: cfg, log: log, tenants: d.Tenants, publisher: d.Publisher, history: d.History, streams: d.Streams,
		mercure: d.Mercure, trustedProxies: parsePrefixes(cfg.TrustedProxies),
		jobStates: d.JobStates, updates: d.Updates, webhooks: d.Webhooks, cluster: d.Cluster, ready: d.Ready,
		limiter: d.Limiter, tracer: telemetry.Tracer(d.Tracer), metricsHandler: d.Metrics,
		clients: closeWatcher{log: log},
	}
	if d.Limiter != nil {
		s.nodeLimiter = ratelimit.NewLocal()
	}
	s.instruments = newInstruments(telemetry.Meter(d.Meter), log)
	return s
}

// stopped reports whether the node is stopping: it opens no new streams and is not ready.
func (s *Server) stopped() bool {
	select {
	case <-s.streams.Stopping():
		return true
	default:
		return false
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
