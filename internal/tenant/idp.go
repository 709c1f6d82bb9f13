package tenant

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/redis/go-redis/v9"

	streamgate "github.com/streamgate/streamgate"
	"github.com/streamgate/streamgate/internal/keys"
)

// Identity provider rules from the public contract.
const (
	MaxIdentityProviders = 5
	DefaultChannelsClaim = "channels"

	// The algorithms an identity provider's keys may use. Each key accepts exactly one.
	AlgRS256 = "RS256"
	AlgES256 = "ES256"
	AlgEdDSA = "EdDSA"

	maxIssuerLen     = 1000
	maxClaimNameLen  = 200
	maxPublicKeyPEM  = 16 << 10
	minRSABits       = 2048
	maxAudiences     = 10 // of one token, looked up in turn
	danglingIndexAge = time.Minute
)

// IdentityProvider is a tenant's own token issuer (Auth0, Keycloak, any OIDC provider) whose
// tokens the tenant's end users may stream with. It has either a JWKS URL or a public key with
// its algorithm. Nothing in it is secret.
type IdentityProvider struct {
	ID            string    `json:"id"`
	Issuer        string    `json:"issuer"`
	Audience      string    `json:"audience"`
	JWKSURL       string    `json:"jwks_url,omitempty"`
	PublicKey     string    `json:"public_key,omitempty"`
	Algorithm     string    `json:"algorithm,omitempty"`
	ChannelsClaim string    `json:"channels_claim"`
	CreatedAt     time.Time `json:"created_at"`
}

// verifyKey is a public key and the one algorithm it accepts.
type verifyKey struct {
	alg string
	pub crypto.PublicKey
}

// idpRef is what a node caches of a provider found by its issuer and audience.
type idpRef struct {
	tenantID string
	p        IdentityProvider
	key      *verifyKey // the parsed public key; nil for a JWKS provider
}

// idpIndexEntry is the value of the global issuer+audience index.
type idpIndexEntry struct {
	TenantID   string `json:"tenant_id"`
	ProviderID string `json:"provider_id"`
	At         int64  `json:"at"` // Unix ms of the claim, to tell a dangling entry from a fresh one
}

//go:embed idp_add.lua
var idpAddLua string

var idpAddScript = redis.NewScript(idpAddLua)

//go:embed idp_index.lua
var idpIndexLua string

var idpIndexScript = redis.NewScript(idpIndexLua)

// CreateIdentityProvider registers a provider for the tenant from in's issuer, audience,
// channels claim and either JWKS URL or public key and algorithm (other fields are ignored). It
// returns ErrInvalid for bad input (a JWKS URL the URL guard refuses included), ErrLimitExceeded
// when the tenant has MaxIdentityProviders already, and ErrConflict when the issuer and audience
// pair is taken, by this tenant or another. On any error nothing was stored.
func (s *Store) CreateIdentityProvider(ctx context.Context, tenantID string, in IdentityProvider) (IdentityProvider, error) {
	p, err := s.checkIdentityProvider(ctx, in)
	if err != nil {
		return IdentityProvider{}, err
	}
	p.ID = streamgate.NewID("idp_")
	p.CreatedAt = s.now().UTC()

	// A cheap early answer; the script below is the one that holds under concurrency.
	n, err := s.rdb.HLen(ctx, keys.IdentityProviders(tenantID)).Result()
	if err != nil {
		return IdentityProvider{}, fmt.Errorf("count identity providers: %w", err)
	}
	if n >= MaxIdentityProviders {
		return IdentityProvider{}, idpLimitError()
	}

	index := keys.IdentityProviderIndex(pairHash(p.Issuer, p.Audience))
	entry, _ := json.Marshal(idpIndexEntry{TenantID: tenantID, ProviderID: p.ID, At: s.now().UnixMilli()})
	claimed, err := s.claimIndex(ctx, index, string(entry))
	if err != nil {
		return IdentityProvider{}, err
	}
	if !claimed {
		return IdentityProvider{}, fmt.Errorf("an identity provider with this issuer and audience already exists: %w", ErrConflict)
	}
	rec, _ := json.Marshal(p)
	added, err := idpAddScript.Run(ctx, s.rdb, []string{keys.IdentityProviders(tenantID)}, p.ID, rec, MaxIdentityProviders).Int()
	if err != nil || added == 0 {
		// Give the pair back; should that fail too, the entry dangles and the next claim of
		// the pair takes it over (claimIndex).
		_, _ = idpIndexScript.Run(context.WithoutCancel(ctx), s.rdb, []string{index}, string(entry), "").Result()
		if err != nil {
			return IdentityProvider{}, fmt.Errorf("store identity provider: %w", err)
		}
		return IdentityProvider{}, idpLimitError()
	}
	return p, nil
}

