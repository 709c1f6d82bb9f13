package main

import (
	"slices"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// A token sgbench signs is what a tenant's backend signs: HS256 with the key's secret, its kid
// in the header, sub, channels, iat and an exp ttl later.
func TestSignToken(t *testing.T) {
	t.Parallel()
	key := signingKey{ID: "sk_test", Secret: "c2VjcmV0LXNpZ25pbmcta2V5LW9mLTMyLWJ5dGVz"}
	raw, err := signToken(key, "bench-u7", []string{"bench.*"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	var claims struct {
		Channels []string `json:"channels"`
		jwt.RegisteredClaims
	}
	tok, err := jwt.NewParser(jwt.WithValidMethods([]string{"HS256"}), jwt.WithExpirationRequired()).
		ParseWithClaims(raw, &claims, func(tok *jwt.Token) (any, error) {
			if tok.Header["kid"] != key.ID {
				t.Errorf("kid %v, want %s", tok.Header["kid"], key.ID)
			}
			return []byte(key.Secret), nil
		})
	if err != nil || !tok.Valid {
		t.Fatalf("the api's parser refuses the token: %v", err)
	}
	if claims.Subject != "bench-u7" || !slices.Equal(claims.Channels, []string{"bench.*"}) {
		t.Fatalf("claims %+v", claims)
	}
	if ttl := claims.ExpiresAt.Sub(claims.IssuedAt.Time); ttl != time.Hour {
		t.Fatalf("exp − iat = %v, want 1h", ttl)
	}
	if _, err := jwt.Parse(raw, func(*jwt.Token) (any, error) { return []byte("another secret"), nil }); err == nil {
		t.Fatal("the token verifies with another secret")
	}
}
