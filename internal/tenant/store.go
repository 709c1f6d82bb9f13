package tenant

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/redis/go-redis/v9"

	streamgate "github.com/streamgate/streamgate"
	"github.com/streamgate/streamgate/internal/keys"
	"github.com/streamgate/streamgate/internal/urlguard"
)

// Prefixes of the ids and secrets this package issues. Clients treat ids as opaque.
const (
	apiKeySecretPrefix = "sgk_"
	// cacheTTL bounds how long a node may act on a revoked key, a deleted signing key or
	// identity provider, or changed limits: the contract promises 1 s for keys and 2 s for limits.
	cacheTTL = 500 * time.Millisecond
)

// Store keeps tenants and their credentials in Redis, with a short per-node cache in front of
// the lookups that every request makes.
type Store struct {
	rdb      redis.UniversalClient
	aead     cipher.AEAD
	defaults Limits
	now      func() time.Time
	// validator checks a verified token's times: exp required, nbf honoured, TokenLeeway.
	validator *jwt.Validator

	tenants *cache[Tenant]
	apiKeys *cache[apiKeyRef]
	sigKeys *cache[sigKeyRef]
	hubs    *cache[*MercureHub] // nil: the tenant has no hub
	hosts   *cache[string]      // Mercure host → tenant id, "" for none
	idps    *cache[idpRef]

	// guard and fetcher reach identity providers' JWKS URLs; jwks keeps their documents.
	guard   urlguard.Guard
	fetcher *http.Client
	jwks    *jwksCache
}

// Option changes how a Store works.
type Option func(*Store)

// WithURLGuard sets which addresses identity providers' JWKS URLs may reach. The default allows
// public addresses only; tests and private networks allow private ones
// (STREAMGATE_ALLOW_PRIVATE_URLS).
func WithURLGuard(g urlguard.Guard) Option {
	return func(s *Store) { s.guard = g }
}

type apiKeyRef struct {
	TenantID string `json:"tenant_id"`
	KeyID    string `json:"key_id"`
}

type sigKeyRef struct {
	tenantID string
	secret   []byte
}

type apiKeyRecord struct {
	ID        string    `json:"id"`
	Prefix    string    `json:"prefix"`
	Hash      string    `json:"hash"`
	CreatedAt time.Time `json:"created_at"`
}

type sigKeyRecord struct {
	ID        string    `json:"id"`
	CreatedAt time.Time `json:"created_at"`
	// Secret is base64(nonce || AES-GCM ciphertext), bound to the tenant and key id.
	Secret string `json:"secret_enc"`
}

