package mercure

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Errors of the Mercure rules; the wrapping message says what is wrong.
var (
	// ErrUnauthorized means a missing, malformed, expired or wrongly signed token.
	ErrUnauthorized = errors.New("unauthorized")
	// ErrForbidden means a valid token that does not allow this.
	ErrForbidden = errors.New("forbidden")
	// ErrInvalid means a malformed request.
	ErrInvalid = errors.New("invalid request")
)

// Token rules: Mercure's, not those of end-user tokens (no kid, sub or exp required).
const (
	// MaxTokenBytes bounds a token; a long selector list fits, a header bomb does not.
	MaxTokenBytes = 32 << 10
	// TokenLeeway is the clock skew allowed on exp and nbf, as for end-user tokens.
	TokenLeeway = 5 * time.Second
)

// Claims are what a verified Mercure token grants.
type Claims struct {
	// Publish are the selectors of the topics the holder may publish to (mercure.publish);
	// nil when the claim is absent.
	Publish []string
	// Subscribe are the selectors of the private updates the holder may receive
	// (mercure.subscribe).
	Subscribe []string
	// Payload is mercure.payload as sent (JSON), or nil.
	Payload json.RawMessage
	// Sub is the token's sub claim, or "".
	Sub string
	// ExpiresAt is the token's exp; the zero time when it has none.
	ExpiresAt time.Time
}

type tokenClaims struct {
	Mercure *mercureClaim `json:"mercure"`
	// Namespaced is the claim under the URI the reference hub also reads.
	Namespaced *mercureClaim `json:"https://mercure.rocks/"`
	jwt.RegisteredClaims
}

type mercureClaim struct {
	Publish   []string        `json:"publish"`
	Subscribe []string        `json:"subscribe"`
	Payload   json.RawMessage `json:"payload"`
}

// VerifyToken checks a Mercure token signed with alg (HS256, HS512, RS256 or ES256) and key (the
// secret's bytes, or the public key), and returns its claims. exp and nbf are honoured when
// present, with TokenLeeway. Every refusal wraps ErrUnauthorized.
func VerifyToken(raw, alg string, key any, now func() time.Time) (Claims, error) {
	if raw == "" || len(raw) > MaxTokenBytes {
		return Claims{}, fmt.Errorf("malformed token: %w", ErrUnauthorized)
	}
	if key == nil {
		return Claims{}, fmt.Errorf("this hub takes no subscriber tokens: %w", ErrUnauthorized)
	}
	var c tokenClaims
	parser := jwt.NewParser(
		jwt.WithValidMethods([]string{alg}),
		jwt.WithLeeway(TokenLeeway),
		jwt.WithTimeFunc(now),
	)
	if _, err := parser.ParseWithClaims(raw, &c, func(*jwt.Token) (any, error) { return key, nil }); err != nil {
		return Claims{}, fmt.Errorf("%s: %w", tokenReason(err, alg), ErrUnauthorized)
	}
	m := c.Mercure
	if c.Namespaced != nil {
		m = c.Namespaced
	}
	out := Claims{Sub: c.Subject}
	if c.ExpiresAt != nil {
		out.ExpiresAt = c.ExpiresAt.Time
	}
	if m != nil {
		out.Publish, out.Subscribe = m.Publish, m.Subscribe
		if len(m.Payload) > 0 && string(m.Payload) != "null" {
			out.Payload = m.Payload
		}
	}
	for _, sel := range [][]string{out.Publish, out.Subscribe} {
		if len(sel) > MaxSelectors {
			return Claims{}, fmt.Errorf("the mercure claim lists more than %d selectors: %w", MaxSelectors, ErrUnauthorized)
		}
		for _, s := range sel {
			if len(s) > MaxSelectorLen {
				return Claims{}, fmt.Errorf("the mercure claim has a selector over %d bytes: %w", MaxSelectorLen, ErrUnauthorized)
			}
		}
	}
	return out, nil
}

// tokenReason turns a jwt error into a sentence without echoing the token.
func tokenReason(err error, alg string) string {
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return "token expired"
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return "token not valid yet (nbf)"
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return "token signature is invalid"
	case errors.Is(err, jwt.ErrTokenUnverifiable), errors.Is(err, jwt.ErrTokenInvalidClaims):
		return "token cannot be verified: this hub takes " + alg + " tokens signed with its key"
	default:
		return "malformed token"
	}
}
