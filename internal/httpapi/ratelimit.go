package httpapi

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/streamgate/streamgate/internal/delivery"
	"github.com/streamgate/streamgate/internal/keys"
	"github.com/streamgate/streamgate/internal/ratelimit"
)

// limit counts n against key at rate and writes the X-RateLimit-* headers into h. It returns nil
// when the request may go on, a 429 rate_limited (with Retry-After in h) when it is over, and a
// 503 unavailable when Redis cannot count: a limit that cannot be checked lets nothing through.
// what names the limit in the refusal's message.
func (s *Server) limit(ctx context.Context, h http.Header, key string, n int64, rate ratelimit.Rate, what string) *Error {
	return s.limitWith(ctx, s.limiter, h, key, n, rate, what)
}

// limitWith is limit counted by l.
func (s *Server) limitWith(ctx context.Context, l *ratelimit.Limiter, h http.Header, key string, n int64, rate ratelimit.Rate, what string) *Error {
	if l == nil || rate.Limit < 1 {
		return nil
	}
	res, err := l.Take(ctx, key, n, rate)
	if err != nil {
		s.log.WarnContext(ctx, "rate limiter unavailable", "limit", what, "err", err)
		return &Error{Status: http.StatusServiceUnavailable, Code: CodeUnavailable, Message: messageUnavailable}
	}
	return rateAnswer(h, res, n, rate, what)
}

// rateAnswer reports res, a count of n against rate, in h, and refuses the request with a 429
// when it went over (nil when it may go on).
func rateAnswer(h http.Header, res ratelimit.Result, n int64, rate ratelimit.Rate, what string) *Error {
	setRateHeaders(h, res)
	if !res.Reached {
		return nil
	}
	retry := res.RetryAfter(time.Now())
	h[headerRetryAfter] = []string{strconv.FormatInt(retry, 10)}
	if n > rate.Limit {
		return errorf(http.StatusTooManyRequests, CodeRateLimited,
			"This request counts %d against %s (%s): more than it allows at once; send fewer at a time", n, what, rate)
	}
	return errorf(http.StatusTooManyRequests, CodeRateLimited, "Over %s (%s); retry in %d s", what, rate, retry)
}

// The rate limit headers, in the canonical form that http.Header.Set would make of
// X-RateLimit-*: set directly, they cost no canonicalization on every request.
const (
	headerRateLimit     = "X-Ratelimit-Limit"
	headerRateRemaining = "X-Ratelimit-Remaining"
	headerRateReset     = "X-Ratelimit-Reset"
	headerRetryAfter    = "Retry-After"
)

// setRateHeaders reports res in h. Where a request passes several limits, the headers describe
// the one with the least room left.
func setRateHeaders(h http.Header, res ratelimit.Result) {
	if prev := h[headerRateRemaining]; len(prev) > 0 {
		if n, err := strconv.ParseInt(prev[0], 10, 64); err == nil && n <= res.Remaining && !res.Reached {
			return
		}
	}
	// One array holds the three values; each header gets a slice of it that an append cannot
	// spill from into the next.
	v := []string{strconv.FormatInt(res.Limit, 10), strconv.FormatInt(res.Remaining, 10), strconv.FormatInt(res.Reset.Unix(), 10)}
	h[headerRateLimit], h[headerRateRemaining], h[headerRateReset] = v[0:1:1], v[1:2:2], v[2:3:3]
}

// rateClient is the key part of a client address: the address itself, or an IPv6 client's /64,
// since one host commonly holds a whole /64.
func rateClient(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	a = a.Unmap()
	if a.Is4() {
		return a.String()
	}
	p, _ := a.Prefix(64)
	return p.String()
}

type clientIPKey struct{}

// withClientIP makes the client address that gin worked out (honouring X-Forwarded-For only from
// trusted proxies) available to plain http.Handlers in the request's context.
func withClientIP() gin.HandlerFunc {
	return func(c *gin.Context) {
		rememberClientIP(c)
		c.Next()
	}
}

// rememberClientIP is withClientIP for a handler that runs without it (NoRoute).
func rememberClientIP(c *gin.Context) {
	c.Request = c.Request.WithContext(context.WithValue(c.Request.Context(), clientIPKey{}, c.ClientIP()))
}

// clientIP is the request's client address: as withClientIP stored it, or the peer's address.
func clientIP(r *http.Request) string {
	if ip, ok := r.Context().Value(clientIPKey{}).(string); ok && ip != "" {
		return ip
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// The limits of the routes, as handlers call them.

func (s *Server) limitSignup(c *gin.Context) *Error {
	return s.limit(c.Request.Context(), c.Writer.Header(), keys.RateLimitSignup(rateClient(c.ClientIP())), 1,
		s.cfg.Rates.Signup, "the signup rate per client address")
}

func (s *Server) limitTokens(c *gin.Context, tenantID string) *Error {
	return s.limit(c.Request.Context(), c.Writer.Header(), keys.RateLimitTokens(tenantID), 1,
		s.cfg.Rates.Tokens, "the tenant's token minting rate")
}

// limitPublish counts events against the tenant's publish_per_second in a round trip of its
// own, for job and workflow updates, whose script runs in another hash slot (Mercure publishes
// count the same way, through limit). Publishes count it in the publish script (publishRate), on
// the same key: one window for all of them.
func (s *Server) limitPublish(c *gin.Context, tenantID string, perSecond, events int) *Error {
	return s.limit(c.Request.Context(), c.Writer.Header(), keys.RateLimitPublish(tenantID), int64(events),
		ratelimit.PerSecond(perSecond), publishRateName)
}

// publishRateName names publish_per_second in a refusal.
const publishRateName = "the tenant's publish_per_second"

// scriptRate is rate as a script counts it in its own round trip (the publish script, a
// stream's admission): none (zero) where limits are off, as limitWith has it.
func (s *Server) scriptRate(rate ratelimit.Rate) ratelimit.Rate {
	if s.limiter == nil || rate.Limit < 1 {
		return ratelimit.Rate{}
	}
	return rate
}

// limitStreamClient counts a stream connect against the rate per client address, on this node.
func (s *Server) limitStreamClient(r *http.Request, h http.Header) *Error {
	return s.limitWith(r.Context(), s.nodeLimiter, h, keys.RateLimitStreamClient(rateClient(clientIP(r))), 1,
		s.cfg.Rates.StreamClient, "the stream connect rate per client address")
}

// limitStreamTenant counts a Mercure subscription against the tenant's connect rate before the
// subscriber is announced; the count is the same one a stream's admission keeps (same key, same
// window).
func (s *Server) limitStreamTenant(ctx context.Context, h http.Header, tenantID string) *Error {
	return s.limit(ctx, h, keys.RateLimitStreamTenant(tenantID), 1, s.cfg.Rates.StreamTenant, streamTenantWhat)
}

const streamTenantWhat = "the tenant's stream connect rate"

// streamTenantAnswer reports the tenant's connect rate after a stream's admission in h: err is
// Open's error (a 429 when the admission refused the rate), st the stream on success.
func streamTenantAnswer(h http.Header, st *delivery.Stream, err error) *Error {
	var limited *delivery.RateLimitedError
	if errors.As(err, &limited) {
		return rateAnswer(h, limited.Result, 1, limited.Rate, streamTenantWhat)
	}
	if st != nil && st.Rate().Limit > 0 {
		setRateHeaders(h, st.Rate())
	}
	return nil
}
