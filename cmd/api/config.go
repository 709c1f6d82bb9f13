package main

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	streamgate "github.com/streamgate/streamgate"
	"github.com/streamgate/streamgate/internal/config"
	"github.com/streamgate/streamgate/internal/httpapi"
	"github.com/streamgate/streamgate/internal/jobs"
	"github.com/streamgate/streamgate/internal/presence"
	"github.com/streamgate/streamgate/internal/ratelimit"
	"github.com/streamgate/streamgate/internal/tenant"
)

type apiConfig struct {
	Redis           config.Redis
	Addr            string
	AdminToken      string
	AdminGenerated  bool
	NodeID          string
	SignupOpen      bool
	SecretKey       []byte
	CORSOrigins     []string
	DefaultLimits   tenant.Limits
	ShutdownTimeout time.Duration
	DrainDelay      time.Duration
	PubSubKeepalive time.Duration
	MetricsTenants  int
	WriteTimeout    time.Duration
	BodyTimeout     time.Duration
	Heartbeat       time.Duration
	TokenWarning    time.Duration
	PresenceLease   time.Duration
	SessionBuffer   int
	JobRetention    time.Duration
	Demo            bool
	PprofAddr       string
	MaxNewConns     int
	LogLevel        string
	Rates           httpapi.Rates
	TrustedProxies  []string
	// AllowPrivateURLs lets JWKS and webhook URLs reach loopback and private addresses.
	AllowPrivateURLs bool
}

