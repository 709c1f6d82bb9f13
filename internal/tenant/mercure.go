package tenant

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamgate/streamgate/internal/keys"
)

// MercureKeyID stands, in a session's KeyID, for "authenticated by the tenant's Mercure
// configuration": a change of that configuration ends exactly those sessions.
const MercureKeyID = "mercure"

// EventMercureChanged tells every node that a tenant's Mercure hub was turned off or now checks
// subscribers differently: its Mercure subscribers are closed, and reconnect under the new rules.
const EventMercureChanged = "mercure_changed"

// The JWT algorithms a Mercure hub accepts besides AlgRS256 and AlgES256: HMAC keys are
// secrets, the others PEM public keys.
const (
	AlgHS256 = "HS256"
	AlgHS512 = "HS512"
)

// Bounds of a Mercure configuration.
const (
	maxMercureHosts   = 20
	maxMercureOrigins = 100
	maxMercureKey     = 16 << 10
)

// MercureConfig is a tenant's Mercure hub: the hosts it answers on and how it checks tokens. The
// keys go in with SetMercure and never come out of the API.
type MercureConfig struct {
	Hosts            []string `json:"hosts"`
	PublisherKey     string   `json:"-"`
	SubscriberKey    string   `json:"-"`
	Algorithm        string   `json:"jwt_algorithm"`
	Anonymous        bool     `json:"anonymous"`
	SubscriptionsAPI bool     `json:"subscriptions_api"`
	CORSOrigins      []string `json:"cors_origins"`
}

// MercureHub is a tenant's hub as requests use it: the configuration and its keys ready for
// verification ([]byte for HMAC, *rsa.PublicKey or *ecdsa.PublicKey). SubscriberKey is nil when
// the hub has none (anonymous subscribers only).
type MercureHub struct {
	TenantID      string
	Config        MercureConfig
	PublisherKey  any
	SubscriberKey any
}

type mercureRecord struct {
	Hosts            []string  `json:"hosts"`
	Algorithm        string    `json:"jwt_algorithm"`
	Anonymous        bool      `json:"anonymous"`
	SubscriptionsAPI bool      `json:"subscriptions_api"`
	CORSOrigins      []string  `json:"cors_origins"`
	PublisherKey     string    `json:"publisher_key_enc"`
	SubscriberKey    string    `json:"subscriber_key_enc,omitempty"`
	UpdatedAt        time.Time `json:"updated_at"`
}

// Associated data of the encrypted keys: a ciphertext moved to another tenant or role does not
// decrypt.
const (
	mercurePublisherAD  = "mercure/publisher"
	mercureSubscriberAD = "mercure/subscriber"
)

// SetMercure replaces the tenant's Mercure configuration and returns it as stored (hosts in
// lower case, defaults filled in). It returns ErrInvalid for a bad configuration and ErrConflict
// when a host belongs to another tenant; either way nothing changes. Every node applies the
// change within cacheTTL; subscribers are closed (to reconnect under the new rules) when their
// side of the configuration changed.
func (s *Store) SetMercure(ctx context.Context, tenantID string, cfg MercureConfig) (MercureConfig, error) {
	cfg, err := normalizeMercure(cfg)
	if err != nil {
		return MercureConfig{}, err
	}
	if _, _, err := mercureKeys(cfg); err != nil {
		return MercureConfig{}, err
	}
	prev, hadPrev, err := s.mercureRecord(ctx, tenantID)
	if err != nil {
		return MercureConfig{}, err
	}
	rec := mercureRecord{
		Hosts: cfg.Hosts, Algorithm: cfg.Algorithm, Anonymous: cfg.Anonymous,
		SubscriptionsAPI: cfg.SubscriptionsAPI, CORSOrigins: cfg.CORSOrigins, UpdatedAt: s.now().UTC(),
	}
	if rec.PublisherKey, err = s.encrypt(tenantID, mercurePublisherAD, []byte(cfg.PublisherKey)); err != nil {
		return MercureConfig{}, err
	}
	if cfg.SubscriberKey != "" {
		if rec.SubscriberKey, err = s.encrypt(tenantID, mercureSubscriberAD, []byte(cfg.SubscriberKey)); err != nil {
			return MercureConfig{}, err
		}
	}
	// Hosts are claimed before the configuration names them, and released after it no longer
	// does: a host never points at a tenant whose configuration does not list it for long, and
	// two tenants never both hold one.
	if err := s.claimHosts(ctx, tenantID, cfg.Hosts, prev.Hosts); err != nil {
		return MercureConfig{}, err
	}
	raw, _ := json.Marshal(rec)
	if err := s.rdb.Set(ctx, keys.Mercure(tenantID), raw, 0).Err(); err != nil {
		s.releaseHosts(ctx, tenantID, without(cfg.Hosts, prev.Hosts))
		return MercureConfig{}, fmt.Errorf("store the Mercure configuration: %w", err)
	}
	s.releaseHosts(ctx, tenantID, without(prev.Hosts, cfg.Hosts))
	s.forgetMercure(tenantID, prev.Hosts, cfg.Hosts)
	if hadPrev && s.subscribersAffected(tenantID, prev, cfg) {
		if err := s.notify(ctx, Event{Type: EventMercureChanged, TenantID: tenantID}); err != nil {
			return MercureConfig{}, err
		}
	}
	cfg.PublisherKey, cfg.SubscriberKey = "", ""
	return cfg, nil
}

