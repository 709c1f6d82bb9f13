// Package tenant owns tenants, their limits, API keys, signing keys and identity providers, and
// the verification of end-user tokens. It knows Redis, and of HTTP only the JWKS documents it
// fetches.
package tenant

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	streamgate "github.com/streamgate/streamgate"
)

// Sentinel errors; the HTTP edge maps each to one status and code.
var (
	ErrNotFound     = errors.New("not found")
	ErrUnauthorized = errors.New("unauthorized")
	ErrSuspended    = errors.New("tenant is suspended")
	ErrInvalid      = errors.New("invalid request")
	ErrNoSigningKey = errors.New("the tenant has no signing key: create one with POST /v1/signing-keys")
	// ErrConflict means another tenant (or this one) already holds what was asked for.
	ErrConflict = errors.New("conflict")
	// ErrLimitExceeded means a per-tenant cap on credentials (identity providers) is reached.
	ErrLimitExceeded = errors.New("limit exceeded")
)

// Limits are a tenant's caps. Zero values never reach the store: every field is validated.
type Limits struct {
	MaxConnections             int `json:"max_connections"`
	MaxSubscriptionsPerSession int `json:"max_subscriptions_per_session"`
	PublishPerSecond           int `json:"publish_per_second"`
	MaxMessageBytes            int `json:"max_message_bytes"`
	HistoryEvents              int `json:"history_events"`
	HistorySeconds             int `json:"history_seconds"`
}

// DefaultLimits are the public contract's defaults for a new tenant.
func DefaultLimits() Limits {
	return Limits{
		MaxConnections:             10000,
		MaxSubscriptionsPerSession: 100,
		PublishPerSecond:           100,
		MaxMessageBytes:            65536,
		HistoryEvents:              10000,
		HistorySeconds:             300,
	}
}

// Bounds on limit values: beyond these a single tenant could exhaust a node or Redis.
var limitBounds = []struct {
	name     string
	get      func(*Limits) *int
	min, max int
}{
	{"max_connections", func(l *Limits) *int { return &l.MaxConnections }, 1, 10_000_000},
	{"max_subscriptions_per_session", func(l *Limits) *int { return &l.MaxSubscriptionsPerSession }, 1, 10_000},
	{"publish_per_second", func(l *Limits) *int { return &l.PublishPerSecond }, 1, 10_000_000},
	{"max_message_bytes", func(l *Limits) *int { return &l.MaxMessageBytes }, 1, 1 << 20},
	{"history_events", func(l *Limits) *int { return &l.HistoryEvents }, 1, 1_000_000},
	{"history_seconds", func(l *Limits) *int { return &l.HistorySeconds }, 1, 7 * 24 * 3600},
}

// Validate reports the first limit outside its range, wrapping ErrInvalid.
func (l Limits) Validate() error {
	for _, b := range limitBounds {
		if v := *b.get(&l); v < b.min || v > b.max {
			return fmt.Errorf("%s must be between %d and %d, got %d: %w", b.name, b.min, b.max, v, ErrInvalid)
		}
	}
	return nil
}

// LimitsPatch is a partial update of Limits: nil fields keep their value.
type LimitsPatch struct {
	MaxConnections             *int `json:"max_connections"`
	MaxSubscriptionsPerSession *int `json:"max_subscriptions_per_session"`
	PublishPerSecond           *int `json:"publish_per_second"`
	MaxMessageBytes            *int `json:"max_message_bytes"`
	HistoryEvents              *int `json:"history_events"`
	HistorySeconds             *int `json:"history_seconds"`
}

// Apply returns l with the patch's set fields.
func (p LimitsPatch) Apply(l Limits) Limits {
	for _, f := range []struct {
		v   *int
		dst *int
	}{
		{p.MaxConnections, &l.MaxConnections},
		{p.MaxSubscriptionsPerSession, &l.MaxSubscriptionsPerSession},
		{p.PublishPerSecond, &l.PublishPerSecond},
		{p.MaxMessageBytes, &l.MaxMessageBytes},
		{p.HistoryEvents, &l.HistoryEvents},
		{p.HistorySeconds, &l.HistorySeconds},
	} {
		if f.v != nil {
			*f.dst = *f.v
		}
	}
	return l
}

// Tenant is one customer of the service.
type Tenant struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
	Suspended bool      `json:"suspended"`
	Limits    Limits    `json:"limits"`
	Settings  Settings  `json:"settings"`
}

// MaxPresencePatterns bounds Settings.PresenceChannels.
const MaxPresencePatterns = 100

// Settings are what a tenant chooses about its channels.
type Settings struct {
	// PresenceChannels are the patterns of the channels that keep presence; none by default.
	PresenceChannels []string `json:"presence_channels"`
}

// Validate reports the first setting out of bounds, wrapping ErrInvalid.
func (s Settings) Validate() error {
	if len(s.PresenceChannels) > MaxPresencePatterns {
		return fmt.Errorf("presence_channels may hold at most %d patterns: %w", MaxPresencePatterns, ErrInvalid)
	}
	for _, p := range s.PresenceChannels {
		if !streamgate.ValidPattern(p) {
			return fmt.Errorf("presence_channels: %q is not a channel pattern (1 to 200 characters of A-Z a-z 0-9 _ - . : @ = , and *): %w", truncate(p, 60), ErrInvalid)
		}
	}
	return nil
}

// Presence reports whether channel keeps presence.
func (s Settings) Presence(channel string) bool {
	return streamgate.Granted(s.PresenceChannels, channel)
}

// APIKey is a tenant backend's credential. Secret is set only when the key is created.
type APIKey struct {
	ID         string     `json:"id"`
	Prefix     string     `json:"prefix"`
	CreatedAt  time.Time  `json:"created_at"`
	LastUsedAt *time.Time `json:"last_used_at"`
	Secret     string     `json:"-"`
}

// SigningKey is a secret with which end-user tokens are signed (HS256). Secret is set only when
// the key is created.
type SigningKey struct {
	ID        string    `json:"id"`
	CreatedAt time.Time `json:"created_at"`
	Secret    string    `json:"-"`
}

// Claims are what a verified end-user token grants.
type Claims struct {
	TenantID string
	// KeyID is what vouches for the token: the signing key's id, or the identity provider's
	// for a token the tenant's own provider minted. Deleting it ends the token's sessions.
	KeyID     string
	Sub       string
	Channels  []string
	ExpiresAt time.Time
	// Info is the token's info claim (a JSON object of at most 1 KiB, compacted), or nil.
	Info json.RawMessage
}

// Event tells every node about a change that affects live sessions. It travels on the control
// channel as JSON.
type Event struct {
	Type     string `json:"type"`
	TenantID string `json:"tenant_id"`
	KeyID    string `json:"key_id,omitempty"`
}

// Event types.
const (
	EventSigningKeyDeleted = "signing_key_deleted"
	// EventIdentityProviderDeleted carries the provider id as KeyID.
	EventIdentityProviderDeleted = "identity_provider_deleted"
	EventSuspended               = "tenant_suspended"
	EventLimitsChanged           = "limits_changed"
)