// NewStore returns a store on rdb. secretKey (32 bytes) encrypts signing-key secrets at rest;
// defaults are the limits a new tenant gets.
func NewStore(rdb redis.UniversalClient, secretKey []byte, defaults Limits, opts ...Option) (*Store, error) {
	if len(secretKey) != 32 {
		return nil, fmt.Errorf("secret key must be 32 bytes, got %d", len(secretKey))
	}
	if err := defaults.Validate(); err != nil {
		return nil, fmt.Errorf("default limits: %w", err)
	}
	block, err := aes.NewCipher(secretKey)
	if err != nil {
		return nil, fmt.Errorf("secret key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("secret key: %w", err)
	}
	s := &Store{
		rdb:      rdb,
		aead:     aead,
		defaults: defaults,
		now:      time.Now,
		tenants:  newCache[Tenant](cacheTTL),
		apiKeys:  newCache[apiKeyRef](cacheTTL),
		sigKeys:  newCache[sigKeyRef](cacheTTL),
		hubs:     newCache[*MercureHub](cacheTTL),
		hosts:    newCache[string](cacheTTL),
		idps:     newCache[idpRef](cacheTTL),
		jwks:     newJWKSCache(),
	}
	for _, o := range opts {
		o(s)
	}
	s.fetcher = s.guard.Client(jwksTimeout)
	s.validator = jwt.NewValidator(
		jwt.WithLeeway(TokenLeeway),
		jwt.WithExpirationRequired(),
		jwt.WithTimeFunc(func() time.Time { return s.now() }), // tests set s.now after this
	)
	return s, nil
}

// Defaults returns the limits a new tenant gets.
func (s *Store) Defaults() Limits { return s.defaults }

// Signup is what a new tenant receives, secrets included, exactly once.
type Signup struct {
	Tenant     Tenant
	APIKey     APIKey
	SigningKey SigningKey
}

// Create signs a new tenant up with one API key and one signing key.
func (s *Store) Create(ctx context.Context, name string) (Signup, error) {
	if n := len([]rune(name)); n < 1 || n > 100 || strings.TrimSpace(name) == "" {
		return Signup{}, fmt.Errorf("name must be 1 to 100 characters: %w", ErrInvalid)
	}
	now := s.now().UTC()
	t := Tenant{ID: streamgate.NewID("tn_"), Name: name, CreatedAt: now, Limits: s.defaults}
	ak, akRec := s.newAPIKey(now)
	sk, skRec, err := s.newSigningKey(t.ID, now)
	if err != nil {
		return Signup{}, err
	}
	limits, _ := json.Marshal(t.Limits)
	akJSON, _ := json.Marshal(akRec)
	skJSON, _ := json.Marshal(skRec)
	ref, _ := json.Marshal(apiKeyRef{TenantID: t.ID, KeyID: ak.ID})

	// The tenant's own keys first (one slot, one transaction), then the global indexes that make
	// them reachable: a failure part way leaves nothing a caller can use.
	_, err = s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, keys.Tenant(t.ID), "id", t.ID, "name", t.Name,
			"created_at", now.Format(time.RFC3339Nano), "suspended", "0", "limits", limits)
		p.HSet(ctx, keys.APIKeys(t.ID), ak.ID, akJSON)
		p.HSet(ctx, keys.SigningKeys(t.ID), sk.ID, skJSON)
		return nil
	})
	if err != nil {
		return Signup{}, fmt.Errorf("create tenant %s: %w", t.ID, err)
	}
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, keys.SigningKeyIndex(sk.ID), t.ID, 0)
		p.SAdd(ctx, keys.Tenants(), t.ID)
		p.Set(ctx, keys.APIKeyHash(akRec.Hash), ref, 0)
		return nil
	})
	if err != nil {
		return Signup{}, fmt.Errorf("index tenant %s: %w", t.ID, err)
	}
	return Signup{Tenant: t, APIKey: ak, SigningKey: sk}, nil
}

// Get loads a tenant from Redis; ErrNotFound if there is none.
func (s *Store) Get(ctx context.Context, id string) (Tenant, error) {
	vals, err := s.rdb.HGetAll(ctx, keys.Tenant(id)).Result()
	if err != nil {
		return Tenant{}, fmt.Errorf("load tenant %s: %w", id, err)
	}
	if len(vals) == 0 {
		return Tenant{}, fmt.Errorf("tenant %s: %w", id, ErrNotFound)
	}
	t := Tenant{ID: id, Name: vals["name"], Suspended: vals["suspended"] == "1", Limits: s.defaults}
	t.CreatedAt, _ = time.Parse(time.RFC3339Nano, vals["created_at"])
	if raw := vals["limits"]; raw != "" {
		if err := json.Unmarshal([]byte(raw), &t.Limits); err != nil {
			return Tenant{}, fmt.Errorf("decode limits of tenant %s: %w", id, err)
		}
	}
	if raw := vals["settings"]; raw != "" {
		if err := json.Unmarshal([]byte(raw), &t.Settings); err != nil {
			return Tenant{}, fmt.Errorf("decode settings of tenant %s: %w", id, err)
		}
	}
	s.tenants.put(id, t)
	return t, nil
}

// PutSettings replaces a tenant's settings; nothing changes if they are invalid (ErrInvalid).
// Every node sees them within the cache's time (half a second).
func (s *Store) PutSettings(ctx context.Context, id string, st Settings) (Tenant, error) {
	if err := st.Validate(); err != nil {
		return Tenant{}, err
	}
	patterns := make([]string, 0, len(st.PresenceChannels))
	for _, p := range st.PresenceChannels {
		if !slices.Contains(patterns, p) {
			patterns = append(patterns, p)
		}
	}
	st.PresenceChannels = patterns
	raw, _ := json.Marshal(st)
	// HSET on an existing tenant only: a deleted tenant's hash is not brought back.
	n, err := s.rdb.Exists(ctx, keys.Tenant(id)).Result()
	if err != nil {
		return Tenant{}, fmt.Errorf("load tenant %s: %w", id, err)
	}
	if n == 0 {
		return Tenant{}, fmt.Errorf("tenant %s: %w", id, ErrNotFound)
	}
	if err := s.rdb.HSet(ctx, keys.Tenant(id), "settings", raw).Err(); err != nil {
		return Tenant{}, fmt.Errorf("update settings of tenant %s: %w", id, err)
	}
	return s.Get(ctx, id)
}

