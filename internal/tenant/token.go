package tenant

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"

	streamgate "github.com/streamgate/streamgate"
)

// Token rules from the public contract.
const (
	TokenLeeway     = 5 * time.Second
	MinTokenTTL     = time.Second
	MaxTokenTTL     = 24 * time.Hour
	DefaultTokenTTL = time.Hour
	maxTokenBytes   = 8 << 10
	maxPatterns     = 1000
	maxInfoBytes    = 1 << 10
)

// tokenClaims are a token's claims: those we mint, and on parsing every claim by name, for the
// channels claim an identity provider names and for info.
type tokenClaims struct {
	Channels []string        `json:"channels,omitempty"`
	Info     json.RawMessage `json:"info,omitempty"`
	jwt.RegisteredClaims
	all map[string]json.RawMessage
}

// grants returns the channel patterns of the named claim: none when it is absent.
func (c *tokenClaims) grants(claim string) ([]string, error) {
	raw, ok := c.all[claim]
	if !ok || string(raw) == "null" {
		return nil, nil
	}
	var out []string
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil, fmt.Errorf("the %s claim must be a list of channel patterns: %w", truncate(claim, 60), ErrInvalid)
	}
	return out, nil
}

// info returns the info claim compacted, nil when it is absent.
func (c *tokenClaims) info() (json.RawMessage, error) {
	raw, ok := c.all["info"]
	if !ok || string(raw) == "null" {
		return nil, nil
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil || buf.Len() == 0 || buf.Bytes()[0] != '{' || buf.Len() > maxInfoBytes {
		return nil, fmt.Errorf("info must be a JSON object of at most %d bytes: %w", maxInfoBytes, ErrInvalid)
	}
	return buf.Bytes(), nil
}

// signer is what vouches for a verified token: a signing key, or an identity provider.
type signer struct {
	tenantID      string
	keyID         string
	channelsClaim string
}

// refusal is why a token's key cannot verify it, in words for the token's holder.
type refusal struct{ reason string }

func (r *refusal) Error() string { return r.reason }

// tokenAlgs are the algorithms a token may name; each key then accepts only its own.
var tokenAlgs = []string{jwt.SigningMethodHS256.Alg(), AlgRS256, AlgES256, AlgEdDSA}

// MintToken signs an end-user token with the tenant's newest signing key. It returns
// ErrInvalid for a bad sub, pattern or ttl and ErrNoSigningKey when the tenant has none.
func (s *Store) MintToken(ctx context.Context, tenantID, sub string, channels []string, ttl time.Duration) (string, time.Time, error) {
	if err := validateGrant(sub, channels); err != nil {
		return "", time.Time{}, err
	}
	if ttl < MinTokenTTL || ttl > MaxTokenTTL {
		return "", time.Time{}, fmt.Errorf("ttl_seconds must be between 1 and 86400: %w", ErrInvalid)
	}
	recs, err := s.signingKeyRecords(ctx, tenantID)
	if err != nil {
		return "", time.Time{}, err
	}
	if len(recs) == 0 {
		return "", time.Time{}, ErrNoSigningKey
	}
	newest := recs[len(recs)-1]
	secret, err := s.decrypt(tenantID, newest.ID, newest.Secret)
	if err != nil {
		return "", time.Time{}, err
	}
	now := s.now()
	exp := now.Add(ttl).Truncate(time.Second)
	tok := jwt.NewWithClaims(jwt.SigningMethodHS256, tokenClaims{
		Channels: channels,
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   sub,
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(exp),
		},
	})
	tok.Header["kid"] = newest.ID
	signed, err := tok.SignedString(secret)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("sign token: %w", err)
	}
	if len(signed) > maxTokenBytes {
		// VerifyToken would refuse it: better a 400 now than a 401 for every user later.
		return "", time.Time{}, fmt.Errorf("the token would be %d bytes, over %d: grant fewer or shorter channel patterns: %w", len(signed), maxTokenBytes, ErrInvalid)
	}
	return signed, exp.UTC(), nil
}