// subscribersAffected reports whether a live subscriber may no longer be admitted, or admitted
// differently, under next: its tokens are checked with another key or algorithm, or anonymous
// subscribers are no longer welcome.
func (s *Store) subscribersAffected(tenantID string, prev mercureRecord, next MercureConfig) bool {
	if prev.Algorithm != next.Algorithm || (prev.Anonymous && !next.Anonymous) {
		return true
	}
	if prev.SubscriberKey == "" || next.SubscriberKey == "" {
		return prev.SubscriberKey != "" || next.SubscriberKey != ""
	}
	old, err := s.decrypt(tenantID, mercureSubscriberAD, prev.SubscriberKey)
	return err != nil || string(old) != next.SubscriberKey
}

// Mercure returns the tenant's Mercure configuration, without its keys; ErrNotFound when the
// hub is off.
func (s *Store) Mercure(ctx context.Context, tenantID string) (MercureConfig, error) {
	rec, ok, err := s.mercureRecord(ctx, tenantID)
	if err != nil {
		return MercureConfig{}, err
	}
	if !ok {
		return MercureConfig{}, fmt.Errorf("the tenant has no Mercure hub: configure one with PUT /v1/mercure: %w", ErrNotFound)
	}
	return MercureConfig{
		Hosts: nonNilStrings(rec.Hosts), Algorithm: rec.Algorithm, Anonymous: rec.Anonymous,
		SubscriptionsAPI: rec.SubscriptionsAPI, CORSOrigins: nonNilStrings(rec.CORSOrigins),
	}, nil
}

// DeleteMercure turns the tenant's hub off: its hosts are free again and its subscribers are
// closed on every node. ErrNotFound when it was off.
func (s *Store) DeleteMercure(ctx context.Context, tenantID string) error {
	rec, ok, err := s.mercureRecord(ctx, tenantID)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("the tenant has no Mercure hub: %w", ErrNotFound)
	}
	if err := s.rdb.Del(ctx, keys.Mercure(tenantID)).Err(); err != nil {
		return fmt.Errorf("delete the Mercure configuration: %w", err)
	}
	s.releaseHosts(ctx, tenantID, rec.Hosts)
	s.forgetMercure(tenantID, rec.Hosts, nil)
	return s.notify(ctx, Event{Type: EventMercureChanged, TenantID: tenantID})
}

// MercureHub returns the tenant's hub as this node last saw it, at most cacheTTL ago, with its
// keys decrypted and parsed; ErrNotFound when the hub is off.
func (s *Store) MercureHub(ctx context.Context, tenantID string) (MercureHub, error) {
	if h, ok := s.hubs.get(tenantID); ok {
		if h == nil {
			return MercureHub{}, fmt.Errorf("the tenant has no Mercure hub: %w", ErrNotFound)
		}
		return *h, nil
	}
	rec, ok, err := s.mercureRecord(ctx, tenantID)
	if err != nil {
		return MercureHub{}, err
	}
	if !ok {
		s.hubs.put(tenantID, nil)
		return MercureHub{}, fmt.Errorf("the tenant has no Mercure hub: %w", ErrNotFound)
	}
	cfg := MercureConfig{
		Hosts: rec.Hosts, Algorithm: rec.Algorithm, Anonymous: rec.Anonymous,
		SubscriptionsAPI: rec.SubscriptionsAPI, CORSOrigins: rec.CORSOrigins,
	}
	pub, err := s.decrypt(tenantID, mercurePublisherAD, rec.PublisherKey)
	if err != nil {
		return MercureHub{}, fmt.Errorf("mercure publisher key: %w", err)
	}
	cfg.PublisherKey = string(pub)
	if rec.SubscriberKey != "" {
		sub, err := s.decrypt(tenantID, mercureSubscriberAD, rec.SubscriberKey)
		if err != nil {
			return MercureHub{}, fmt.Errorf("mercure subscriber key: %w", err)
		}
		cfg.SubscriberKey = string(sub)
	}
	h := MercureHub{TenantID: tenantID, Config: cfg}
	if h.PublisherKey, h.SubscriberKey, err = mercureKeys(cfg); err != nil {
		return MercureHub{}, fmt.Errorf("mercure keys of tenant %s: %v", tenantID, err) // stored valid: not the caller's fault
	}
	s.hubs.put(tenantID, &h)
	return h, nil
}

