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
)

type tokenClaims struct {
	Channels []string        `json:"channels,omitempty"`
	Info     json.RawMessage `json:"info,omitempty"`
	jwt.RegisteredClaims
}

// MaxInfoBytes bounds a token's info claim, compacted.
const MaxInfoBytes = 1024

// tokenInfo returns a token's info claim compacted, nil when absent or null. Anything but a
// JSON object of at most MaxInfoBytes wraps ErrInvalid.
func tokenInfo(raw json.RawMessage) (json.RawMessage, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var buf bytes.Buffer
	if raw[0] != '{' || json.Compact(&buf, raw) != nil {
		return nil, fmt.Errorf("info must be a JSON object: %w", ErrInvalid)
	}
	if buf.Len() > MaxInfoBytes {
		return nil, fmt.Errorf("info is %d bytes, over %d: %w", buf.Len(), MaxInfoBytes, ErrInvalid)
	}
	return buf.Bytes(), nil
}

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

// VerifyToken checks an end-user token exactly as the contract says: HS256 only, kid naming a
// live signing key, exp required, nbf honoured, 5 s leeway, sub of 1 to 256 characters, valid
// channel patterns, tenant not suspended. Every refusal wraps ErrUnauthorized; other errors mean
// Redis could not answer.
func (s *Store) VerifyToken(ctx context.Context, raw string) (Claims, error) {
	if len(raw) == 0 || len(raw) > maxTokenBytes {
		return Claims{}, fmt.Errorf("malformed token: %w", ErrUnauthorized)
	}
	var (
		claims   tokenClaims
		keyID    string
		tenantID string
		lookup   error
	)
	parser := jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithLeeway(TokenLeeway),
		jwt.WithExpirationRequired(),
		jwt.WithTimeFunc(s.now),
	)
	_, err := parser.ParseWithClaims(raw, &claims, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		if kid == "" {
			return nil, errors.New("token has no kid")
		}
		ref, err := s.signingKey(ctx, kid)
		if err != nil {
			lookup = err
			return nil, err
		}
		keyID, tenantID = kid, ref.tenantID
		return ref.secret, nil
	})
	if lookup != nil && !errors.Is(lookup, ErrUnauthorized) {
		return Claims{}, lookup // Redis trouble, not the caller's fault
	}
	if err != nil {
		return Claims{}, fmt.Errorf("%s: %w", tokenReason(err), ErrUnauthorized)
	}
	if err := validateGrant(claims.Subject, claims.Channels); err != nil {
		return Claims{}, fmt.Errorf("token claims: %v: %w", err, ErrUnauthorized)
	}
	info, err := tokenInfo(claims.Info)
	if err != nil {
		return Claims{}, fmt.Errorf("token claims: %v: %w", err, ErrUnauthorized)
	}
	t, err := s.Cached(ctx, tenantID)
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
		TenantID:  tenantID,
		KeyID:     keyID,
		Sub:       claims.Subject,
		Channels:  claims.Channels,
		ExpiresAt: claims.ExpiresAt.Time,
		Info:      info,
	}, nil
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
		return "token cannot be verified: it must be HS256, signed with the secret of the signing key its kid names"
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