// VerifyToken checks an end-user token exactly as the contract says. A token whose kid names a
// signing key must be HS256 and signed with its secret; any other is matched by its iss and aud
// to an identity provider and must carry the algorithm of the provider's key that signed it.
// Either way: exp required, nbf honoured, 5 s leeway, sub of 1 to 256 characters, valid channel
// patterns, info a small JSON object, tenant not suspended. Every refusal wraps ErrUnauthorized;
// other errors mean Redis could not answer.
func (s *Store) VerifyToken(ctx context.Context, raw string) (Claims, error) {
	if len(raw) == 0 || len(raw) > maxTokenBytes {
		return Claims{}, fmt.Errorf("malformed token: %w", ErrUnauthorized)
	}
	var (
		claims  tokenClaims
		by      signer
		refused *refusal
		lookup  error
	)
	err := parseToken(raw, &claims, tokenAlgs, s.validator, func(h tokenHeader, c *tokenClaims) (any, error) {
		key, sg, err := s.verificationKey(ctx, h, c)
		if err != nil {
			if !errors.As(err, &refused) {
				lookup = err
			}
			return nil, err
		}
		by = sg
		return key, nil
	})
	if lookup != nil {
		return Claims{}, lookup // Redis trouble, not the caller's fault
	}
	if err != nil {
		reason := tokenReason(err)
		if refused != nil {
			reason = refused.reason
		}
		return Claims{}, fmt.Errorf("%s: %w", reason, ErrUnauthorized)
	}
	channels, err := claims.grants(by.channelsClaim)
	if err == nil {
		err = validateGrant(claims.Subject, channels)
	}
	var info json.RawMessage
	if err == nil {
		info, err = claims.info()
	}
	if err != nil {
		return Claims{}, fmt.Errorf("token claims: %v: %w", err, ErrUnauthorized)
	}
	t, err := s.Cached(ctx, by.tenantID)
	if errors.Is(err, ErrNotFound) {
		return Claims{}, fmt.Errorf("token of a deleted tenant: %w", ErrUnauthorized)
	}
	if err != nil {
		return Claims{}, err
	}
	if t.Suspended {
		return Claims{}, fmt.Errorf("tenant is suspended: %w", ErrUnauthorized)
	}
	return Claims{
		TenantID:  by.tenantID,
		KeyID:     by.keyID,
		Sub:       claims.Subject,
		Channels:  channels,
		ExpiresAt: claims.ExpiresAt.Time,
		Info:      info,
	}, nil
}

// verificationKey finds what may verify a token with header h and claims c: the secret of the
// signing key its kid names (for HS256 only), or else the key of the identity provider its iss
// and aud name that accepts its algorithm. A refusal is a *refusal; other errors mean Redis could not answer.
func (s *Store) verificationKey(ctx context.Context, h tokenHeader, c *tokenClaims) (any, signer, error) {
	alg, kid := h.alg, h.kid
	if h.kidNotString {
		return nil, signer{}, &refusal{"the token's kid must be a string"}
	}
	if kid != "" {
		ref, err := s.signingKey(ctx, kid)
		switch {
		case err == nil:
			if alg != jwt.SigningMethodHS256.Alg() {
				return nil, signer{}, &refusal{"a token of a signing key must be HS256, signed with the key's secret"}
			}
			return ref.secret, signer{tenantID: ref.tenantID, keyID: kid, channelsClaim: DefaultChannelsClaim}, nil
		case !errors.Is(err, ErrUnauthorized):
			return nil, signer{}, err
		}
	}
	if c.Issuer == "" || len(c.Audience) == 0 {
		if kid == "" {
			return nil, signer{}, &refusal{"token has no kid"}
		}
		return nil, signer{}, &refusal{"token signed with an unknown or deleted key"}
	}
	ref, err := s.identityProvider(ctx, c.Issuer, c.Audience)
	if errors.Is(err, ErrUnauthorized) {
		return nil, signer{}, &refusal{"the token's kid names no signing key, and its iss and aud no identity provider of any tenant"}
	}
	if err != nil {
		return nil, signer{}, err
	}
	by := signer{tenantID: ref.tenantID, keyID: ref.p.ID, channelsClaim: ref.p.ChannelsClaim}
	var candidates []verifyKey
	if ref.key != nil {
		candidates = []verifyKey{*ref.key}
	} else if candidates, err = s.jwksKeys(ctx, ref.p.JWKSURL, kid); err != nil {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return nil, signer{}, &refusal{"the identity provider's JWKS is still being fetched"}
		}
		return nil, signer{}, err
	}
	var accepting []jwt.VerificationKey
	for _, k := range candidates {
		if k.alg == alg { // each key accepts exactly its own algorithm
			accepting = append(accepting, k.pub)
		}
	}
	switch len(accepting) {
	case 0:
		return nil, signer{}, &refusal{fmt.Sprintf("the token is %s, which no key of its identity provider accepts: each key accepts its own algorithm only", alg)}
	case 1:
		return accepting[0], by, nil
	default:
		return jwt.VerificationKeySet{Keys: accepting}, by, nil
	}
}

// tokenReason turns a jwt error into a sentence for the caller without echoing the token.
func tokenReason(err error) string {
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return "token expired"
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return "token not valid yet (nbf)"
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return "token has no exp claim"
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return "token signature is invalid"
	case errors.Is(err, ErrUnauthorized):
		return "token signed with an unknown or deleted key"
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		return "token cannot be verified: it must be HS256 with the kid of a signing key, or RS256, ES256 or EdDSA from an identity provider"
	default:
		return "malformed token"
	}
}

func validateGrant(sub string, channels []string) error {
	if n := utf8.RuneCountInString(sub); n < 1 || n > streamgate.MaxSubLen {
		return fmt.Errorf("sub must be 1 to %d characters: %w", streamgate.MaxSubLen, ErrInvalid)
	}
	if len(channels) > maxPatterns {
		return fmt.Errorf("at most %d channel patterns: %w", maxPatterns, ErrInvalid)
	}
	for _, p := range channels {
		if !streamgate.ValidPattern(p) {
			return fmt.Errorf("channel pattern %q is not valid: %w", truncate(p, 60), ErrInvalid)
		}
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