// MercureHost returns the tenant whose hub answers on host (lower case, without a port), as this
// node last saw it, at most cacheTTL ago; ErrNotFound when no tenant claims it.
func (s *Store) MercureHost(ctx context.Context, host string) (string, error) {
	id, ok := s.hosts.get(host)
	if !ok {
		var err error
		id, err = s.rdb.Get(ctx, keys.MercureHost(host)).Result()
		if errors.Is(err, redis.Nil) {
			id = ""
		} else if err != nil {
			return "", fmt.Errorf("look up Mercure host: %w", err)
		}
		s.hosts.put(host, id)
	}
	if id == "" {
		return "", fmt.Errorf("no Mercure hub on host %s: %w", truncate(host, 60), ErrNotFound)
	}
	return id, nil
}

func (s *Store) mercureRecord(ctx context.Context, tenantID string) (mercureRecord, bool, error) {
	raw, err := s.rdb.Get(ctx, keys.Mercure(tenantID)).Bytes()
	if errors.Is(err, redis.Nil) {
		return mercureRecord{}, false, nil
	}
	if err != nil {
		return mercureRecord{}, false, fmt.Errorf("load the Mercure configuration: %w", err)
	}
	var rec mercureRecord
	if err := json.Unmarshal(raw, &rec); err != nil {
		return mercureRecord{}, false, fmt.Errorf("decode the Mercure configuration of tenant %s: %w", tenantID, err)
	}
	return rec, true, nil
}

// claimHosts makes every host in want point at the tenant. Hosts in held are the tenant's
// already. On a host another tenant holds it gives back what it claimed and returns ErrConflict.
func (s *Store) claimHosts(ctx context.Context, tenantID string, want, held []string) error {
	var claimed []string
	for _, h := range want {
		if slices.Contains(held, h) {
			// Ours by the stored configuration; set it again in case an earlier change stopped
			// half way.
			if err := s.rdb.Set(ctx, keys.MercureHost(h), tenantID, 0).Err(); err != nil {
				s.releaseHosts(ctx, tenantID, claimed)
				return fmt.Errorf("claim Mercure host: %w", err)
			}
			continue
		}
		ok, err := s.rdb.SetNX(ctx, keys.MercureHost(h), tenantID, 0).Result()
		if err != nil {
			s.releaseHosts(ctx, tenantID, claimed)
			return fmt.Errorf("claim Mercure host: %w", err)
		}
		if ok {
			claimed = append(claimed, h)
			continue
		}
		owner, err := s.rdb.Get(ctx, keys.MercureHost(h)).Result()
		if err == nil && owner == tenantID {
			continue // left over from a change that stopped half way: ours
		}
		s.releaseHosts(ctx, tenantID, claimed)
		if err != nil && !errors.Is(err, redis.Nil) {
			return fmt.Errorf("claim Mercure host: %w", err)
		}
		return fmt.Errorf("the host %s is another tenant's Mercure host: %w", h, ErrConflict)
	}
	return nil
}

// releaseScript deletes a host's index entry only while it still names the tenant.
var releaseScript = redis.NewScript(`if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`)

// releaseHosts frees hosts the tenant holds. A failure leaves a host pointing at a tenant whose
// configuration does not list it: requests there find no hub, and the next change of that
// tenant's configuration or a later claim by the same tenant repairs it.
func (s *Store) releaseHosts(ctx context.Context, tenantID string, hosts []string) {
	for _, h := range hosts {
		_ = releaseScript.Run(ctx, s.rdb, []string{keys.MercureHost(h)}, tenantID).Err()
		s.hosts.drop(h)
	}
}

// forgetMercure drops this node's cached copies, so that the node that made a change applies it
// at once; the others follow within cacheTTL.
func (s *Store) forgetMercure(tenantID string, hostLists ...[]string) {
	s.hubs.drop(tenantID)
	for _, hosts := range hostLists {
		for _, h := range hosts {
			s.hosts.drop(h)
		}
	}
}

