package mercure

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func sign(tb testing.TB, m jwt.SigningMethod, claims jwt.MapClaims, key any) string {
	tb.Helper()
	s, err := jwt.NewWithClaims(m, claims).SignedString(key)
	if err != nil {
		tb.Fatalf("sign: %v", err)
	}
	return s
}

func TestVerifyToken(t *testing.T) {
	t.Parallel()
	now := time.Now().Truncate(time.Second)
	clock := func() time.Time { return now }
	secret := []byte("!ChangeThisMercureHubJWTSecretKey!")
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	otherEC, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	claims := func(mod func(jwt.MapClaims)) jwt.MapClaims {
		c := jwt.MapClaims{"mercure": map[string]any{"publish": []string{"*"}, "subscribe": []string{"https://example.com/{id}"}, "payload": map[string]any{"user": 1}}}
		if mod != nil {
			mod(c)
		}
		return c
	}
	hs := func(mod func(jwt.MapClaims)) string { return sign(t, jwt.SigningMethodHS256, claims(mod), secret) }

	// The token of Mercure's conformance tests: no exp, signed with the reference hub's
	// development key.
	conformance := "eyJhbGciOiJIUzI1NiJ9.eyJtZXJjdXJlIjp7InB1Ymxpc2giOlsiKiJdLCJzdWJzY3JpYmUiOlsiKiJdfX0.bVXdlWXwfw9ySx7-iV5OpUSHo34RkjUdVzDLBcc6l_g"
	c, err := VerifyToken(conformance, "HS256", secret, clock)
	if err != nil || !slices.Equal(c.Publish, []string{"*"}) || !slices.Equal(c.Subscribe, []string{"*"}) || !c.ExpiresAt.IsZero() {
		t.Fatalf("conformance token: %+v, %v", c, err)
	}

	c, err = VerifyToken(hs(func(m jwt.MapClaims) { m["sub"] = "u1"; m["exp"] = now.Add(time.Hour).Unix() }), "HS256", secret, clock)
	if err != nil || c.Sub != "u1" || !c.ExpiresAt.Equal(now.Add(time.Hour)) || string(c.Payload) != `{"user":1}` ||
		!slices.Equal(c.Subscribe, []string{"https://example.com/{id}"}) {
		t.Errorf("HS256 token: %+v, %v", c, err)
	}
	c, err = VerifyToken(hs(func(m jwt.MapClaims) {
		delete(m, "mercure")
		m["https://mercure.rocks/"] = map[string]any{"subscribe": []string{"ns"}}
	}), "HS256", secret, clock)
	if err != nil || !slices.Equal(c.Subscribe, []string{"ns"}) || c.Publish != nil {
		t.Errorf("namespaced claim: %+v, %v", c, err)
	}
	if c, err := VerifyToken(hs(func(m jwt.MapClaims) { delete(m, "mercure") }), "HS256", secret, clock); err != nil || c.Publish != nil || c.Subscribe != nil {
		t.Errorf("token without a mercure claim: %+v, %v", c, err)
	}
	if _, err := VerifyToken(sign(t, jwt.SigningMethodHS512, claims(nil), secret), "HS512", secret, clock); err != nil {
		t.Errorf("HS512: %v", err)
	}
	if _, err := VerifyToken(sign(t, jwt.SigningMethodES256, claims(nil), ec), "ES256", &ec.PublicKey, clock); err != nil {
		t.Errorf("ES256: %v", err)
	}
	if _, err := VerifyToken(sign(t, jwt.SigningMethodRS256, claims(nil), rk), "RS256", &rk.PublicKey, clock); err != nil {
		t.Errorf("RS256: %v", err)
	}

	many := make([]string, MaxSelectors+1)
	for i := range many {
		many[i] = "t"
	}
	for _, tc := range []struct {
		name string
		raw  string
		alg  string
		key  any
	}{
		{"empty", "", "HS256", secret},
		{"garbage", "a.b.c", "HS256", secret},
		{"wrong secret", sign(t, jwt.SigningMethodHS256, claims(nil), []byte("other")), "HS256", secret},
		{"HS512 token to an HS256 hub", sign(t, jwt.SigningMethodHS512, claims(nil), secret), "HS256", secret},
		{"HS256 token to an RS256 hub", hs(nil), "RS256", &rk.PublicKey},
		{"alg none", sign(t, jwt.SigningMethodNone, claims(nil), jwt.UnsafeAllowNoneSignatureType), "HS256", secret},
		{"other EC key", sign(t, jwt.SigningMethodES256, claims(nil), otherEC), "ES256", &ec.PublicKey},
		{"expired", hs(func(m jwt.MapClaims) { m["exp"] = now.Add(-time.Minute).Unix() }), "HS256", secret},
		{"not yet valid", hs(func(m jwt.MapClaims) { m["nbf"] = now.Add(time.Minute).Unix() }), "HS256", secret},
		{"too many selectors", hs(func(m jwt.MapClaims) { m["mercure"] = map[string]any{"subscribe": many} }), "HS256", secret},
		{"selector too long", hs(func(m jwt.MapClaims) {
			m["mercure"] = map[string]any{"publish": []string{strings.Repeat("a", MaxSelectorLen+1)}}
		}), "HS256", secret},
		{"claim of the wrong type", hs(func(m jwt.MapClaims) { m["mercure"] = map[string]any{"publish": "*"} }), "HS256", secret},
		{"no subscriber key", hs(nil), "HS256", nil},
		{"oversized", strings.Repeat("a", MaxTokenBytes+1), "HS256", secret},
	} {
		if c, err := VerifyToken(tc.raw, tc.alg, tc.key, clock); !errors.Is(err, ErrUnauthorized) {
			t.Errorf("%s: %+v, %v; want ErrUnauthorized", tc.name, c, err)
		} else if tc.raw != "" && len(tc.raw) < 200 && strings.Contains(err.Error(), tc.raw) {
			t.Errorf("%s: the error echoes the token", tc.name)
		}
	}
	// Within the leeway an expired token still passes.
	if _, err := VerifyToken(hs(func(m jwt.MapClaims) { m["exp"] = now.Add(-2 * time.Second).Unix() }), "HS256", secret, clock); err != nil {
		t.Errorf("token expired 2 s ago, within the leeway: %v", err)
	}
}