// Cached returns the tenant as this node last saw it, at most half a second ago, loading it
// when the copy is older. Hot paths (publish, stream, token checks) use it.
func (s *Store) Cached(ctx context.Context, id string) (Tenant, error) {
	return s.tenants.load(id, func() (Tenant, error) { return s.Get(ctx, id) })
}

// List returns every tenant, ordered by creation.
func (s *Store) List(ctx context.Context) ([]Tenant, error) {
	ids, err := s.rdb.SMembers(ctx, keys.Tenants()).Result()
	if err != nil {
		return nil, fmt.Errorf("list tenants: %w", err)
	}
	out := make([]Tenant, 0, len(ids))
	for _, id := range ids {
		t, err := s.Cached(ctx, id)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	byCreation(out, func(x Tenant) (time.Time, string) { return x.CreatedAt, x.ID })
	return out, nil
}

// Update changes a tenant's limits and suspension. Nothing changes if the result is invalid.
// Every node hears of it on the control channel.
func (s *Store) Update(ctx context.Context, id string, patch LimitsPatch, suspended *bool) (Tenant, error) {
	t, err := s.Get(ctx, id)
	if err != nil {
		return Tenant{}, err
	}
	t.Limits = patch.Apply(t.Limits)
	if err := t.Limits.Validate(); err != nil {
		return Tenant{}, err
	}
	wasSuspended := t.Suspended
	if suspended != nil {
		t.Suspended = *suspended
	}
	limits, _ := json.Marshal(t.Limits)
	susp := "0"
	if t.Suspended {
		susp = "1"
	}
	if err := s.rdb.HSet(ctx, keys.Tenant(id), "limits", limits, "suspended", susp).Err(); err != nil {
		return Tenant{}, fmt.Errorf("update tenant %s: %w", id, err)
	}
	s.tenants.put(id, t)
	ev := Event{Type: EventLimitsChanged, TenantID: id}
	if t.Suspended && !wasSuspended {
		ev.Type = EventSuspended
	}
	if err := s.notify(ctx, ev); err != nil {
		return Tenant{}, err
	}
	return t, nil
}

// Authenticate resolves an API key secret to its tenant and key id. It returns ErrUnauthorized
// for an unknown or revoked key, ErrSuspended (with the tenant) for a suspended tenant.
func (s *Store) Authenticate(ctx context.Context, secret string) (Tenant, string, error) {
	if !strings.HasPrefix(secret, apiKeySecretPrefix) || len(secret) > 200 {
		return Tenant{}, "", fmt.Errorf("malformed API key: %w", ErrUnauthorized)
	}
	hash := hashSecret(secret)
	ref, err := s.apiKeys.load(hash, func() (apiKeyRef, error) {
		var ref apiKeyRef
		raw, err := s.rdb.Get(ctx, keys.APIKeyHash(hash)).Bytes()
		if errors.Is(err, redis.Nil) {
			return ref, fmt.Errorf("unknown or revoked API key: %w", ErrUnauthorized)
		}
		if err != nil {
			return ref, fmt.Errorf("look up API key: %w", err)
		}
		if err := json.Unmarshal(raw, &ref); err != nil {
			return ref, fmt.Errorf("decode API key: %w", err)
		}
		// Recorded at most once per cache period per node: cheap, and precise enough to answer
		// "is this key still in use?".
		s.rdb.HSet(ctx, keys.APIKeysUsed(ref.TenantID), ref.KeyID, s.now().UnixMilli())
		return ref, nil
	})
	if err != nil {
		return Tenant{}, "", err
	}
	t, err := s.Cached(ctx, ref.TenantID)
	if errors.Is(err, ErrNotFound) {
		return Tenant{}, "", fmt.Errorf("API key of a deleted tenant: %w", ErrUnauthorized)
	}
	if err != nil {
		return Tenant{}, "", err
	}
	if t.Suspended {
		return t, ref.KeyID, ErrSuspended
	}
	return t, ref.KeyID, nil
}

// CreateAPIKey issues a new API key for the tenant.
func (s *Store) CreateAPIKey(ctx context.Context, tenantID string) (APIKey, error) {
	ak, rec := s.newAPIKey(s.now().UTC())
	recJSON, _ := json.Marshal(rec)
	ref, _ := json.Marshal(apiKeyRef{TenantID: tenantID, KeyID: ak.ID})
	if err := s.rdb.HSet(ctx, keys.APIKeys(tenantID), ak.ID, recJSON).Err(); err != nil {
		return APIKey{}, fmt.Errorf("store API key: %w", err)
	}
	if err := s.rdb.Set(ctx, keys.APIKeyHash(rec.Hash), ref, 0).Err(); err != nil {
		return APIKey{}, fmt.Errorf("index API key: %w", err)
	}
	return ak, nil
}

// APIKeys lists the tenant's keys, oldest first, without secrets.
func (s *Store) APIKeys(ctx context.Context, tenantID string) ([]APIKey, error) {
	var r, u *redis.MapStringStringCmd
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		r = p.HGetAll(ctx, keys.APIKeys(tenantID))
		u = p.HGetAll(ctx, keys.APIKeysUsed(tenantID))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list API keys: %w", err)
	}
	recs, used := r.Val(), u.Val()
	out := make([]APIKey, 0, len(recs))
	for _, raw := range recs {
		var rec apiKeyRecord
		if err := json.Unmarshal([]byte(raw), &rec); err != nil {
			return nil, fmt.Errorf("decode API key: %w", err)
		}
		k := APIKey{ID: rec.ID, Prefix: rec.Prefix, CreatedAt: rec.CreatedAt}
		if ms, err := strconv.ParseInt(used[rec.ID], 10, 64); err == nil {
			at := time.UnixMilli(ms).UTC()
			k.LastUsedAt = &at
		}
		out = append(out, k)
	}
	byCreation(out, func(k APIKey) (time.Time, string) { return k.CreatedAt, k.ID })
	return out, nil
}