// normalizeMercure checks a configuration and returns it in its stored form.
func normalizeMercure(cfg MercureConfig) (MercureConfig, error) {
	if len(cfg.Hosts) > maxMercureHosts {
		return cfg, fmt.Errorf("at most %d hosts: %w", maxMercureHosts, ErrInvalid)
	}
	hosts := make([]string, 0, len(cfg.Hosts))
	for _, h := range cfg.Hosts {
		h = strings.ToLower(h)
		if !ValidHostName(h) {
			return cfg, fmt.Errorf("hosts: %q is not a host name (letters, digits, hyphens and dots, no scheme, port or path): %w", truncate(h, 60), ErrInvalid)
		}
		if !slices.Contains(hosts, h) {
			hosts = append(hosts, h)
		}
	}
	cfg.Hosts = hosts
	if cfg.Algorithm == "" {
		cfg.Algorithm = AlgHS256
	}
	switch cfg.Algorithm {
	case AlgHS256, AlgHS512, AlgRS256, AlgES256:
	default:
		return cfg, fmt.Errorf("jwt_algorithm must be one of HS256, HS512, RS256, ES256: %w", ErrInvalid)
	}
	if cfg.PublisherKey == "" {
		return cfg, fmt.Errorf("publisher_jwt_key is required: %w", ErrInvalid)
	}
	if cfg.SubscriberKey == "" && !cfg.Anonymous {
		return cfg, fmt.Errorf("subscriber_jwt_key is required unless anonymous is true: %w", ErrInvalid)
	}
	if len(cfg.PublisherKey) > maxMercureKey || len(cfg.SubscriberKey) > maxMercureKey {
		return cfg, fmt.Errorf("a key is at most %d bytes: %w", maxMercureKey, ErrInvalid)
	}
	if len(cfg.CORSOrigins) > maxMercureOrigins {
		return cfg, fmt.Errorf("at most %d cors_origins: %w", maxMercureOrigins, ErrInvalid)
	}
	origins := make([]string, 0, len(cfg.CORSOrigins))
	for _, o := range cfg.CORSOrigins {
		o = strings.TrimSuffix(o, "/")
		if !validOrigin(o) {
			return cfg, fmt.Errorf("cors_origins: %q is not an origin such as https://acme.example or *: %w", truncate(o, 60), ErrInvalid)
		}
		if !slices.Contains(origins, o) {
			origins = append(origins, o)
		}
	}
	cfg.CORSOrigins = origins
	return cfg, nil
}

// ValidHostName reports whether h is a lower-case DNS host name without a port: labels of
// letters, digits and inner hyphens, joined by dots, at most 253 characters.
func ValidHostName(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	for label := range strings.SplitSeq(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
				return false
			}
		}
	}
	return true
}

func validOrigin(o string) bool {
	if o == "*" {
		return true
	}
	u, err := url.Parse(o)
	return err == nil && (u.Scheme == "https" || u.Scheme == "http") && u.Host != "" &&
		u.Path == "" && u.RawQuery == "" && u.Fragment == "" && u.User == nil && !u.ForceQuery &&
		u.String() == o
}

// mercureKeys parses the configuration's keys for its algorithm: ErrInvalid when one does not fit.
func mercureKeys(cfg MercureConfig) (pub, sub any, err error) {
	if pub, err = parseMercureKey(cfg.Algorithm, cfg.PublisherKey); err != nil {
		return nil, nil, fmt.Errorf("publisher_jwt_key: %w", err)
	}
	if cfg.SubscriberKey != "" {
		if sub, err = parseMercureKey(cfg.Algorithm, cfg.SubscriberKey); err != nil {
			return nil, nil, fmt.Errorf("subscriber_jwt_key: %w", err)
		}
	}
	return pub, sub, nil
}

func parseMercureKey(alg, key string) (any, error) {
	switch alg {
	case AlgHS256, AlgHS512:
		return []byte(key), nil
	}
	block, _ := pem.Decode([]byte(key))
	if block == nil {
		return nil, fmt.Errorf("for %s the key is a PEM public key (-----BEGIN PUBLIC KEY-----): %w", alg, ErrInvalid)
	}
	var parsed any
	var err error
	switch block.Type {
	case "PUBLIC KEY":
		parsed, err = x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		parsed, err = x509.ParsePKCS1PublicKey(block.Bytes)
	default:
		return nil, fmt.Errorf("a PEM block of type %q is not a public key: %w", block.Type, ErrInvalid)
	}
	if err != nil {
		return nil, fmt.Errorf("the PEM public key cannot be read: %w", ErrInvalid)
	}
	switch k := parsed.(type) {
	case *rsa.PublicKey:
		if alg == AlgRS256 {
			return k, nil
		}
	case *ecdsa.PublicKey:
		if alg == AlgES256 && k.Curve == elliptic.P256() {
			return k, nil
		}
	}
	return nil, fmt.Errorf("the key does not fit %s (RS256 takes an RSA key, ES256 a P-256 key): %w", alg, ErrInvalid)
}

// without returns the elements of a that are not in b.
func without(a, b []string) []string {
	var out []string
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}

func nonNilStrings(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
