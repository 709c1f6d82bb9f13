package tenant

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/streamgate/streamgate/internal/urlguard"
)

// JWKS rules from the public contract: a 5 s timeout, a document kept for its max-age within
// [5 min, 24 h], and a fetch for an unknown kid at most once a minute.
const (
	jwksTimeout    = 5 * time.Second
	jwksMinTTL     = 5 * time.Minute
	jwksMaxTTL     = 24 * time.Hour
	jwksRefetch    = time.Minute
	jwksMaxBytes   = 512 << 10
	jwksMaxKeys    = 100
	jwksMaxEntries = 10_000
)

// jwksCache holds the JWKS documents this node fetched, by URL: a document is the same whoever
// asks, and so is the once-a-minute budget for fetching it again.
type jwksCache struct {
	mu      sync.Mutex
	entries map[string]*jwksEntry
}

type jwksEntry struct {
	keys        []jwksKey
	have        bool // a document was fetched once; keys may be stale but are kept on failure
	expires     time.Time
	lastAttempt time.Time
	lastErr     string        // why the last fetch failed, for the token's refusal
	inflight    chan struct{} // closed when the fetch under way ends
}

type jwksKey struct {
	kid string
	verifyKey
}

func newJWKSCache() *jwksCache { return &jwksCache{entries: make(map[string]*jwksEntry)} }

// entry returns url's entry, making it; c.mu must be held.
func (c *jwksCache) entry(url string) *jwksEntry {
	e, ok := c.entries[url]
	if !ok {
		if len(c.entries) >= jwksMaxEntries {
			clear(c.entries)
		}
		e = &jwksEntry{}
		c.entries[url] = e
	}
	return e
}

// match returns the keys that may have signed a token with kid: every key when kid is empty;
// else those with that kid or, if none has it, those without a kid.
func (e *jwksEntry) match(kid string) []verifyKey {
	var named, unnamed []verifyKey
	for _, k := range e.keys {
		switch {
		case kid == "" || k.kid == kid:
			named = append(named, k.verifyKey)
		case k.kid == "":
			unnamed = append(unnamed, k.verifyKey)
		}
	}
	if len(named) > 0 {
		return named
	}
	return unnamed
}