// RevokeAPIKey deletes one of the tenant's keys; ErrNotFound if it has no such key. Every node
// refuses the key within cacheTTL.
func (s *Store) RevokeAPIKey(ctx context.Context, tenantID, keyID string) error {
	raw, err := s.rdb.HGet(ctx, keys.APIKeys(tenantID), keyID).Bytes()
	if errors.Is(err, redis.Nil) {
		return fmt.Errorf("API key %s: %w", keyID, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("load API key: %w", err)
	}
	var rec apiKeyRecord
	if err := json.Unmarshal(raw, &rec); err != nil {
		return fmt.Errorf("decode API key: %w", err)
	}
	// The global index goes first: once it is gone the key authenticates nowhere.
	if err := s.rdb.Del(ctx, keys.APIKeyHash(rec.Hash)).Err(); err != nil {
		return fmt.Errorf("revoke API key: %w", err)
	}
	s.apiKeys.drop(rec.Hash)
	if _, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.HDel(ctx, keys.APIKeys(tenantID), keyID)
		p.HDel(ctx, keys.APIKeysUsed(tenantID), keyID)
		return nil
	}); err != nil {
		return fmt.Errorf("revoke API key: %w", err)
	}
	return nil
}

// CreateSigningKey issues a new signing key for the tenant.
func (s *Store) CreateSigningKey(ctx context.Context, tenantID string) (SigningKey, error) {
	sk, rec, err := s.newSigningKey(tenantID, s.now().UTC())
	if err != nil {
		return SigningKey{}, err
	}
	recJSON, _ := json.Marshal(rec)
	if err := s.rdb.HSet(ctx, keys.SigningKeys(tenantID), sk.ID, recJSON).Err(); err != nil {
		return SigningKey{}, fmt.Errorf("store signing key: %w", err)
	}
	if err := s.rdb.Set(ctx, keys.SigningKeyIndex(sk.ID), tenantID, 0).Err(); err != nil {
		return SigningKey{}, fmt.Errorf("index signing key: %w", err)
	}
	return sk, nil
}

// SigningKeys lists the tenant's signing keys, oldest first, without secrets.
func (s *Store) SigningKeys(ctx context.Context, tenantID string) ([]SigningKey, error) {
	recs, err := s.signingKeyRecords(ctx, tenantID)
	if err != nil {
		return nil, err
	}
	out := make([]SigningKey, len(recs))
	for i, r := range recs {
		out[i] = SigningKey{ID: r.ID, CreatedAt: r.CreatedAt}
	}
	return out, nil
}