func idpLimitError() error {
	return fmt.Errorf("a tenant may have at most %d identity providers: delete one first: %w", MaxIdentityProviders, ErrLimitExceeded)
}

// claimIndex sets the issuer+audience index to entry unless another provider holds it. An entry
// whose provider no longer exists (a create or delete that stopped half way) is taken over once
// it is old enough not to be a create still under way.
func (s *Store) claimIndex(ctx context.Context, index, entry string) (bool, error) {
	ok, err := idpIndexScript.Run(ctx, s.rdb, []string{index}, "", entry).Int()
	if err != nil {
		return false, fmt.Errorf("claim issuer and audience: %w", err)
	}
	if ok == 1 {
		return true, nil
	}
	cur, err := s.rdb.Get(ctx, index).Result()
	if errors.Is(err, redis.Nil) {
		return s.claimIndex(ctx, index, entry) // released meanwhile
	}
	if err != nil {
		return false, fmt.Errorf("claim issuer and audience: %w", err)
	}
	var held idpIndexEntry
	if json.Unmarshal([]byte(cur), &held) == nil {
		exists, err := s.rdb.HExists(ctx, keys.IdentityProviders(held.TenantID), held.ProviderID).Result()
		if err != nil {
			return false, fmt.Errorf("claim issuer and audience: %w", err)
		}
		if exists || s.now().Sub(time.UnixMilli(held.At)) < danglingIndexAge {
			return false, nil
		}
	}
	ok, err = idpIndexScript.Run(ctx, s.rdb, []string{index}, cur, entry).Int()
	if err != nil {
		return false, fmt.Errorf("claim issuer and audience: %w", err)
	}
	return ok == 1, nil
}

// checkIdentityProvider validates in and returns the provider to store: its PEM normalised,
// its channels claim defaulted. Errors wrap ErrInvalid.
func (s *Store) checkIdentityProvider(ctx context.Context, in IdentityProvider) (IdentityProvider, error) {
	p := IdentityProvider{Issuer: in.Issuer, Audience: in.Audience, ChannelsClaim: in.ChannelsClaim}
	if err := checkText("issuer", p.Issuer, maxIssuerLen); err != nil {
		return IdentityProvider{}, err
	}
	if err := checkText("audience", p.Audience, maxIssuerLen); err != nil {
		return IdentityProvider{}, err
	}
	if p.ChannelsClaim == "" {
		p.ChannelsClaim = DefaultChannelsClaim
	}
	if err := checkText("channels_claim", p.ChannelsClaim, maxClaimNameLen); err != nil {
		return IdentityProvider{}, err
	}
	switch {
	case in.JWKSURL != "" && in.PublicKey != "":
		return IdentityProvider{}, fmt.Errorf("give either jwks_url or public_key, not both: %w", ErrInvalid)
	case in.JWKSURL != "":
		if in.Algorithm != "" {
			return IdentityProvider{}, fmt.Errorf("algorithm goes with public_key only: each key of a JWKS names its own: %w", ErrInvalid)
		}
		u, err := s.guard.Check(ctx, in.JWKSURL)
		if err != nil {
			return IdentityProvider{}, fmt.Errorf("jwks_url: %v: %w", err, ErrInvalid)
		}
		p.JWKSURL = u.String()
	case in.PublicKey != "":
		if len(in.PublicKey) > maxPublicKeyPEM {
			return IdentityProvider{}, fmt.Errorf("public_key is over %d bytes: %w", maxPublicKeyPEM, ErrInvalid)
		}
		if in.Algorithm == "" {
			return IdentityProvider{}, fmt.Errorf("algorithm is required with public_key: RS256, ES256 or EdDSA: %w", ErrInvalid)
		}
		block, _, err := parsePEM(in.PublicKey, in.Algorithm)
		if err != nil {
			return IdentityProvider{}, fmt.Errorf("public_key: %v: %w", err, ErrInvalid)
		}
		p.PublicKey, p.Algorithm = string(pem.EncodeToMemory(block)), in.Algorithm
	default:
		return IdentityProvider{}, fmt.Errorf("give jwks_url, or public_key and algorithm: %w", ErrInvalid)
	}
	return p, nil
}

