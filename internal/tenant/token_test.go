package tenant

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/redis/go-redis/v9"
)

// signWith signs claims with a JWT library, the way a tenant backend signs its own tokens: the
// HMAC key is the signing key's secret string as returned, its bytes. A nil kid leaves the
// header without one.
func signWith(tb testing.TB, m jwt.SigningMethod, kid any, claims jwt.MapClaims, secret string) string {
	tb.Helper()
	tok := jwt.NewWithClaims(m, claims)
	if kid != nil {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString([]byte(secret))
	if err != nil {
		tb.Fatalf("sign: %v", err)
	}
	return s
}

// checkClaims compares what VerifyToken returned with what it should have.
func checkClaims(tb testing.TB, got, want Claims) {
	tb.Helper()
	if got.TenantID != want.TenantID || got.KeyID != want.KeyID || got.Sub != want.Sub ||
		!slices.Equal(got.Channels, want.Channels) || !got.ExpiresAt.Equal(want.ExpiresAt) ||
		string(got.Info) != string(want.Info) {
		tb.Errorf("claims = %+v, want %+v", got, want)
	}
}

func ptr[T any](v T) *T { return &v }

func TestVerifyToken(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	s := env.store
	now := fixedClock(s)
	ctx := t.Context()

	a := mustCreate(t, s, "Acme")
	b := mustCreate(t, s, "Beta")
	c := mustCreate(t, s, "Suspended Co")
	aKid, aSecret := a.SigningKey.ID, a.SigningKey.Secret
	exp := now.Add(time.Hour)

	// claims returns a valid claim set with mod applied.
	claims := func(mod func(jwt.MapClaims)) jwt.MapClaims {
		m := jwt.MapClaims{"sub": "user-42", "exp": exp.Unix(), "iat": now.Unix(), "channels": []string{"chat.*", "job:*"}}
		if mod != nil {
			mod(m)
		}
		return m
	}
	hs256 := func(mod func(jwt.MapClaims)) string {
		return signWith(t, jwt.SigningMethodHS256, aKid, claims(mod), aSecret)
	}
	header := func(alg string) map[string]any { return map[string]any{"alg": alg, "typ": "JWT", "kid": aKid} }
	wantA := func(mod func(*Claims)) *Claims {
		c := Claims{TenantID: a.Tenant.ID, KeyID: aKid, Sub: "user-42", Channels: []string{"chat.*", "job:*"}, ExpiresAt: exp}
		if mod != nil {
			mod(&c)
		}
		return &c
	}

	minted, mintedExp, err := s.MintToken(ctx, a.Tenant.ID, "user-42", []string{"chat.*", "job:*"}, time.Hour)
	if err != nil {
		t.Fatalf("MintToken: %v", err)
	}
	if !mintedExp.Equal(exp) {
		t.Fatalf("MintToken expires_at = %v, want %v", mintedExp, exp)
	}

	// A token of a key that no longer exists.
	gone, err := s.CreateSigningKey(ctx, a.Tenant.ID)
	if err != nil {
		t.Fatalf("CreateSigningKey: %v", err)
	}
	goneToken := signWith(t, jwt.SigningMethodHS256, gone.ID, claims(nil), gone.Secret)
	if err := s.DeleteSigningKey(ctx, a.Tenant.ID, gone.ID); err != nil {
		t.Fatalf("DeleteSigningKey: %v", err)
	}

	// A token of a tenant suspended after it was minted.
	suspendedToken, _, err := s.MintToken(ctx, c.Tenant.ID, "user-42", nil, time.Hour)
	if err != nil {
		t.Fatalf("MintToken: %v", err)
	}
	if _, err := s.Update(ctx, c.Tenant.ID, LimitsPatch{}, ptr(true)); err != nil {
		t.Fatalf("suspend: %v", err)
	}

	// The minted token with its payload changed and its signature kept.
	parts := strings.Split(minted, ".")
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatalf("decode payload: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(payload, &m); err != nil {
		t.Fatalf("decode payload: %v", err)
	}
	m["channels"] = []string{"*"}
	tampered := parts[0] + "." + jwtPart(t, m) + "." + parts[2]

	manyPatterns := make([]string, 100) // about 10 KB of valid patterns
	for i := range manyPatterns {
		manyPatterns[i] = strings.Repeat("a", 98) + string(rune('a'+i%26)) + "*"
	}

	tests := []struct {
		name  string
		token string
		want  *Claims // nil: refused with ErrUnauthorized
	}{
		{"minted by MintToken", minted, wantA(nil)},
		{"signed by hand with golang-jwt and the secret's bytes", hs256(nil), wantA(nil)},
		{"built without a JWT library", handToken(t, header("HS256"), claims(nil), []byte(aSecret)), wantA(nil)},
		{"no channels claim grants none", hs256(func(m jwt.MapClaims) { delete(m, "channels") }),
			wantA(func(c *Claims) { c.Channels = nil })},
		{"tenant B's own token", signWith(t, jwt.SigningMethodHS256, b.SigningKey.ID, claims(nil), b.SigningKey.Secret),
			&Claims{TenantID: b.Tenant.ID, KeyID: b.SigningKey.ID, Sub: "user-42", Channels: []string{"chat.*", "job:*"}, ExpiresAt: exp}},

		{"alg none", handToken(t, header("none"), claims(nil), nil), nil},
		{"alg None", handToken(t, header("None"), claims(nil), nil), nil},
		{"alg none with an HMAC signature", handToken(t, header("none"), claims(nil), []byte(aSecret)), nil},
		{"HS384 with the right secret", signWith(t, jwt.SigningMethodHS384, aKid, claims(nil), aSecret), nil},
		{"HS512 with the right secret", signWith(t, jwt.SigningMethodHS512, aKid, claims(nil), aSecret), nil},
		{"RS256 header, HMAC-SHA256 signature (key confusion)", handToken(t, header("RS256"), claims(nil), []byte(aSecret)), nil},
		{"alg spelled hs256", handToken(t, header("hs256"), claims(nil), []byte(aSecret)), nil},

		{"missing exp", hs256(func(m jwt.MapClaims) { delete(m, "exp") }), nil},
		{"exp not a number", hs256(func(m jwt.MapClaims) { m["exp"] = "tomorrow" }), nil},
		{"expired 6 s ago, beyond the leeway", hs256(func(m jwt.MapClaims) { m["exp"] = now.Add(-6 * time.Second).Unix() }), nil},
		{"expired 1 h ago", hs256(func(m jwt.MapClaims) { m["exp"] = now.Add(-time.Hour).Unix() }), nil},
		{"expired 4 s ago, within the leeway", hs256(func(m jwt.MapClaims) { m["exp"] = now.Add(-4 * time.Second).Unix() }),
			wantA(func(c *Claims) { c.ExpiresAt = now.Add(-4 * time.Second) })},
		{"nbf 10 s ahead, beyond the leeway", hs256(func(m jwt.MapClaims) { m["nbf"] = now.Add(10 * time.Second).Unix() }), nil},
		{"nbf 3 s ahead, within the leeway", hs256(func(m jwt.MapClaims) { m["nbf"] = now.Add(3 * time.Second).Unix() }), wantA(nil)},
		{"nbf in the past", hs256(func(m jwt.MapClaims) { m["nbf"] = now.Add(-time.Minute).Unix() }), wantA(nil)},

		{"unknown kid", signWith(t, jwt.SigningMethodHS256, "sig_doesnotexist", claims(nil), aSecret), nil},
		{"missing kid", signWith(t, jwt.SigningMethodHS256, nil, claims(nil), aSecret), nil},
		{"empty kid", signWith(t, jwt.SigningMethodHS256, "", claims(nil), aSecret), nil},
		{"kid not a string", signWith(t, jwt.SigningMethodHS256, 42, claims(nil), aSecret), nil},
		{"kid of a deleted signing key", goneToken, nil},
		{"wrong secret", signWith(t, jwt.SigningMethodHS256, aKid, claims(nil), "not-the-secret"), nil},
		{"secret base64-decoded instead of taken as is", func() string {
			raw, err := base64.RawURLEncoding.DecodeString(aSecret)
			if err != nil {
				t.Fatalf("decode secret: %v", err)
			}
			return signWith(t, jwt.SigningMethodHS256, aKid, claims(nil), string(raw))
		}(), nil},
		{"tenant A's secret under tenant B's kid", signWith(t, jwt.SigningMethodHS256, b.SigningKey.ID, claims(nil), aSecret), nil},

		{"missing sub", hs256(func(m jwt.MapClaims) { delete(m, "sub") }), nil},
		{"empty sub", hs256(func(m jwt.MapClaims) { m["sub"] = "" }), nil},
		{"sub not a string", hs256(func(m jwt.MapClaims) { m["sub"] = 42 }), nil},
		{"sub of 256 characters", hs256(func(m jwt.MapClaims) { m["sub"] = strings.Repeat("u", 256) }),
			wantA(func(c *Claims) { c.Sub = strings.Repeat("u", 256) })},
		{"sub of 257 characters", hs256(func(m jwt.MapClaims) { m["sub"] = strings.Repeat("u", 257) }), nil},
		{"sub of 256 two-byte characters", hs256(func(m jwt.MapClaims) { m["sub"] = strings.Repeat("é", 256) }),
			wantA(func(c *Claims) { c.Sub = strings.Repeat("é", 256) })},
		{"sub of 257 two-byte characters", hs256(func(m jwt.MapClaims) { m["sub"] = strings.Repeat("é", 257) }), nil},

		{"channel pattern with a space", hs256(func(m jwt.MapClaims) { m["channels"] = []string{"chat.*", "chat room"} }), nil},
		{"empty channel pattern", hs256(func(m jwt.MapClaims) { m["channels"] = []string{""} }), nil},
		{"channel pattern with a slash", hs256(func(m jwt.MapClaims) { m["channels"] = []string{"a/b"} }), nil},
		{"channel pattern over 200 characters", hs256(func(m jwt.MapClaims) { m["channels"] = []string{strings.Repeat("a", 201)} }), nil},
		{"channels not a list", hs256(func(m jwt.MapClaims) { m["channels"] = "chat.*" }), nil},

		{"info object kept, compacted", hs256(func(m jwt.MapClaims) { m["info"] = json.RawMessage(`{ "name": "Ada" }`) }),
			wantA(func(c *Claims) { c.Info = json.RawMessage(`{"name":"Ada"}`) })},
		{"info null is none", hs256(func(m jwt.MapClaims) { m["info"] = nil }), wantA(nil)},
		{"info of 1 KiB", hs256(func(m jwt.MapClaims) { m["info"] = map[string]string{"n": strings.Repeat("x", 1024-8)} }),
			wantA(func(c *Claims) { c.Info = json.RawMessage(`{"n":"` + strings.Repeat("x", 1024-8) + `"}`) })},
		{"info over 1 KiB", hs256(func(m jwt.MapClaims) { m["info"] = map[string]string{"n": strings.Repeat("x", 1024-7)} }), nil},
		{"info not an object", hs256(func(m jwt.MapClaims) { m["info"] = "Ada" }), nil},
		{"iss and aud do not replace a kid", hs256(func(m jwt.MapClaims) { m["iss"] = "https://idp.example/"; m["aud"] = "sg" }),
			wantA(nil)},

		{"tenant suspended after minting", suspendedToken, nil},
		{"payload tampered", tampered, nil},
		{"signature truncated", minted[:len(minted)-2], nil},
		{"over-long token", hs256(func(m jwt.MapClaims) { m["channels"] = manyPatterns }), nil},

		{"empty string", "", nil},
		{"one word", "garbage", nil},
		{"three dots", "...", nil},
		{"three short parts", "a.b.c", nil},
		{"two parts", parts[0] + "." + parts[1], nil},
		{"four parts", minted + ".x", nil},
		{"Bearer prefix left in", "Bearer " + minted, nil},
		{"padded base64", parts[0] + "=." + parts[1] + "." + parts[2], nil},
		{"not UTF-8", "\xff\xfe.\x00\x01.\x80", nil},
		{"header not JSON", base64.RawURLEncoding.EncodeToString([]byte("{alg")) + "." + parts[1] + "." + parts[2], nil},
	}

	// Every case holds on this node and on another that shares only Redis with it.
	nodes := []struct {
		name  string
		store *Store
	}{{"this node", s}, {"other node", env.node(t)}}
	nodes[1].store.now = s.now

	for _, tc := range tests {
		for _, n := range nodes {
			t.Run(tc.name+"/"+n.name, func(t *testing.T) {
				got, err := n.store.VerifyToken(t.Context(), tc.token)
				if tc.want == nil {
					if !errors.Is(err, ErrUnauthorized) {
						t.Fatalf("VerifyToken = %+v, %v; want ErrUnauthorized", got, err)
					}
					if !reflect.DeepEqual(got, Claims{}) {
						t.Errorf("refused, yet returned claims %+v", got)
					}
					return
				}
				if err != nil {
					t.Fatalf("VerifyToken: %v, want accepted", err)
				}
				checkClaims(t, got, *tc.want)
			})
		}
	}
}

// A deleted signing key stops working at once where it was deleted and within 1 s everywhere,
// even on a node that had it cached; the tenant's other keys keep working.
func TestVerifyTokenDeletedSigningKey(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	ctx := t.Context()
	s := env.store
	a := mustCreate(t, s, "Acme")
	doomed, err := s.CreateSigningKey(ctx, a.Tenant.ID)
	if err != nil {
		t.Fatalf("CreateSigningKey: %v", err)
	}
	claims := jwt.MapClaims{"sub": "u", "exp": time.Now().Add(time.Hour).Unix()}
	doomedToken := signWith(t, jwt.SigningMethodHS256, doomed.ID, claims, doomed.Secret)
	keptToken := signWith(t, jwt.SigningMethodHS256, a.SigningKey.ID, claims, a.SigningKey.Secret)

	cached := env.node(t) // a node that has verified the token and holds the key in its cache
	for _, st := range []*Store{s, cached} {
		if _, err := st.VerifyToken(ctx, doomedToken); err != nil {
			t.Fatalf("before deletion: VerifyToken: %v", err)
		}
	}

	if err := s.DeleteSigningKey(ctx, a.Tenant.ID, doomed.ID); err != nil {
		t.Fatalf("DeleteSigningKey: %v", err)
	}
	deleted := time.Now()

	if _, err := s.VerifyToken(ctx, doomedToken); !errors.Is(err, ErrUnauthorized) {
		t.Errorf("deleting node: VerifyToken = %v, want ErrUnauthorized at once", err)
	}
	if _, err := env.node(t).VerifyToken(ctx, doomedToken); !errors.Is(err, ErrUnauthorized) {
		t.Errorf("fresh node: VerifyToken = %v, want ErrUnauthorized at once", err)
	}
	refusedAfter := pollRefused(t, 3*time.Second, func() error {
		_, err := cached.VerifyToken(ctx, doomedToken)
		return err
	}, deleted)
	if refusedAfter > time.Second {
		t.Errorf("node with a cached key refused the token %v after deletion, want at most 1 s", refusedAfter)
	}

	for _, st := range []*Store{s, cached} {
		if got, err := st.VerifyToken(ctx, keptToken); err != nil || got.KeyID != a.SigningKey.ID {
			t.Errorf("the tenant's other key: VerifyToken = %+v, %v; want accepted", got, err)
		}
	}
}

// pollRefused calls verify until it returns ErrUnauthorized and returns how long after since
// that was. Any other error, or no refusal within limit, fails the test.
func pollRefused(tb testing.TB, limit time.Duration, verify func() error, since time.Time) time.Duration {
	tb.Helper()
	for {
		err := verify()
		elapsed := time.Since(since)
		switch {
		case errors.Is(err, ErrUnauthorized):
			return elapsed
		case err != nil:
			tb.Fatalf("want ErrUnauthorized, got %v", err)
		case elapsed > limit:
			tb.Fatalf("still accepted %v after revocation", elapsed)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestMintToken(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	s := env.store
	now := fixedClock(s)
	ctx := t.Context()
	a := mustCreate(t, s, "Acme")

	tests := []struct {
		name     string
		sub      string
		channels []string
		ttl      time.Duration
		wantErr  error // nil: the token verifies with exactly these claims
	}{
		{"an hour", "user-42", []string{"chat.*", "job:*"}, time.Hour, nil},
		{"1 s, the shortest", "user-42", []string{"*"}, time.Second, nil},
		{"24 h, the longest", "user-42", nil, 24 * time.Hour, nil},
		{"ttl 0", "user-42", nil, 0, ErrInvalid},
		{"ttl negative", "user-42", nil, -time.Hour, ErrInvalid},
		{"ttl under a second", "user-42", nil, 999 * time.Millisecond, ErrInvalid},
		{"ttl 86401 s", "user-42", nil, 86401 * time.Second, ErrInvalid},
		{"empty sub", "", nil, time.Hour, ErrInvalid},
		{"sub of 256 characters", strings.Repeat("u", 256), nil, time.Hour, nil},
		{"sub of 256 two-byte characters", strings.Repeat("é", 256), nil, time.Hour, nil},
		{"sub of 257 characters", strings.Repeat("u", 257), nil, time.Hour, ErrInvalid},
		{"sub of 257 two-byte characters", strings.Repeat("é", 257), nil, time.Hour, ErrInvalid},
		{"invalid pattern", "user-42", []string{"chat room"}, time.Hour, ErrInvalid},
		{"empty pattern", "user-42", []string{"chat.*", ""}, time.Hour, ErrInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tok, exp, err := s.MintToken(t.Context(), a.Tenant.ID, tc.sub, tc.channels, tc.ttl)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) || tok != "" {
					t.Fatalf("MintToken = %q, %v; want %v", tok, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("MintToken: %v", err)
			}
			if want := now.Add(tc.ttl); !exp.Equal(want) || exp.Location() != time.UTC {
				t.Errorf("expires_at = %v, want %v in UTC", exp, want)
			}
			got, err := s.VerifyToken(t.Context(), tok)
			if err != nil {
				t.Fatalf("VerifyToken of a minted token: %v", err)
			}
			checkClaims(t, got, Claims{TenantID: a.Tenant.ID, KeyID: a.SigningKey.ID, Sub: tc.sub, Channels: tc.channels, ExpiresAt: exp})
		})
	}

	t.Run("no signing key", func(t *testing.T) {
		if _, _, err := s.MintToken(ctx, "tn_unknown", "u", nil, time.Hour); !errors.Is(err, ErrNoSigningKey) {
			t.Errorf("unknown tenant: MintToken error = %v, want ErrNoSigningKey", err)
		}
	})
}

// A token that MintToken hands out must be one that VerifyToken accepts: a tenant has no way
// to tell otherwise until its users get 401s.
func TestMintTokenNeverMintsAnUnverifiableToken(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	s := env.store
	a := mustCreate(t, s, "Acme")
	patterns := make([]string, 1000) // the most patterns MintToken takes, each valid
	for i := range patterns {
		patterns[i] = "tenant-channel-" + strings.Repeat("x", 40) + "-" + string(rune('a'+i%26)) + "*"
	}
	tok, _, err := s.MintToken(t.Context(), a.Tenant.ID, "user-42", patterns, time.Hour)
	if err != nil {
		if !errors.Is(err, ErrInvalid) {
			t.Fatalf("MintToken error = %v, want ErrInvalid or a token that verifies", err)
		}
		return
	}
	if _, err := s.VerifyToken(t.Context(), tok); err != nil {
		t.Errorf("MintToken returned a %d-byte token that VerifyToken refuses: %v", len(tok), err)
	}
}

// MintToken signs with the newest key, falls back to the next when it is deleted, and reports
// ErrNoSigningKey when none is left.
func TestMintTokenUsesNewestKey(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	s := env.store
	ctx := t.Context()
	clock := time.Now().Truncate(time.Second)
	s.now = func() time.Time { return clock }
	a := mustCreate(t, s, "Acme")

	kidOf := func(tok string) string {
		t.Helper()
		got, err := s.VerifyToken(ctx, tok)
		if err != nil {
			t.Fatalf("VerifyToken: %v", err)
		}
		return got.KeyID
	}
	mint := func() (string, error) {
		tok, _, err := s.MintToken(ctx, a.Tenant.ID, "u", nil, time.Hour)
		return tok, err
	}

	var ids []string
	ids = append(ids, a.SigningKey.ID)
	for range 3 {
		clock = clock.Add(time.Millisecond)
		k, err := s.CreateSigningKey(ctx, a.Tenant.ID)
		if err != nil {
			t.Fatalf("CreateSigningKey: %v", err)
		}
		ids = append(ids, k.ID)
	}
	// Delete newest first: each time the next newest must sign. Then the oldest, then none.
	for i := len(ids) - 1; i >= 0; i-- {
		tok, err := mint()
		if err != nil {
			t.Fatalf("MintToken with %d keys: %v", i+1, err)
		}
		if got, want := kidOf(tok), ids[i]; got != want {
			t.Errorf("with %d keys: token signed by %s, want the newest %s", i+1, got, want)
		}
		if err := s.DeleteSigningKey(ctx, a.Tenant.ID, ids[i]); err != nil {
			t.Fatalf("DeleteSigningKey: %v", err)
		}
	}
	if tok, err := mint(); !errors.Is(err, ErrNoSigningKey) || tok != "" {
		t.Errorf("no keys left: MintToken = %q, %v; want ErrNoSigningKey", tok, err)
	}
}

// isRedisError reports whether err comes from talking to Redis rather than from the token.
func isRedisError(err error) bool {
	var rerr redis.Error
	var nerr net.Error
	return errors.As(err, &rerr) || errors.As(err, &nerr) ||
		errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, redis.ErrClosed)
}

func FuzzVerifyToken(f *testing.F) {
	env := newTestEnv(f)
	s := env.store
	a := mustCreate(f, s, "Acme")
	valid, _, err := s.MintToken(f.Context(), a.Tenant.ID, "user-42", []string{"chat.*"}, 24*time.Hour)
	if err != nil {
		f.Fatalf("MintToken: %v", err)
	}
	parts := strings.Split(valid, ".")
	f.Add(valid)
	f.Add(handToken(f, map[string]any{"alg": "none", "kid": a.SigningKey.ID},
		map[string]any{"sub": "u", "exp": time.Now().Add(time.Hour).Unix()}, nil))
	f.Add(parts[0] + "." + parts[1] + ".")
	f.Add("garbage")
	f.Add("a.b.c")
	f.Add("")
	f.Fuzz(func(t *testing.T, raw string) {
		got, err := s.VerifyToken(t.Context(), raw)
		if err != nil {
			if !errors.Is(err, ErrUnauthorized) && !isRedisError(err) {
				t.Fatalf("VerifyToken(%q) = %v: neither ErrUnauthorized nor a Redis error", raw, err)
			}
			return
		}
		// Accepted: only an HS256 token of the one signing key can be.
		if got.TenantID != a.Tenant.ID || got.KeyID != a.SigningKey.ID || got.Sub == "" {
			t.Fatalf("VerifyToken(%q) accepted with claims %+v", raw, got)
		}
		head, err := base64.RawURLEncoding.DecodeString(strings.Split(raw, ".")[0])
		var h struct{ Alg string }
		if err != nil || json.Unmarshal(head, &h) != nil || h.Alg != "HS256" {
			t.Fatalf("VerifyToken(%q) accepted a token whose alg is not HS256", raw)
		}
	})
}