func (s *Store) signingKeyRecords(ctx context.Context, tenantID string) ([]sigKeyRecord, error) {
	raw, err := s.rdb.HGetAll(ctx, keys.SigningKeys(tenantID)).Result()
	if err != nil {
		return nil, fmt.Errorf("list signing keys: %w", err)
	}
	out := make([]sigKeyRecord, 0, len(raw))
	for _, v := range raw {
		var rec sigKeyRecord
		if err := json.Unmarshal([]byte(v), &rec); err != nil {
			return nil, fmt.Errorf("decode signing key: %w", err)
		}
		out = append(out, rec)
	}
	byCreation(out, func(r sigKeyRecord) (time.Time, string) { return r.CreatedAt, r.ID })
	return out, nil
}

// DeleteSigningKey deletes one of the tenant's signing keys; ErrNotFound if it has no such key.
// Tokens signed with it are refused within cacheTTL and every node closes the sessions that
// hold one (control event).
func (s *Store) DeleteSigningKey(ctx context.Context, tenantID, keyID string) error {
	n, err := s.rdb.HDel(ctx, keys.SigningKeys(tenantID), keyID).Result()
	if err != nil {
		return fmt.Errorf("delete signing key: %w", err)
	}
	if n == 0 {
		return fmt.Errorf("signing key %s: %w", keyID, ErrNotFound)
	}
	if err := s.rdb.Del(ctx, keys.SigningKeyIndex(keyID)).Err(); err != nil {
		return fmt.Errorf("delete signing key: %w", err)
	}
	s.sigKeys.drop(keyID)
	return s.notify(ctx, Event{Type: EventSigningKeyDeleted, TenantID: tenantID, KeyID: keyID})
}

// signingKey returns the tenant and secret of a signing key id, cached briefly.
func (s *Store) signingKey(ctx context.Context, keyID string) (sigKeyRef, error) {
	return s.sigKeys.load(keyID, func() (sigKeyRef, error) { return s.loadSigningKey(ctx, keyID) })
}

func (s *Store) loadSigningKey(ctx context.Context, keyID string) (sigKeyRef, error) {
	tenantID, err := s.rdb.Get(ctx, keys.SigningKeyIndex(keyID)).Result()
	if errors.Is(err, redis.Nil) {
		return sigKeyRef{}, fmt.Errorf("unknown signing key: %w", ErrUnauthorized)
	}
	if err != nil {
		return sigKeyRef{}, fmt.Errorf("look up signing key: %w", err)
	}
	raw, err := s.rdb.HGet(ctx, keys.SigningKeys(tenantID), keyID).Bytes()
	if errors.Is(err, redis.Nil) {
		return sigKeyRef{}, fmt.Errorf("deleted signing key: %w", ErrUnauthorized)
	}
	if err != nil {
		return sigKeyRef{}, fmt.Errorf("load signing key: %w", err)
	}
	var rec sigKeyRecord
	if err := json.Unmarshal(raw, &rec); err != nil {
		return sigKeyRef{}, fmt.Errorf("decode signing key: %w", err)
	}
	secret, err := s.decrypt(tenantID, keyID, rec.Secret)
	if err != nil {
		return sigKeyRef{}, err
	}
	return sigKeyRef{tenantID: tenantID, secret: secret}, nil
}

func (s *Store) notify(ctx context.Context, ev Event) error {
	payload, _ := json.Marshal(ev)
	if err := s.rdb.Publish(ctx, keys.Control(), payload).Err(); err != nil {
		return fmt.Errorf("announce %s: %w", ev.Type, err)
	}
	return nil
}

func (s *Store) newAPIKey(now time.Time) (APIKey, apiKeyRecord) {
	secret := apiKeySecretPrefix + randomString(32)
	k := APIKey{ID: streamgate.NewID("key_"), Prefix: secret[:len(apiKeySecretPrefix)+6], CreatedAt: now, Secret: secret}
	return k, apiKeyRecord{ID: k.ID, Prefix: k.Prefix, Hash: hashSecret(secret), CreatedAt: now}
}