func checkText(field, v string, max int) error {
	if v == "" {
		return fmt.Errorf("%s is required: %w", field, ErrInvalid)
	}
	if !utf8.ValidString(v) || utf8.RuneCountInString(v) > max {
		return fmt.Errorf("%s must be 1 to %d characters: %w", field, max, ErrInvalid)
	}
	if strings.IndexFunc(v, unicode.IsControl) >= 0 {
		return fmt.Errorf("%s must not hold control characters: %w", field, ErrInvalid)
	}
	return nil
}

// parsePEM reads one PEM block (a public key, PKIX or PKCS #1, or a certificate) and returns it
// with its key for alg. The error says, without a wrapped sentinel, what is wrong.
func parsePEM(text, alg string) (*pem.Block, verifyKey, error) {
	block, rest := pem.Decode([]byte(text))
	if block == nil {
		return nil, verifyKey{}, errors.New("not a PEM block (-----BEGIN PUBLIC KEY-----)")
	}
	if strings.TrimSpace(string(rest)) != "" {
		return nil, verifyKey{}, errors.New("give exactly one PEM block")
	}
	var pub any
	var err error
	switch block.Type {
	case "PUBLIC KEY":
		pub, err = x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		pub, err = x509.ParsePKCS1PublicKey(block.Bytes)
	case "CERTIFICATE":
		var cert *x509.Certificate
		if cert, err = x509.ParseCertificate(block.Bytes); err == nil {
			pub = cert.PublicKey
		}
	default:
		if strings.Contains(block.Type, "PRIVATE") {
			return nil, verifyKey{}, errors.New("this is a private key: send only the public key, and keep the private key secret")
		}
		return nil, verifyKey{}, fmt.Errorf("a PEM %q block is not a public key or certificate", truncate(block.Type, 40))
	}
	if err != nil {
		return nil, verifyKey{}, errors.New("the PEM block does not hold a readable public key")
	}
	k, err := keyFor(pub, alg)
	if err != nil {
		return nil, verifyKey{}, err
	}
	return block, k, nil
}

// keyFor checks that pub is a key alg can verify with, and binds it to alg alone.
func keyFor(pub any, alg string) (verifyKey, error) {
	switch alg {
	case AlgRS256:
		k, ok := pub.(*rsa.PublicKey)
		if !ok {
			return verifyKey{}, errors.New("RS256 needs an RSA key")
		}
		if k.N.BitLen() < minRSABits {
			return verifyKey{}, fmt.Errorf("RSA keys must have at least %d bits", minRSABits)
		}
		return verifyKey{alg: alg, pub: k}, nil
	case AlgES256:
		k, ok := pub.(*ecdsa.PublicKey)
		if !ok || k.Curve != elliptic.P256() {
			return verifyKey{}, errors.New("ES256 needs an ECDSA key on the P-256 curve")
		}
		return verifyKey{alg: alg, pub: k}, nil
	case AlgEdDSA:
		k, ok := pub.(ed25519.PublicKey)
		if !ok || len(k) != ed25519.PublicKeySize {
			return verifyKey{}, errors.New("EdDSA needs an Ed25519 key")
		}
		return verifyKey{alg: alg, pub: k}, nil
	default:
		return verifyKey{}, errors.New("algorithm must be RS256, ES256 or EdDSA")
	}
}

// IdentityProviders lists the tenant's providers, oldest first.
func (s *Store) IdentityProviders(ctx context.Context, tenantID string) ([]IdentityProvider, error) {
	raw, err := s.rdb.HGetAll(ctx, keys.IdentityProviders(tenantID)).Result()
	if err != nil {
		return nil, fmt.Errorf("list identity providers: %w", err)
	}
	out := make([]IdentityProvider, 0, len(raw))
	for _, v := range raw {
		var p IdentityProvider
		if err := json.Unmarshal([]byte(v), &p); err != nil {
			return nil, fmt.Errorf("decode identity provider: %w", err)
		}
		out = append(out, p)
	}
	byCreation(out, func(p IdentityProvider) (time.Time, string) { return p.CreatedAt, p.ID })
	return out, nil
}