// readConfig reads the environment table of the README. Every problem is reported at once.
func readConfig(_ []string, getenv func(string) string) (apiConfig, error) {
	r := &config.Reader{Env: getenv}
	var c apiConfig
	var err error
	if c.Redis, err = config.ReadRedis(getenv); err != nil {
		r.Fail(err)
	}
	c.Addr = r.String("STREAMGATE_ADDR", ":8080")
	c.AdminToken = r.String("STREAMGATE_ADMIN_TOKEN", "")
	if c.AdminToken == "" {
		c.AdminToken, c.AdminGenerated = "sga_"+randomToken(), true
	} else if len(c.AdminToken) < 16 {
		r.Fail(fmt.Errorf("STREAMGATE_ADMIN_TOKEN must be at least 16 characters"))
	}
	c.NodeID = r.String("STREAMGATE_NODE_ID", "")
	if c.NodeID == "" {
		c.NodeID = streamgate.NewID("node-")[:13]
	} else if !streamgate.ValidID(c.NodeID) {
		r.Fail(errors.New("STREAMGATE_NODE_ID must be 1 to 128 characters of A-Z a-z 0-9, _, -, . and : (colon)"))
	}
	c.SignupOpen = r.OneOf("STREAMGATE_SIGNUP", "open", "open", "closed") == "open"
	c.SecretKey = r.Key32("STREAMGATE_SECRET_KEY")
	if c.SecretKey == nil && getenv("STREAMGATE_SECRET_KEY") == "" {
		if !c.Redis.DevMode() {
			r.Fail(fmt.Errorf("STREAMGATE_SECRET_KEY is required with a real Redis: it encrypts signing keys at rest (openssl rand -base64 32)"))
		}
		c.SecretKey = make([]byte, 32)
		_, _ = rand.Read(c.SecretKey)
	}
	if origins := r.String("STREAMGATE_CORS_ORIGINS", ""); origins != "" && origins != "*" {
		for _, o := range strings.Split(origins, ",") {
			if o = strings.TrimSpace(o); o != "" {
				c.CORSOrigins = append(c.CORSOrigins, o)
			}
		}
	}
	d := tenant.DefaultLimits()
	c.DefaultLimits = tenant.Limits{
		MaxConnections:             r.Int("STREAMGATE_DEFAULT_MAX_CONNECTIONS", d.MaxConnections, 1, 10_000_000),
		MaxSubscriptionsPerSession: r.Int("STREAMGATE_DEFAULT_MAX_SUBSCRIPTIONS_PER_SESSION", d.MaxSubscriptionsPerSession, 1, 10_000),
		PublishPerSecond:           r.Int("STREAMGATE_DEFAULT_PUBLISH_PER_SECOND", d.PublishPerSecond, 1, 10_000_000),
		MaxMessageBytes:            r.Int("STREAMGATE_DEFAULT_MAX_MESSAGE_BYTES", d.MaxMessageBytes, 1, 1<<20),
		HistoryEvents:              r.Int("STREAMGATE_DEFAULT_HISTORY_EVENTS", d.HistoryEvents, 1, 1_000_000),
		HistorySeconds:             r.Int("STREAMGATE_DEFAULT_HISTORY_SECONDS", d.HistorySeconds, 1, 7*24*3600),
	}
	c.PprofAddr = r.String("STREAMGATE_PPROF_ADDR", "")
	c.MaxNewConns = r.Int("STREAMGATE_MAX_NEW_CONNS", 1024, 0, 1_000_000)
	c.ShutdownTimeout = r.Duration("STREAMGATE_SHUTDOWN_TIMEOUT", 10*time.Second, 0, 10*time.Minute)
	c.DrainDelay = r.Duration("STREAMGATE_DRAIN_DELAY", 5*time.Second, 0, 5*time.Minute)
	c.PubSubKeepalive = r.Duration("STREAMGATE_PUBSUB_KEEPALIVE", 15*time.Second, time.Second, 5*time.Minute)
	c.MetricsTenants = r.Int("STREAMGATE_METRICS_TENANTS", 20, 0, 10_000)
	c.WriteTimeout = r.Duration("STREAMGATE_WRITE_TIMEOUT", 10*time.Second, 100*time.Millisecond, 5*time.Minute)
	c.BodyTimeout = r.Duration("STREAMGATE_BODY_TIMEOUT", 30*time.Second, time.Second, 10*time.Minute)
	c.Heartbeat = r.Duration("STREAMGATE_HEARTBEAT", 15*time.Second, 100*time.Millisecond, 15*time.Second)
	c.TokenWarning = r.Duration("STREAMGATE_TOKEN_WARNING", 60*time.Second, time.Second, 24*time.Hour)
	c.PresenceLease = r.Duration("STREAMGATE_PRESENCE_LEASE", presence.DefaultLease, 300*time.Millisecond, 40*time.Second)
	c.SessionBuffer = r.Int("STREAMGATE_SESSION_BUFFER", 256, 1, 1<<16)
	c.JobRetention = r.Duration("STREAMGATE_JOB_RETENTION", jobs.DefaultRetention, time.Minute, 365*24*time.Hour)
	demoDefault := "off"
	if c.Redis.DevMode() {
		demoDefault = "on"
	}
	c.Demo = r.OneOf("STREAMGATE_DEMO", demoDefault, "on", "off") == "on"
	c.LogLevel = r.OneOf("STREAMGATE_LOG_LEVEL", "info", "debug", "info", "warn", "error")
	c.Rates = httpapi.Rates{
		Signup:       readRate(r, "STREAMGATE_RATE_SIGNUP", "10-M"),
		StreamClient: readRate(r, "STREAMGATE_RATE_STREAM_IP", "120-M"),
		StreamTenant: readRate(r, "STREAMGATE_RATE_STREAM_TENANT", "6000-M"),
		Tokens:       readRate(r, "STREAMGATE_RATE_TOKENS", "6000-M"),
	}
	c.AllowPrivateURLs = r.OneOf("STREAMGATE_ALLOW_PRIVATE_URLS", "false", "true", "false") == "true"
	if proxies := r.String("STREAMGATE_TRUSTED_PROXIES", ""); proxies != "" {
		for _, p := range strings.Split(proxies, ",") {
			if p = strings.TrimSpace(p); p == "" {
				continue
			}
			if _, err := netip.ParsePrefix(p); err != nil {
				if _, err := netip.ParseAddr(p); err != nil {
					r.Fail(fmt.Errorf("STREAMGATE_TRUSTED_PROXIES must be comma-separated IP addresses or CIDRs, got %q", p))
					continue
				}
			}
			c.TrustedProxies = append(c.TrustedProxies, p)
		}
	}
	return c, r.Err()
}

func randomToken() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// readRate reads a rate limit in the format "<limit>-<S|M|H|D>" ("10-M" is ten a minute).
func readRate(r *config.Reader, name, def string) ratelimit.Rate {
	rate, err := ratelimit.ParseRate(r.String(name, def))
	if err != nil {
		r.Fail(fmt.Errorf("%s: %w", name, err))
	}
	return rate
}