func (s *Store) newSigningKey(tenantID string, now time.Time) (SigningKey, sigKeyRecord, error) {
	k := SigningKey{ID: streamgate.NewID("sig_"), CreatedAt: now, Secret: randomString(32)}
	enc, err := s.encrypt(tenantID, k.ID, []byte(k.Secret))
	if err != nil {
		return SigningKey{}, sigKeyRecord{}, err
	}
	return k, sigKeyRecord{ID: k.ID, CreatedAt: now, Secret: enc}, nil
}

// encrypt seals a signing-key secret with AES-GCM; the tenant and key ids are authenticated
// data, so a ciphertext copied to another key does not decrypt.
func (s *Store) encrypt(tenantID, keyID string, plain []byte) (string, error) {
	nonce := make([]byte, s.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", fmt.Errorf("nonce: %w", err)
	}
	sealed := s.aead.Seal(nonce, nonce, plain, []byte(tenantID+"/"+keyID))
	return base64.StdEncoding.EncodeToString(sealed), nil
}

func (s *Store) decrypt(tenantID, keyID, enc string) ([]byte, error) {
	raw, err := base64.StdEncoding.DecodeString(enc)
	if err != nil || len(raw) < s.aead.NonceSize() {
		return nil, fmt.Errorf("signing key %s: malformed ciphertext", keyID)
	}
	n := s.aead.NonceSize()
	plain, err := s.aead.Open(nil, raw[:n], raw[n:], []byte(tenantID+"/"+keyID))
	if err != nil {
		return nil, fmt.Errorf("signing key %s: cannot decrypt (is STREAMGATE_SECRET_KEY the one it was made with?): %w", keyID, err)
	}
	return plain, nil
}

// byCreation sorts oldest first, ties broken by id, so listings are stable.
func byCreation[T any](xs []T, key func(T) (time.Time, string)) {
	slices.SortFunc(xs, func(a, b T) int {
		at, aid := key(a)
		bt, bid := key(b)
		if c := at.Compare(bt); c != 0 {
			return c
		}
		return strings.Compare(aid, bid)
	})
}

func hashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// randomString returns n random bytes as unpadded URL-safe base64.
func randomString(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err))
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// Revocations reads, for each tenant and the key ids its live sessions were opened with
// (signing keys, identity providers, or MercureKeyID), what was revoked: the tenant suspended or
// gone, a key deleted, the Mercure hub turned off. It returns the control events those changes sent, so that a node that missed one
// (pub/sub down at that moment) can act on it now, and drops this node's cached copies. One
// pipelined round trip for all tenants.
func (s *Store) Revocations(ctx context.Context, creds map[string][]string) ([]Event, error) {
	type check struct {
		tenantID, keyID string
		exists          *redis.BoolCmd
	}
	suspended := make(map[string]*redis.SliceCmd, len(creds))
	var checks []check
	hubs := make(map[string]*redis.IntCmd) // tenants with Mercure subscribers: is the hub still on?
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for id, keyIDs := range creds {
			suspended[id] = p.HMGet(ctx, keys.Tenant(id), "name", "suspended")
			for _, k := range keyIDs {
				switch {
				case strings.HasPrefix(k, "sig_"):
					checks = append(checks, check{id, k, p.HExists(ctx, keys.SigningKeys(id), k)})
				case strings.HasPrefix(k, "idp_"):
					checks = append(checks, check{id, k, p.HExists(ctx, keys.IdentityProviders(id), k)})
				case k == MercureKeyID:
					hubs[id] = p.Exists(ctx, keys.Mercure(id))
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("re-check revocations: %w", err)
	}
	var out []Event
	gone := make(map[string]bool)
	for id, cmd := range suspended {
		v := cmd.Val()
		if len(v) == 2 && (v[0] == nil || v[1] == "1") {
			gone[id] = true
			out = append(out, Event{Type: EventSuspended, TenantID: id})
			s.tenants.drop(id)
		}
	}
	for _, c := range checks {
		if gone[c.tenantID] || c.exists.Val() {
			continue
		}
		ev := Event{Type: EventSigningKeyDeleted, TenantID: c.tenantID, KeyID: c.keyID}
		if strings.HasPrefix(c.keyID, "idp_") {
			ev.Type = EventIdentityProviderDeleted
		}
		s.Forget(ev)
		out = append(out, ev)
	}
	for id, cmd := range hubs {
		if !gone[id] && cmd.Val() == 0 {
			s.forgetMercure(id)
			out = append(out, Event{Type: EventMercureChanged, TenantID: id})
		}
	}
	return out, nil
}
