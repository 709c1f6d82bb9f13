package httpapi

import (
	"errors"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/streamgate/streamgate/internal/tenant"
)

const tenantKey = "streamgate.tenant"

// requireAPIKey authenticates a tenant backend by its API key and puts the tenant in the
// context; every refusal is the contract's 401 or 403.
func (s *Server) requireAPIKey() gin.HandlerFunc {
	return func(c *gin.Context) {
		secret := bearer(c.Request)
		if secret == "" {
			s.abort(c, errorf(http.StatusUnauthorized, CodeUnauthorized, "Send your API key as Authorization: Bearer <key>"))
			return
		}
		t, _, err := s.tenants.Authenticate(c.Request.Context(), secret)
		if errors.Is(err, tenant.ErrSuspended) {
			s.abort(c, errorf(http.StatusForbidden, CodeForbidden, "The tenant is suspended; contact the operator"))
			return
		}
		if err != nil {
			s.abort(c, toError(s.log, err))
			return
		}
		c.Set(tenantKey, t)
		c.Next()
	}
}

// checkIDs answers 400 for a path whose ids break the names rules; it runs after authentication.
func (s *Server) checkIDs() gin.HandlerFunc {
	return func(c *gin.Context) {
		if e := pathIDs(c); e != nil {
			s.abort(c, e)
		}
	}
}

func tenantOf(c *gin.Context) tenant.Tenant {
	return c.MustGet(tenantKey).(tenant.Tenant)
}

func (s *Server) abort(c *gin.Context, e *Error) {
	writeError(c.Writer, e)
	c.Abort()
}

// fail answers err in the contract's shape.
func (s *Server) fail(c *gin.Context, err error) {
	s.abort(c, toError(s.log, err))
}

// cors lets browsers call the API: any origin by default, or only the configured ones.
func (s *Server) cors() gin.HandlerFunc {
	allowed := make(map[string]bool, len(s.cfg.CORSOrigins))
	for _, o := range s.cfg.CORSOrigins {
		allowed[strings.TrimRight(o, "/")] = true
	}
	return func(c *gin.Context) {
		origin := c.Request.Header.Get("Origin")
		if origin == "" || isMercurePath(c.Request.URL.Path) { // a hub answers by its tenant's rules
			c.Next()
			return
		}
		h := c.Writer.Header()
		switch {
		case len(allowed) == 0:
			h.Set("Access-Control-Allow-Origin", "*")
		case allowed[origin]:
			h.Set("Access-Control-Allow-Origin", origin)
			h.Add("Vary", "Origin")
		default:
			if c.Request.Method == http.MethodOptions {
				s.abort(c, errorf(http.StatusForbidden, CodeForbidden, "This origin may not call the API; the operator lists the allowed ones"))
				return
			}
			c.Next()
			return
		}
		if c.Request.Method == http.MethodOptions && c.Request.Header.Get("Access-Control-Request-Method") != "" {
			h.Set("Access-Control-Allow-Methods", "GET, POST, PUT, PATCH, DELETE, OPTIONS")
			h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, Idempotency-Key, Last-Event-ID")
			h.Set("Access-Control-Max-Age", "600")
			c.AbortWithStatus(http.StatusNoContent)
			return
		}
		h.Set("Access-Control-Expose-Headers", "Retry-After, X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset")
		c.Next()
	}
}

// bodyDeadline bounds how long a request's body may take to arrive. The http.Server bounds the
// headers only: without this, a client that sends headers and then dribbles or stalls its body
// holds a goroutine and a connection for as long as it likes. A request without a body, a
// stream's among them, is left alone.
func (s *Server) bodyDeadline() gin.HandlerFunc {
	d := s.cfg.BodyTimeout
	return func(c *gin.Context) {
		// Once the body is in, net/http lifts the deadline itself, for its background read of
		// the connection (which sees the client leave). A request without a body has that read
		// running already: a deadline would cut it, and cancel the request's context.
		if c.Request.ContentLength != 0 && c.Request.Body != http.NoBody {
			// Not every ResponseWriter has a connection under it (a recorder in tests): there
			// is then nothing to bound.
			_ = http.NewResponseController(c.Writer).SetReadDeadline(time.Now().Add(d))
		}
		c.Next()
	}
}

// bodyTimedOut reports whether err, from reading a request body, is bodyDeadline's deadline.
func bodyTimedOut(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }

// messageBodyTimeout answers a body that did not arrive in time (a 408).
const messageBodyTimeout = "The request body did not arrive in time"

// recoverer turns a panic into the contract's 500 and a log line, instead of a dropped connection.
func (s *Server) recoverer() gin.HandlerFunc {
	return func(c *gin.Context) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.Error("panic serving request", "method", c.Request.Method, "route", c.FullPath(), "panic", v)
				if !c.Writer.Written() {
					writeError(c.Writer, &Error{Status: http.StatusInternalServerError, Code: CodeInternal, Message: messageInternal})
				}
				c.Abort()
			}
		}()
		c.Next()
	}
}
