package tenant

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/golang-jwt/jwt/v5"
)

// tokenHeader is what verification uses of a token's JOSE header.
type tokenHeader struct {
	alg string
	kid string
	// kidNotString is a kid that is there, not null and not a string: refused by the key
	// lookup, as a kid of any other type names nothing.
	kidNotString bool
}

// tokenKeyFunc returns what may verify a token with header h and (not yet verified) claims c:
// a key, or a jwt.VerificationKeySet of keys any one of which may have signed it.
type tokenKeyFunc func(h tokenHeader, c *tokenClaims) (any, error)

// parseToken reads, verifies and validates a compact JWS into claims in the order
// jwt.Parser.ParseWithClaims does, and with its errors, so that a refusal says the same:
// segments, header, claims and signature decoded (jwt.ErrTokenMalformed), an alg named and
// registered (jwt.ErrTokenUnverifiable), an alg of algs (jwt.ErrTokenSignatureInvalid), a key
// from keyFor (jwt.ErrTokenUnverifiable wrapping its error), the signature checked by jwt's
// method for alg (jwt.ErrTokenSignatureInvalid), and the claims' times by v
// (jwt.ErrTokenInvalidClaims wrapping v's errors).
//
// It differs only in reading the header and the claims without reflection: the header's
// decode into a map through encoding/json was a connect's deepest call, where its goroutine's
// stack grew (about 7% of a connect's api CPU), after the claims' decode had been taken out of
// it. FuzzParseTokenAsJWT holds it to jwt's parser.
func parseToken(raw string, claims *tokenClaims, algs []string, v *jwt.Validator, keyFor tokenKeyFunc) error {
	head, rest, ok := strings.Cut(raw, ".")
	body, sigText, ok2 := strings.Cut(rest, ".")
	if !ok || !ok2 || strings.Contains(sigText, ".") {
		return fmt.Errorf("%w: token contains an invalid number of segments", jwt.ErrTokenMalformed)
	}
	hb, err := base64.RawURLEncoding.DecodeString(head)
	if err != nil {
		return fmt.Errorf("%w: could not base64 decode header: %w", jwt.ErrTokenMalformed, err)
	}
	h, algNamed, err := readHeader(hb)
	if err != nil {
		return fmt.Errorf("%w: could not JSON decode header: %w", jwt.ErrTokenMalformed, err)
	}
	cb, err := base64.RawURLEncoding.DecodeString(body)
	if err != nil {
		return fmt.Errorf("%w: could not base64 decode claim: %w", jwt.ErrTokenMalformed, err)
	}
	if !json.Valid(cb) {
		return fmt.Errorf("%w: could not JSON decode claim", jwt.ErrTokenMalformed)
	}
	// null leaves claims as they are, as encoding/json does: the validator then refuses them.
	if !isNull(cb) {
		if err := claims.read(cb); err != nil {
			return fmt.Errorf("%w: could not JSON decode claim: %w", jwt.ErrTokenMalformed, err)
		}
	}
	if !algNamed {
		return fmt.Errorf("%w: signing method (alg) is unspecified", jwt.ErrTokenUnverifiable)
	}
	method := jwt.GetSigningMethod(h.alg)
	if method == nil {
		return fmt.Errorf("%w: signing method (alg) is unavailable", jwt.ErrTokenUnverifiable)
	}
	sig, err := base64.RawURLEncoding.DecodeString(sigText)
	if err != nil {
		return fmt.Errorf("%w: could not base64 decode signature: %w", jwt.ErrTokenMalformed, err)
	}
	if !slices.Contains(algs, h.alg) {
		return fmt.Errorf("%w: signing method %v is invalid", jwt.ErrTokenSignatureInvalid, h.alg)
	}
	key, err := keyFor(h, claims)
	if err != nil {
		return fmt.Errorf("%w: error while executing keyfunc: %w", jwt.ErrTokenUnverifiable, err)
	}
	signed := raw[:len(head)+1+len(body)]
	if set, ok := key.(jwt.VerificationKeySet); ok {
		if len(set.Keys) == 0 {
			return fmt.Errorf("%w: keyfunc returned empty verification key set", jwt.ErrTokenUnverifiable)
		}
		for _, k := range set.Keys {
			if err = method.Verify(signed, sig, k); err == nil {
				break
			}
		}
	} else {
		err = method.Verify(signed, sig, key)
	}
	if err != nil {
		return fmt.Errorf("%w: %w", jwt.ErrTokenSignatureInvalid, err)
	}
	if err := v.Validate(claims); err != nil {
		return fmt.Errorf("%w: %w", jwt.ErrTokenInvalidClaims, err)
	}
	return nil
}

var errHeaderJSON = errors.New("the header is not valid JSON")

// readHeader reads a token's header as jwt does into a map: a JSON object (or null, which
// names nothing), alg named when it is a string.
func readHeader(b []byte) (h tokenHeader, algNamed bool, err error) {
	if !json.Valid(b) {
		return h, false, errHeaderJSON
	}
	if isNull(b) {
		return h, false, nil
	}
	if err := floatsFit(b); err != nil {
		return h, false, err // encoding/json refuses such a number in a map[string]any, as jwt decodes the header
	}
	members, err := jsonMembers(b)
	if err != nil {
		return h, false, err
	}
	if raw := members["alg"]; len(raw) > 0 && raw[0] == '"' {
		if h.alg, err = jsonString(raw); err != nil {
			return h, false, err
		}
		algNamed = true
	}
	if raw := members["kid"]; len(raw) > 0 && raw[0] == '"' {
		if h.kid, err = jsonString(raw); err != nil {
			return h, false, err
		}
	} else if len(raw) > 0 && string(raw) != "null" {
		h.kidNotString = true
	}
	return h, algNamed, nil
}

// isNull reports whether the valid JSON text b is null.
func isNull(b []byte) bool { return string(bytes.TrimSpace(b)) == "null" }

// floatsFit returns an error when a number in the valid JSON text b does not fit a float64
// (1e400): encoding/json cannot decode it into an interface value.
func floatsFit(b []byte) error {
	for i := 0; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			for i++; i < len(b) && b[i] != '"'; i++ {
				if b[i] == '\\' {
					i++
				}
			}
		case c == '-' || c >= '0' && c <= '9':
			j := i
			for j < len(b) && strings.IndexByte("+-.eE0123456789", b[j]) >= 0 {
				j++
			}
			if _, err := strconv.ParseFloat(string(b[i:j]), 64); err != nil {
				return err
			}
			i = j - 1
		}
	}
	return nil
}
