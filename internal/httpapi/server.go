// Package httpapi is Streamgate's HTTP edge: the routes, request validation, the mapping of
// errors to the public contract, and the SSE writer.
package httpapi

import (
	"crypto/subtle"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/streamgate/streamgate/internal/session"
	"github.com/streamgate/streamgate/internal/stream"
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
}

// Server holds the edge's dependencies. Build it with New.
type Server struct {
	cfg       Config
	log       *slog.Logger
	tenants   *tenant.Store
	publisher *stream.Publisher
	hub       *stream.Hub
	sessions  *session.Registry
	ready     func() bool

	stopOnce sync.Once
	stopping chan struct{}
}

// New returns the edge. ready reports whether the node can serve (for /readyz).
func New(cfg Config, log *slog.Logger, tenants *tenant.Store, publisher *stream.Publisher,
	hub *stream.Hub, sessions *session.Registry, ready func() bool) *Server {
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = 10 * time.Second
	}
	if cfg.Retry <= 0 {
		cfg.Retry = 2 * time.Second
	}
	return &Server{
		cfg: cfg, log: log, tenants: tenants, publisher: publisher, hub: hub,
		sessions: sessions, ready: ready, stopping: make(chan struct{}),
	}
}

// Stop tells every open stream that the node is going away (disconnect, reconnect: true) and
// refuses new streams. http.Server.Shutdown does not end open streams by itself; call Stop first.
func (s *Server) Stop() {
	s.stopOnce.Do(func() {
		close(s.stopping)
		s.sessions.CloseAll(session.Disconnect("node shutting down", true))
	})
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