// DeleteIdentityProvider removes one of the tenant's providers; ErrNotFound if it has no such
// provider. Its tokens are refused at once on this node and within cacheTTL on the others, and
// every node closes the sessions opened with one (control event).
func (s *Store) DeleteIdentityProvider(ctx context.Context, tenantID, id string) error {
	raw, err := s.rdb.HGet(ctx, keys.IdentityProviders(tenantID), id).Bytes()
	if errors.Is(err, redis.Nil) {
		return fmt.Errorf("identity provider %s: %w", truncate(id, 60), ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("load identity provider: %w", err)
	}
	var p IdentityProvider
	if err := json.Unmarshal(raw, &p); err != nil {
		return fmt.Errorf("decode identity provider: %w", err)
	}
	// The record goes first: without it the index leads nowhere, so the pair is refused even
	// if releasing the index below fails.
	n, err := s.rdb.HDel(ctx, keys.IdentityProviders(tenantID), id).Result()
	if err != nil {
		return fmt.Errorf("delete identity provider: %w", err)
	}
	if n == 0 {
		return fmt.Errorf("identity provider %s: %w", id, ErrNotFound)
	}
	s.forgetProvider(id)
	if err := s.releaseIndex(ctx, p, tenantID); err != nil {
		return err
	}
	return s.notify(ctx, Event{Type: EventIdentityProviderDeleted, TenantID: tenantID, KeyID: id})
}

// releaseIndex frees p's issuer and audience pair if p still holds it.
func (s *Store) releaseIndex(ctx context.Context, p IdentityProvider, tenantID string) error {
	index := keys.IdentityProviderIndex(pairHash(p.Issuer, p.Audience))
	cur, err := s.rdb.Get(ctx, index).Result()
	if errors.Is(err, redis.Nil) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("release issuer and audience: %w", err)
	}
	var held idpIndexEntry
	if json.Unmarshal([]byte(cur), &held) != nil || held.TenantID != tenantID || held.ProviderID != p.ID {
		return nil
	}
	if err := idpIndexScript.Run(ctx, s.rdb, []string{index}, cur, "").Err(); err != nil {
		return fmt.Errorf("release issuer and audience: %w", err)
	}
	return nil
}

// Forget drops what this node caches about the subject of a control event, so that a deletion
// on another node takes effect here at once rather than when the cache entry ends.
func (s *Store) Forget(ev Event) {
	switch ev.Type {
	case EventIdentityProviderDeleted:
		s.forgetProvider(ev.KeyID)
	case EventSigningKeyDeleted:
		s.sigKeys.drop(ev.KeyID)
	case EventMercureChanged:
		s.forgetMercure(ev.TenantID)
	}
}

func (s *Store) forgetProvider(id string) {
	s.idps.dropWhere(func(r idpRef) bool { return r.p.ID == id })
}

// identityProvider finds the provider that holds iss and one of auds. It returns an error
// wrapping ErrUnauthorized when none does, other errors when Redis cannot answer.
func (s *Store) identityProvider(ctx context.Context, iss string, auds []string) (idpRef, error) {
	for _, aud := range auds[:min(len(auds), maxAudiences)] {
		h := pairHash(iss, aud)
		if ref, ok := s.idps.get(h); ok {
			return ref, nil
		}
		raw, err := s.rdb.Get(ctx, keys.IdentityProviderIndex(h)).Bytes()
		if errors.Is(err, redis.Nil) {
			continue
		}
		if err != nil {
			return idpRef{}, fmt.Errorf("look up identity provider: %w", err)
		}
		var e idpIndexEntry
		if err := json.Unmarshal(raw, &e); err != nil {
			return idpRef{}, fmt.Errorf("decode identity provider index: %w", err)
		}
		rec, err := s.rdb.HGet(ctx, keys.IdentityProviders(e.TenantID), e.ProviderID).Bytes()
		if errors.Is(err, redis.Nil) {
			continue // deleted, or its create stopped half way
		}
		if err != nil {
			return idpRef{}, fmt.Errorf("load identity provider: %w", err)
		}
		var p IdentityProvider
		if err := json.Unmarshal(rec, &p); err != nil {
			return idpRef{}, fmt.Errorf("decode identity provider: %w", err)
		}
		if p.Issuer != iss || p.Audience != aud {
			continue
		}
		ref := idpRef{tenantID: e.TenantID, p: p}
		if p.PublicKey != "" {
			_, k, err := parsePEM(p.PublicKey, p.Algorithm)
			if err != nil {
				return idpRef{}, fmt.Errorf("identity provider %s: stored key: %v", p.ID, err)
			}
			ref.key = &k
		}
		s.idps.put(h, ref)
		return ref, nil
	}
	return idpRef{}, fmt.Errorf("no identity provider holds this issuer and audience: %w", ErrUnauthorized)
}

// pairHash names an issuer and audience pair in the global index.
func pairHash(iss, aud string) string {
	sum := sha256.Sum256([]byte(iss + "\x00" + aud))
	return hex.EncodeToString(sum[:])
}
