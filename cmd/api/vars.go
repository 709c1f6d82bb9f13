package main

import (
	"net/url"
	"strconv"
	"strings"
	"time"
)

// envVar is one environment variable of the api, as `api --help` lists it and `api config`
// shows it. docs/configuration.md says more about each.
type envVar struct {
	Name    string
	Default string
	Meaning string
	// Value is the effective value in c as api config shows it, secrets redacted; nil shows the
	// variable's text when set and its default otherwise.
	Value func(c apiConfig, raw string) string
}

// redacted stands for a secret that is set.
const redacted = "(set, redacted)"

// envVars lists every variable the api reads, in the order of docs/configuration.md.
// TestEveryVariableIsListed keeps it complete.
var envVars = []envVar{
	{Name: "REDIS_URL", Default: "empty: dev mode, an embedded in-memory Redis", Meaning: "redis:// or rediss:// URL of a single Redis",
		Value: func(c apiConfig, raw string) string {
			switch {
			case c.Redis.DevMode():
				return "(unset: dev mode, an embedded in-memory Redis; nothing persists)"
			case len(c.Redis.ClusterAddrs) > 0 && raw != "":
				return "(ignored: REDIS_CLUSTER_ADDRS wins)"
			case len(c.Redis.ClusterAddrs) > 0:
				return "(unset)"
			}
			return redactURL(c.Redis.URL)
		}},
	{Name: "REDIS_CLUSTER_ADDRS", Default: "empty", Meaning: "comma-separated Redis Cluster seed addresses; wins over REDIS_URL",
		Value: func(c apiConfig, _ string) string { return listOr(c.Redis.ClusterAddrs, "(unset)") }},
	{Name: "STREAMGATE_ADDR", Default: ":8080", Meaning: "the address the api listens on",
		Value: func(c apiConfig, _ string) string { return c.Addr }},
	{Name: "STREAMGATE_ADMIN_TOKEN", Default: "generated, printed once to stdout", Meaning: "the admin bearer token, 16 characters or more",
		Value: func(c apiConfig, _ string) string {
			if c.AdminGenerated {
				return "(generated at start, printed once to stdout)"
			}
			return redacted
		}},
	{Name: "STREAMGATE_NODE_ID", Default: "node- and 8 random characters", Meaning: "this node's id; unique per running node",
		Value: func(c apiConfig, raw string) string {
			if raw == "" {
				return "(random at each start)"
			}
			return c.NodeID
		}},
	{Name: "STREAMGATE_SIGNUP", Default: "open", Meaning: "open, or closed: only the admin token creates tenants",
		Value: func(c apiConfig, _ string) string {
			return map[bool]string{true: "open", false: "closed"}[c.SignupOpen]
		}},
	{Name: "STREAMGATE_SECRET_KEY", Default: "dev mode: generated", Meaning: "base64 of 32 bytes; encrypts signing keys at rest; required with a real Redis",
		Value: func(_ apiConfig, raw string) string {
			if raw == "" {
				return "(generated at start: dev mode only)"
			}
			return redacted
		}},
	{Name: "STREAMGATE_CORS_ORIGINS", Default: "any origin", Meaning: "comma-separated origins browsers may call from; * allows any",
		Value: func(c apiConfig, _ string) string { return listOr(c.CORSOrigins, "*") }},
	{Name: "STREAMGATE_TRUSTED_PROXIES", Default: "none", Meaning: "comma-separated addresses or CIDRs of proxies whose X-Forwarded-For is believed",
		Value: func(c apiConfig, _ string) string { return listOr(c.TrustedProxies, "(none)") }},
	{Name: "STREAMGATE_DRAIN_DELAY", Default: "5s", Meaning: "on SIGTERM, how long /readyz answers 503 before the listener closes",
		Value: func(c apiConfig, _ string) string { return shortDuration(c.DrainDelay) }},
	{Name: "STREAMGATE_SHUTDOWN_TIMEOUT", Default: "10s", Meaning: "graceful stop deadline",
		Value: func(c apiConfig, _ string) string { return shortDuration(c.ShutdownTimeout) }},
	{Name: "STREAMGATE_PUBSUB_KEEPALIVE", Default: "15s", Meaning: "how long a pub/sub connection may be quiet before the node pings it",
		Value: func(c apiConfig, _ string) string { return shortDuration(c.PubSubKeepalive) }},
	{Name: "STREAMGATE_ALLOW_PRIVATE_URLS", Default: "false", Meaning: "true lets webhook and JWKS URLs reach private addresses (tests only)",
		Value: func(c apiConfig, _ string) string { return strconv.FormatBool(c.AllowPrivateURLs) }},
	{Name: "STREAMGATE_LOG_LEVEL", Default: "info", Meaning: "debug, info, warn or error",
		Value: func(c apiConfig, _ string) string { return c.LogLevel }},
	{Name: "STREAMGATE_DEMO", Default: "on in dev mode, else off", Meaning: "on runs a small demo tenant",
		Value: func(c apiConfig, _ string) string { return map[bool]string{true: "on", false: "off"}[c.Demo] }},
	{Name: "STREAMGATE_PPROF_ADDR", Default: "empty: off", Meaning: "serve Go's profiles on this separate address; never expose it",
		Value: func(c apiConfig, _ string) string { return orText(c.PprofAddr, "(off)") }},
	{Name: "STREAMGATE_METRICS_TENANTS", Default: "20", Meaning: "tenants with their own series in /metrics",
		Value: func(c apiConfig, _ string) string { return strconv.Itoa(c.MetricsTenants) }},
	{Name: "STREAMGATE_SESSION_BUFFER", Default: "256", Meaning: "events a session may have queued before drops",
		Value: func(c apiConfig, _ string) string { return strconv.Itoa(c.SessionBuffer) }},
	{Name: "STREAMGATE_MAX_NEW_CONNS", Default: "1024", Meaning: "connections held on their first request; more wait to be accepted (0: no bound)",
		Value: func(c apiConfig, _ string) string { return strconv.Itoa(c.MaxNewConns) }},
	{Name: "STREAMGATE_WRITE_TIMEOUT", Default: "10s", Meaning: "one write to a stream; a client that cannot take it is cut",
		Value: func(c apiConfig, _ string) string { return shortDuration(c.WriteTimeout) }},
	{Name: "STREAMGATE_BODY_TIMEOUT", Default: "30s", Meaning: "how long a request body may take to arrive after its headers (408 past it)",
		Value: func(c apiConfig, _ string) string { return shortDuration(c.BodyTimeout) }},
	{Name: "STREAMGATE_HEARTBEAT", Default: "15s", Meaning: "the : ping interval of idle streams (at most 15s)",
		Value: func(c apiConfig, _ string) string { return shortDuration(c.Heartbeat) }},
	{Name: "STREAMGATE_TOKEN_WARNING", Default: "60s", Meaning: "how long before a session's token expires the stream gets token_expiring",
		Value: func(c apiConfig, _ string) string { return shortDuration(c.TokenWarning) }},
	{Name: "STREAMGATE_PRESENCE_LEASE", Default: "15s", Meaning: "how long a node's presence entries outlive it when it stops renewing them",
		Value: func(c apiConfig, _ string) string { return shortDuration(c.PresenceLease) }},
	{Name: "STREAMGATE_DEFAULT_MAX_CONNECTIONS", Default: "10000", Meaning: "a new tenant's limit",
		Value: func(c apiConfig, _ string) string { return strconv.Itoa(c.DefaultLimits.MaxConnections) }},
	{Name: "STREAMGATE_DEFAULT_MAX_SUBSCRIPTIONS_PER_SESSION", Default: "100", Meaning: "a new tenant's limit",
		Value: func(c apiConfig, _ string) string { return strconv.Itoa(c.DefaultLimits.MaxSubscriptionsPerSession) }},
	{Name: "STREAMGATE_DEFAULT_PUBLISH_PER_SECOND", Default: "100", Meaning: "a new tenant's limit",
		Value: func(c apiConfig, _ string) string { return strconv.Itoa(c.DefaultLimits.PublishPerSecond) }},
	{Name: "STREAMGATE_DEFAULT_MAX_MESSAGE_BYTES", Default: "65536", Meaning: "a new tenant's limit",
		Value: func(c apiConfig, _ string) string { return strconv.Itoa(c.DefaultLimits.MaxMessageBytes) }},
	{Name: "STREAMGATE_DEFAULT_HISTORY_EVENTS", Default: "10000", Meaning: "a new tenant's limit: events kept per channel",
		Value: func(c apiConfig, _ string) string { return strconv.Itoa(c.DefaultLimits.HistoryEvents) }},
	{Name: "STREAMGATE_DEFAULT_HISTORY_SECONDS", Default: "300", Meaning: "a new tenant's limit: seconds kept per channel",
		Value: func(c apiConfig, _ string) string { return strconv.Itoa(c.DefaultLimits.HistorySeconds) }},
	{Name: "STREAMGATE_RATE_SIGNUP", Default: "10-M", Meaning: "signups per client address (<count>-<S|M|H|D>)",
		Value: func(c apiConfig, _ string) string { return c.Rates.Signup.String() }},
	{Name: "STREAMGATE_RATE_STREAM_IP", Default: "120-M", Meaning: "stream connects per client address, counted per node",
		Value: func(c apiConfig, _ string) string { return c.Rates.StreamClient.String() }},
	{Name: "STREAMGATE_RATE_STREAM_TENANT", Default: "6000-M", Meaning: "stream connects per tenant",
		Value: func(c apiConfig, _ string) string { return c.Rates.StreamTenant.String() }},
	{Name: "STREAMGATE_RATE_TOKENS", Default: "6000-M", Meaning: "POST /v1/tokens per tenant",
		Value: func(c apiConfig, _ string) string { return c.Rates.Tokens.String() }},
	{Name: "STREAMGATE_JOB_RETENTION", Default: "168h", Meaning: "how long a finished job's or workflow's state is kept",
		Value: func(c apiConfig, _ string) string { return shortDuration(c.JobRetention) }},
	{Name: "OTEL_EXPORTER_OTLP_ENDPOINT", Default: "unset: no trace export", Meaning: "the OTLP collector's base URL"},
	{Name: "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", Default: "unset", Meaning: "the full OTLP traces URL; wins over the one above"},
	{Name: "OTEL_EXPORTER_OTLP_PROTOCOL", Default: "http/protobuf", Meaning: "or grpc (OTEL_EXPORTER_OTLP_TRACES_PROTOCOL wins)"},
	{Name: "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", Default: "unset", Meaning: "http/protobuf or grpc, for traces"},
	{Name: "OTEL_EXPORTER_OTLP_HEADERS", Default: "unset", Meaning: "headers sent to the collector (often a credential)",
		Value: func(_ apiConfig, raw string) string { return orText(redactIf(raw), "(unset)") }},
	{Name: "OTEL_SDK_DISABLED", Default: "false", Meaning: "true exports nothing"},
	{Name: "OTEL_TRACES_EXPORTER", Default: "otlp", Meaning: "otlp or none"},
	{Name: "OTEL_TRACES_SAMPLER", Default: "parentbased_always_on", Meaning: "always_on, always_off, traceidratio, or their parentbased_ forms"},
	{Name: "OTEL_TRACES_SAMPLER_ARG", Default: "1", Meaning: "the ratio, 0 to 1, of the traceidratio samplers"},
	{Name: "OTEL_SERVICE_NAME", Default: "streamgate-api", Meaning: "the service name on traces and metrics"},
	{Name: "GOMEMLIMIT", Default: "90% of the container's memory limit, if any", Meaning: "the Go runtime's soft memory limit, e.g. 900MiB"},
	{Name: "GOMAXPROCS", Default: "the cores, or the container's CPU limit rounded up (at least 2)", Meaning: "threads running Go code at once: a node's share of the cores where nodes share a machine"},
}

// redactURL hides a URL's password.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return redacted
	}
	return u.Redacted()
}

func redactIf(raw string) string {
	if raw == "" {
		return ""
	}
	return redacted
}

func listOr(items []string, none string) string {
	if len(items) == 0 {
		return none
	}
	return strings.Join(items, ",")
}

func orText(s, none string) string {
	if s == "" {
		return none
	}
	return s
}

// shortDuration writes d the way the variables are written: 168h, 1m30s, 500ms.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