// jwksKeys returns the keys of the JWKS at url that may verify a token with kid, fetching the
// document when it is missing or past its max-age, or when no key matches kid, but never more
// than once a minute. A document that cannot be fetched again is used stale. It returns a
// *refusal when no key matches, ctx's error when the caller gave up waiting.
func (s *Store) jwksKeys(ctx context.Context, url, kid string) ([]verifyKey, error) {
	c := s.jwks
	for {
		c.mu.Lock()
		e := c.entry(url)
		if ch := e.inflight; ch != nil {
			c.mu.Unlock()
			select {
			case <-ch:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		now := s.now()
		found := e.match(kid)
		stale := !e.have || !now.Before(e.expires)
		if (stale || len(found) == 0) && (e.lastAttempt.IsZero() || now.Sub(e.lastAttempt) >= jwksRefetch) {
			ch := make(chan struct{})
			e.inflight, e.lastAttempt = ch, now
			c.mu.Unlock()
			keys, ttl, err := s.fetchJWKS(ctx, url)
			c.mu.Lock()
			if err != nil {
				e.lastErr = err.Error()
			} else {
				e.keys, e.have, e.expires, e.lastErr = keys, true, s.now().Add(ttl), ""
			}
			e.inflight = nil
			close(ch)
			c.mu.Unlock()
			continue // look again; lastAttempt keeps this from fetching twice
		}
		have, lastErr := e.have, e.lastErr
		c.mu.Unlock()
		switch {
		case len(found) > 0:
			return found, nil
		case !have:
			return nil, &refusal{"the identity provider's JWKS could not be fetched (" + lastErr + ")"}
		case kid != "":
			return nil, &refusal{"no key of the identity provider's JWKS has the token's kid"}
		default:
			return nil, &refusal{"the identity provider's JWKS has no key this service can use"}
		}
	}
}

// fetchJWKS gets and parses the document at url through the URL guard. Its error is a short
// cause that may be shown to the token's holder: it names no address.
func (s *Store) fetchJWKS(ctx context.Context, url string) ([]jwksKey, time.Duration, error) {
	// Others may wait on this fetch: it does not end with the request that started it.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), jwksTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, 0, errors.New("bad URL")
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := s.fetcher.Do(req)
	switch {
	case errors.Is(err, urlguard.ErrForbidden):
		return nil, 0, errors.New("address not allowed")
	case errors.Is(err, context.DeadlineExceeded):
		return nil, 0, errors.New("no answer within 5 s")
	case err != nil:
		return nil, 0, errors.New("unreachable")
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, 0, fmt.Errorf("HTTP status %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, jwksMaxBytes+1))
	if err != nil {
		return nil, 0, errors.New("the answer broke off")
	}
	if len(body) > jwksMaxBytes {
		return nil, 0, fmt.Errorf("the document is over %d bytes", jwksMaxBytes)
	}
	keys, err := parseJWKS(body)
	if err != nil {
		return nil, 0, err
	}
	return keys, jwksTTL(resp.Header.Get("Cache-Control")), nil
}

// jwksTTL is how long a document is kept: its max-age, within [jwksMinTTL, jwksMaxTTL].
func jwksTTL(cacheControl string) time.Duration {
	var ttl time.Duration
	for _, d := range strings.Split(cacheControl, ",") {
		name, v, ok := strings.Cut(strings.TrimSpace(d), "=")
		if !ok || !strings.EqualFold(name, "max-age") {
			continue
		}
		if n, err := strconv.ParseInt(strings.Trim(v, `"`), 10, 64); err == nil && n > 0 {
			ttl = time.Duration(min(n, int64(jwksMaxTTL/time.Second))) * time.Second
		}
	}
	return min(max(ttl, jwksMinTTL), jwksMaxTTL)
}

// jwk is one key of a JWKS (RFC 7517), the fields this service reads.
type jwk struct {
	Kty    string   `json:"kty"`
	Kid    string   `json:"kid"`
	Alg    string   `json:"alg"`
	Use    string   `json:"use"`
	KeyOps []string `json:"key_ops"`
	Crv    string   `json:"crv"`
	N      string   `json:"n"`
	E      string   `json:"e"`
	X      string   `json:"x"`
	Y      string   `json:"y"`
}

// parseJWKS reads a JWKS document. Keys this service cannot use (another algorithm, an
// encryption key, a malformed or weak key) are left out rather than failing the document.
func parseJWKS(body []byte) ([]jwksKey, error) {
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &doc); err != nil || doc.Keys == nil {
		return nil, errors.New("not a JWKS document")
	}
	var out []jwksKey
	for _, raw := range doc.Keys[:min(len(doc.Keys), jwksMaxKeys)] {
		var k jwk
		if json.Unmarshal(raw, &k) != nil {
			continue
		}
		if vk, err := k.verifyKey(); err == nil {
			out = append(out, jwksKey{kid: k.Kid, verifyKey: vk})
		}
	}
	return out, nil
}

// verifyKey binds the key to the one algorithm it accepts: its alg, which must be the one its
// kty and crv imply, or else the implied one.
func (k jwk) verifyKey() (verifyKey, error) {
	if k.Use != "" && k.Use != "sig" {
		return verifyKey{}, errors.New("not a signature key")
	}
	if len(k.KeyOps) > 0 && !slices.Contains(k.KeyOps, "verify") {
		return verifyKey{}, errors.New("not a verification key")
	}
	alg := impliedAlg(k.Kty, k.Crv)
	if alg == "" || (k.Alg != "" && k.Alg != alg) {
		return verifyKey{}, errors.New("unsupported algorithm")
	}
	var pub any
	switch alg {
	case AlgRS256:
		n, err1 := b64url(k.N)
		e, err2 := b64url(k.E)
		if err1 != nil || err2 != nil || len(e) == 0 || len(e) > 4 {
			return verifyKey{}, errors.New("malformed RSA key")
		}
		exp := new(big.Int).SetBytes(e).Int64()
		if exp < 3 || exp%2 == 0 {
			return verifyKey{}, errors.New("malformed RSA key")
		}
		pub = &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(exp)}
	case AlgES256:
		x, err1 := b64url(k.X)
		y, err2 := b64url(k.Y)
		if err1 != nil || err2 != nil || len(x) != 32 || len(y) != 32 {
			return verifyKey{}, errors.New("malformed EC key")
		}
		ec, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...))
		if err != nil {
			return verifyKey{}, errors.New("malformed EC key")
		}
		pub = ec
	case AlgEdDSA:
		x, err := b64url(k.X)
		if err != nil || len(x) != ed25519.PublicKeySize {
			return verifyKey{}, errors.New("malformed Ed25519 key")
		}
		pub = ed25519.PublicKey(x)
	}
	return keyFor(pub, alg)
}

// impliedAlg is the algorithm a key's type and curve allow among those this service accepts.
func impliedAlg(kty, crv string) string {
	switch {
	case kty == "RSA":
		return AlgRS256
	case kty == "EC" && crv == "P-256":
		return AlgES256
	case kty == "OKP" && crv == "Ed25519":
		return AlgEdDSA
	default:
		return ""
	}
}

func b64url(s string) ([]byte, error) {
	return base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
}
