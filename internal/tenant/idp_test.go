package tenant

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"maps"
	"math/big"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/streamgate/streamgate/internal/keys"
	"github.com/streamgate/streamgate/internal/urlguard"
)

// idpKeys are the key pairs of a pretend identity provider, generated once per test binary
// (RSA generation is slow under the race detector).
type idpKeys struct {
	rsa     *rsa.PrivateKey
	rsaWeak *rsa.PrivateKey // 1024 bits: refused
	ec      *ecdsa.PrivateKey
	ec384   *ecdsa.PrivateKey
	ed      ed25519.PrivateKey
	other   *rsa.PrivateKey // a key the provider does not have
}

var testIDPKeys = sync.OnceValues(func() (*idpKeys, error) {
	var k idpKeys
	var err error
	if k.rsa, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		return nil, err
	}
	if k.other, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		return nil, err
	}
	if k.rsaWeak, err = rsa.GenerateKey(rand.Reader, 1024); err != nil {
		return nil, err
	}
	if k.ec, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		return nil, err
	}
	if k.ec384, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader); err != nil {
		return nil, err
	}
	if _, k.ed, err = ed25519.GenerateKey(rand.Reader); err != nil {
		return nil, err
	}
	return &k, nil
})

func providerKeys(tb testing.TB) *idpKeys {
	tb.Helper()
	k, err := testIDPKeys()
	if err != nil {
		tb.Fatalf("generate keys: %v", err)
	}
	return k
}

// pemOf is the PKIX PEM of a public key, as a provider's dashboard offers it.
func pemOf(tb testing.TB, pub crypto.PublicKey) string {
	tb.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		tb.Fatalf("marshal key: %v", err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

// jwkOf renders a public key as a JWKS entry, by hand (no JWK library), with extra fields
// (kid, alg, use) set or overridden.
func jwkOf(tb testing.TB, pub crypto.PublicKey, extra map[string]any) map[string]any {
	tb.Helper()
	enc := base64.RawURLEncoding.EncodeToString
	var m map[string]any
	switch k := pub.(type) {
	case *rsa.PublicKey:
		m = map[string]any{"kty": "RSA", "n": enc(k.N.Bytes()), "e": enc(big.NewInt(int64(k.E)).Bytes())}
	case *ecdsa.PublicKey:
		raw, err := k.Bytes()
		if err != nil {
			tb.Fatalf("EC key bytes: %v", err)
		}
		size := (len(raw) - 1) / 2
		crv := map[int]string{32: "P-256", 48: "P-384"}[size]
		m = map[string]any{"kty": "EC", "crv": crv, "x": enc(raw[1 : 1+size]), "y": enc(raw[1+size:])}
	case ed25519.PublicKey:
		m = map[string]any{"kty": "OKP", "crv": "Ed25519", "x": enc(k)}
	default:
		tb.Fatalf("no JWK for %T", pub)
	}
	maps.Copy(m, extra)
	return m
}

// jwksServer serves a JWKS document that the test may change, and counts the fetches.
type jwksServer struct {
	*httptest.Server
	mu           sync.Mutex
	doc          []byte
	status       int
	cacheControl string
	fetches      atomic.Int32
}

func newJWKSServer(tb testing.TB, keys ...map[string]any) *jwksServer {
	tb.Helper()
	js := &jwksServer{status: http.StatusOK, cacheControl: "public, max-age=600"}
	js.set(tb, keys...)
	js.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		js.fetches.Add(1)
		js.mu.Lock()
		doc, status, cc := js.doc, js.status, js.cacheControl
		js.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if cc != "" {
			w.Header().Set("Cache-Control", cc)
		}
		w.WriteHeader(status)
		_, _ = w.Write(doc)
	}))
	tb.Cleanup(js.Close)
	return js
}

func (js *jwksServer) set(tb testing.TB, keys ...map[string]any) {
	tb.Helper()
	doc, err := json.Marshal(map[string]any{"keys": keys})
	if err != nil {
		tb.Fatalf("marshal JWKS: %v", err)
	}
	js.mu.Lock()
	js.doc = doc
	js.mu.Unlock()
}

func (js *jwksServer) answer(status int, cacheControl string) {
	js.mu.Lock()
	js.status, js.cacheControl = status, cacheControl
	js.mu.Unlock()
}

// clock is a store clock the test moves by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock(s ...*Store) *clock {
	c := &clock{t: time.Now().Truncate(time.Second)}
	for _, st := range s {
		st.now = c.Now
	}
	return c
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// privateURLs lets a store fetch from the test's httptest servers.
var privateURLs = WithURLGuard(urlguard.Guard{AllowPrivate: true})

// signAs signs claims with a provider's private key (or, for HS*, with key's bytes).
func signAs(tb testing.TB, m jwt.SigningMethod, kid string, claims jwt.MapClaims, key any) string {
	tb.Helper()
	tok := jwt.NewWithClaims(m, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		tb.Fatalf("sign %s: %v", m.Alg(), err)
	}
	return s
}

func mustCreateIDP(tb testing.TB, s *Store, tenantID string, p IdentityProvider) IdentityProvider {
	tb.Helper()
	got, err := s.CreateIdentityProvider(tb.Context(), tenantID, p)
	if err != nil {
		tb.Fatalf("CreateIdentityProvider(%+v): %v", p, err)
	}
	return got
}

func TestCreateIdentityProvider(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	s := env.node(t, privateURLs)
	k := providerKeys(t)
	a := mustCreate(t, s, "Acme")
	js := newJWKSServer(t)

	rsaPEM, ecPEM, edPEM := pemOf(t, &k.rsa.PublicKey), pemOf(t, &k.ec.PublicKey), pemOf(t, k.ed.Public())
	certPEM := func() string {
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.rsa.PublicKey, k.rsa)
		if err != nil {
			t.Fatalf("certificate: %v", err)
		}
		return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	}()
	privPEM := func() string {
		der, err := x509.MarshalPKCS8PrivateKey(k.ec)
		if err != nil {
			t.Fatal(err)
		}
		return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	}()
	pkcs1 := string(pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&k.rsa.PublicKey)}))

	n := 0
	ok := func(p IdentityProvider) IdentityProvider { // a fresh issuer per accepted case
		n++
		p.Issuer, p.Audience = fmt.Sprintf("https://idp%d.example/", n), "streamgate"
		return p
	}
	bad := func(p IdentityProvider) IdentityProvider {
		if p.Issuer == "" {
			p.Issuer = "https://bad.example/"
		}
		if p.Audience == "" {
			p.Audience = "streamgate"
		}
		return p
	}
	tests := []struct {
		name    string
		in      IdentityProvider
		wantErr error
	}{
		{"JWKS URL", ok(IdentityProvider{JWKSURL: js.URL + "/jwks.json"}), nil},
		{"RS256 PEM", ok(IdentityProvider{PublicKey: rsaPEM, Algorithm: "RS256"}), nil},
		{"ES256 PEM", ok(IdentityProvider{PublicKey: ecPEM, Algorithm: "ES256"}), nil},
		{"EdDSA PEM", ok(IdentityProvider{PublicKey: edPEM, Algorithm: "EdDSA"}), nil},
		{"RS256 certificate", ok(IdentityProvider{PublicKey: certPEM, Algorithm: "RS256"}), nil},
		{"RS256 PKCS #1", ok(IdentityProvider{PublicKey: pkcs1, Algorithm: "RS256"}), nil},
		{"named channels claim", ok(IdentityProvider{PublicKey: edPEM, Algorithm: "EdDSA", ChannelsClaim: "https://acme.example/channels"}), nil},

		{"no issuer", IdentityProvider{Audience: "sg", PublicKey: edPEM, Algorithm: "EdDSA"}, ErrInvalid},
		{"no audience", IdentityProvider{Issuer: "https://x.example/", PublicKey: edPEM, Algorithm: "EdDSA"}, ErrInvalid},
		{"issuer of 1001 characters", bad(IdentityProvider{Issuer: strings.Repeat("i", 1001), PublicKey: edPEM, Algorithm: "EdDSA"}), ErrInvalid},
		{"issuer with a newline", bad(IdentityProvider{Issuer: "https://x.example/\n", PublicKey: edPEM, Algorithm: "EdDSA"}), ErrInvalid},
		{"neither key nor URL", bad(IdentityProvider{}), ErrInvalid},
		{"both key and URL", bad(IdentityProvider{JWKSURL: js.URL, PublicKey: edPEM, Algorithm: "EdDSA"}), ErrInvalid},
		{"algorithm with a JWKS URL", bad(IdentityProvider{JWKSURL: js.URL, Algorithm: "RS256"}), ErrInvalid},
		{"public key without algorithm", bad(IdentityProvider{PublicKey: rsaPEM}), ErrInvalid},
		{"HS256", bad(IdentityProvider{PublicKey: rsaPEM, Algorithm: "HS256"}), ErrInvalid},
		{"RS512", bad(IdentityProvider{PublicKey: rsaPEM, Algorithm: "RS512"}), ErrInvalid},
		{"RSA key for ES256", bad(IdentityProvider{PublicKey: rsaPEM, Algorithm: "ES256"}), ErrInvalid},
		{"EC key for RS256", bad(IdentityProvider{PublicKey: ecPEM, Algorithm: "RS256"}), ErrInvalid},
		{"Ed25519 key for ES256", bad(IdentityProvider{PublicKey: edPEM, Algorithm: "ES256"}), ErrInvalid},
		{"P-384 key for ES256", bad(IdentityProvider{PublicKey: pemOf(t, &k.ec384.PublicKey), Algorithm: "ES256"}), ErrInvalid},
		{"1024-bit RSA key", bad(IdentityProvider{PublicKey: pemOf(t, &k.rsaWeak.PublicKey), Algorithm: "RS256"}), ErrInvalid},
		{"a private key", bad(IdentityProvider{PublicKey: privPEM, Algorithm: "ES256"}), ErrInvalid},
		{"not PEM", bad(IdentityProvider{PublicKey: "ssh-ed25519 AAAA", Algorithm: "EdDSA"}), ErrInvalid},
		{"two PEM blocks", bad(IdentityProvider{PublicKey: rsaPEM + rsaPEM, Algorithm: "RS256"}), ErrInvalid},
		{"ftp URL", bad(IdentityProvider{JWKSURL: "ftp://idp.example/jwks"}), ErrInvalid},
		{"relative URL", bad(IdentityProvider{JWKSURL: "/jwks.json"}), ErrInvalid},
		{"channels claim with a tab", bad(IdentityProvider{PublicKey: edPEM, Algorithm: "EdDSA", ChannelsClaim: "a\tb"}), ErrInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			before := redisDump(t, env.rdb)
			got, err := s.CreateIdentityProvider(ctx, a.Tenant.ID, tc.in)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("CreateIdentityProvider = %+v, %v; want %v", got, err, tc.wantErr)
				}
				if after := redisDump(t, env.rdb); !maps.Equal(before, after) {
					t.Errorf("a refused create wrote to Redis")
				}
				return
			}
			if err != nil {
				t.Fatalf("CreateIdentityProvider: %v", err)
			}
			want := tc.in
			want.ID, want.CreatedAt = got.ID, got.CreatedAt
			if want.ChannelsClaim == "" {
				want.ChannelsClaim = "channels"
			}
			if want.PublicKey != "" {
				want.PublicKey = got.PublicKey // normalised PEM, checked below
				if _, _, err := parsePEM(got.PublicKey, got.Algorithm); err != nil {
					t.Errorf("stored PEM does not parse: %v", err)
				}
			}
			if !strings.HasPrefix(got.ID, "idp_") || got.CreatedAt.IsZero() || !reflect.DeepEqual(got, want) {
				t.Errorf("created %+v, want %+v", got, want)
			}
			// Another node lists it as created.
			list, err := env.node(t).IdentityProviders(ctx, a.Tenant.ID)
			if err != nil {
				t.Fatalf("IdentityProviders: %v", err)
			}
			found := false
			for _, p := range list {
				found = found || reflect.DeepEqual(p, got)
			}
			if !found {
				t.Errorf("list %+v lacks %+v", list, got)
			}
			if err := s.DeleteIdentityProvider(ctx, a.Tenant.ID, got.ID); err != nil {
				t.Fatalf("DeleteIdentityProvider: %v", err)
			}
		})
	}

	t.Run("private JWKS URL on a public-only node", func(t *testing.T) {
		strict := env.node(t) // the default guard: public addresses only
		_, err := strict.CreateIdentityProvider(t.Context(), a.Tenant.ID,
			IdentityProvider{Issuer: "https://x.example/", Audience: "sg", JWKSURL: js.URL + "/jwks.json"})
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "not a public address") {
			t.Errorf("CreateIdentityProvider(%s) = %v, want ErrInvalid: not a public address", js.URL, err)
		}
	})
}

// An issuer and audience pair belongs to one provider of one tenant, a tenant has at most five
// providers, and neither refusal leaves anything behind.
func TestIdentityProviderConflictAndLimit(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	s := env.store
	ctx := t.Context()
	k := providerKeys(t)
	edPEM := pemOf(t, k.ed.Public())
	a := mustCreate(t, s, "Acme")
	b := mustCreate(t, s, "Beta")
	spec := func(iss string) IdentityProvider {
		return IdentityProvider{Issuer: iss, Audience: "streamgate", PublicKey: edPEM, Algorithm: "EdDSA"}
	}

	first := mustCreateIDP(t, s, a.Tenant.ID, spec("https://shared.example/"))
	for _, tc := range []struct {
		name   string
		tenant string
	}{{"another tenant", b.Tenant.ID}, {"the same tenant", a.Tenant.ID}} {
		before := redisDump(t, env.rdb)
		if _, err := env.node(t).CreateIdentityProvider(ctx, tc.tenant, spec("https://shared.example/")); !errors.Is(err, ErrConflict) {
			t.Errorf("%s: CreateIdentityProvider of a taken pair = %v, want ErrConflict", tc.name, err)
		}
		if after := redisDump(t, env.rdb); !maps.Equal(before, after) {
			t.Errorf("%s: a refused create wrote to Redis", tc.name)
		}
	}
	// The same issuer with another audience is another pair.
	other := spec("https://shared.example/")
	other.Audience = "another-api"
	mustCreateIDP(t, s, b.Tenant.ID, other)

	// Ten creates at once for a tenant that has one: four win, whatever the interleaving.
	var wg sync.WaitGroup
	errs := make([]error, 10)
	for i := range errs {
		wg.Go(func() {
			_, errs[i] = env.node(t).CreateIdentityProvider(ctx, a.Tenant.ID, spec(fmt.Sprintf("https://race%d.example/", i)))
		})
	}
	wg.Wait()
	won := 0
	for i, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, ErrLimitExceeded):
			t.Errorf("create %d: %v, want nil or ErrLimitExceeded", i, err)
		}
	}
	list, err := s.IdentityProviders(ctx, a.Tenant.ID)
	if err != nil {
		t.Fatalf("IdentityProviders: %v", err)
	}
	if won != MaxIdentityProviders-1 || len(list) != MaxIdentityProviders {
		t.Fatalf("%d creates won and the tenant has %d providers, want %d and %d", won, len(list), MaxIdentityProviders-1, MaxIdentityProviders)
	}
	// A losing create left its pair free: another tenant can take it.
	for i, err := range errs {
		if err != nil {
			mustCreateIDP(t, s, b.Tenant.ID, spec(fmt.Sprintf("https://race%d.example/", i)))
			break
		}
	}

	// Deleting frees the pair for anyone.
	if err := s.DeleteIdentityProvider(ctx, a.Tenant.ID, first.ID); err != nil {
		t.Fatalf("DeleteIdentityProvider: %v", err)
	}
	mustCreateIDP(t, s, b.Tenant.ID, spec("https://shared.example/"))
}

// A pair whose index entry outlived its provider (a create or delete that stopped half way) is
// taken over once the entry is old enough not to be a create still under way.
func TestIdentityProviderDanglingIndex(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	s := env.store
	ctx := t.Context()
	edPEM := pemOf(t, providerKeys(t).ed.Public())
	a := mustCreate(t, s, "Acme")
	spec := IdentityProvider{Issuer: "https://idp.example/", Audience: "sg", PublicKey: edPEM, Algorithm: "EdDSA"}
	index := keys.IdentityProviderIndex(pairHash(spec.Issuer, spec.Audience))

	fresh, _ := json.Marshal(idpIndexEntry{TenantID: "tn_other", ProviderID: "idp_gone", At: time.Now().UnixMilli()})
	if err := env.rdb.Set(ctx, index, fresh, 0).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateIdentityProvider(ctx, a.Tenant.ID, spec); !errors.Is(err, ErrConflict) {
		t.Fatalf("pair claimed a moment ago: CreateIdentityProvider = %v, want ErrConflict", err)
	}
	old, _ := json.Marshal(idpIndexEntry{TenantID: "tn_other", ProviderID: "idp_gone", At: time.Now().Add(-2 * time.Minute).UnixMilli()})
	if err := env.rdb.Set(ctx, index, old, 0).Err(); err != nil {
		t.Fatal(err)
	}
	p := mustCreateIDP(t, s, a.Tenant.ID, spec)
	var held idpIndexEntry
	raw, _ := env.rdb.Get(ctx, index).Bytes()
	if json.Unmarshal(raw, &held) != nil || held.TenantID != a.Tenant.ID || held.ProviderID != p.ID {
		t.Errorf("index holds %s, want the new provider", raw)
	}
}

func TestVerifyProviderToken(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	s := env.node(t, privateURLs)
	ctx := t.Context()
	k := providerKeys(t)
	c := newClock(s)
	now := c.Now()
	exp := now.Add(time.Hour)

	a := mustCreate(t, s, "Acme")
	b := mustCreate(t, s, "Beta")
	susp := mustCreate(t, s, "Suspended Co")

	js := newJWKSServer(t,
		jwkOf(t, &k.rsa.PublicKey, map[string]any{"kid": "rsa-1", "alg": "RS256", "use": "sig"}),
		jwkOf(t, &k.ec.PublicKey, map[string]any{"kid": "ec-1"}),
		jwkOf(t, k.ed.Public(), map[string]any{"kid": "ed-1"}),
		jwkOf(t, &k.other.PublicKey, map[string]any{"kid": "enc-1", "use": "enc"}),         // not for signatures
		jwkOf(t, &k.other.PublicKey, map[string]any{"kid": "mislabelled", "alg": "ES256"}), // alg its kty does not imply
		jwkOf(t, &k.ec384.PublicKey, map[string]any{"kid": "p384"}),                        // no algorithm this service takes
		map[string]any{"kty": "RSA", "kid": "broken", "n": "!!", "e": "AQAB"},
	)
	const iss = "https://acme.eu.auth0.example/"
	jwks := mustCreateIDP(t, s, a.Tenant.ID, IdentityProvider{Issuer: iss, Audience: "streamgate", JWKSURL: js.URL + "/.well-known/jwks.json"})
	rsaIDP := mustCreateIDP(t, s, a.Tenant.ID, IdentityProvider{Issuer: "https://rsa.example/", Audience: "sg", PublicKey: pemOf(t, &k.rsa.PublicKey), Algorithm: "RS256"})
	ecIDP := mustCreateIDP(t, s, b.Tenant.ID, IdentityProvider{Issuer: "https://ec.example/", Audience: "sg", PublicKey: pemOf(t, &k.ec.PublicKey), Algorithm: "ES256"})
	edIDP := mustCreateIDP(t, s, a.Tenant.ID, IdentityProvider{Issuer: "https://ed.example/", Audience: "sg", PublicKey: pemOf(t, k.ed.Public()), Algorithm: "EdDSA",
		ChannelsClaim: "https://acme.example/channels"})
	mustCreateIDP(t, s, susp.Tenant.ID, IdentityProvider{Issuer: "https://susp.example/", Audience: "sg", PublicKey: pemOf(t, k.ed.Public()), Algorithm: "EdDSA"})
	if _, err := s.Update(ctx, susp.Tenant.ID, LimitsPatch{}, ptr(true)); err != nil {
		t.Fatalf("suspend: %v", err)
	}

	claims := func(iss, aud string, mod func(jwt.MapClaims)) jwt.MapClaims {
		m := jwt.MapClaims{"iss": iss, "aud": aud, "sub": "auth0|42", "exp": exp.Unix(), "iat": now.Unix(),
			"channels": []string{"chat.*"}}
		if mod != nil {
			mod(m)
		}
		return m
	}
	viaJWKS := func(mod func(jwt.MapClaims)) jwt.MapClaims { return claims(iss, "streamgate", mod) }
	rs := func(kid string, m jwt.MapClaims) string { return signAs(t, jwt.SigningMethodRS256, kid, m, k.rsa) }
	want := func(tenantID, keyID string, mod func(*Claims)) *Claims {
		c := Claims{TenantID: tenantID, KeyID: keyID, Sub: "auth0|42", Channels: []string{"chat.*"}, ExpiresAt: exp}
		if mod != nil {
			mod(&c)
		}
		return &c
	}
	wantJWKS := func(mod func(*Claims)) *Claims { return want(a.Tenant.ID, jwks.ID, mod) }
	rsaPublicPEM := pemOf(t, &k.rsa.PublicKey)
	rsaPublicDER, _ := x509.MarshalPKIXPublicKey(&k.rsa.PublicKey)

	tests := []struct {
		name  string
		token string
		want  *Claims // nil: refused with ErrUnauthorized
	}{
		{"JWKS RSA key", rs("rsa-1", viaJWKS(nil)), wantJWKS(nil)},
		{"JWKS EC key", signAs(t, jwt.SigningMethodES256, "ec-1", viaJWKS(nil), k.ec), wantJWKS(nil)},
		{"JWKS Ed25519 key", signAs(t, jwt.SigningMethodEdDSA, "ed-1", viaJWKS(nil), k.ed), wantJWKS(nil)},
		{"JWKS, no kid: the keys of the token's alg are tried", signAs(t, jwt.SigningMethodES256, "", viaJWKS(nil), k.ec), wantJWKS(nil)},
		{"aud a list holding the audience", rs("rsa-1", viaJWKS(func(m jwt.MapClaims) { m["aud"] = []string{"other", "streamgate"} })), wantJWKS(nil)},
		{"info kept", rs("rsa-1", viaJWKS(func(m jwt.MapClaims) { m["info"] = map[string]any{"name": "Ada"} })),
			wantJWKS(func(c *Claims) { c.Info = json.RawMessage(`{"name":"Ada"}`) })},
		{"no channels claim grants none", rs("rsa-1", viaJWKS(func(m jwt.MapClaims) { delete(m, "channels") })),
			wantJWKS(func(c *Claims) { c.Channels = nil })},
		{"PEM RS256", rs("", claims("https://rsa.example/", "sg", nil)), want(a.Tenant.ID, rsaIDP.ID, nil)},
		{"PEM RS256, any kid", rs("whatever", claims("https://rsa.example/", "sg", nil)), want(a.Tenant.ID, rsaIDP.ID, nil)},
		{"PEM ES256, tenant B", signAs(t, jwt.SigningMethodES256, "", claims("https://ec.example/", "sg", nil), k.ec), want(b.Tenant.ID, ecIDP.ID, nil)},
		{"named channels claim grants, channels does not",
			signAs(t, jwt.SigningMethodEdDSA, "", claims("https://ed.example/", "sg", func(m jwt.MapClaims) {
				m["https://acme.example/channels"] = []string{"team.*"}
			}), k.ed),
			want(a.Tenant.ID, edIDP.ID, func(c *Claims) { c.Channels = []string{"team.*"} })},

		// alg confusion: every key accepts its own algorithm and nothing else.
		{"HS256 signed with the RSA public key's PEM", signAs(t, jwt.SigningMethodHS256, "rsa-1", viaJWKS(nil), []byte(rsaPublicPEM)), nil},
		{"HS256 signed with the RSA public key's DER", signAs(t, jwt.SigningMethodHS256, "rsa-1", viaJWKS(nil), rsaPublicDER), nil},
		{"HS256 with the PEM, PEM provider", signAs(t, jwt.SigningMethodHS256, "", claims("https://rsa.example/", "sg", nil), []byte(rsaPublicPEM)), nil},
		{"RS256 token against the ES256 key's kid", rs("ec-1", viaJWKS(nil)), nil},
		{"RS256 token against the ES256 PEM provider", rs("", claims("https://ec.example/", "sg", nil)), nil},
		{"ES256 token against the RS256 key's kid", signAs(t, jwt.SigningMethodES256, "rsa-1", viaJWKS(nil), k.ec), nil},
		{"EdDSA token against the RS256 PEM provider", signAs(t, jwt.SigningMethodEdDSA, "", claims("https://rsa.example/", "sg", nil), k.ed), nil},
		{"PS256 with the right RSA key", signAs(t, jwt.SigningMethodPS256, "rsa-1", viaJWKS(nil), k.rsa), nil},
		{"RS512 with the right RSA key", signAs(t, jwt.SigningMethodRS512, "rsa-1", viaJWKS(nil), k.rsa), nil},
		{"alg none", handToken(t, map[string]any{"alg": "none", "kid": "rsa-1"}, viaJWKS(nil), nil), nil},
		{"a key labelled ES256 whose kty is RSA", signAs(t, jwt.SigningMethodRS256, "mislabelled", viaJWKS(nil), k.other), nil},
		{"an encryption key", signAs(t, jwt.SigningMethodRS256, "enc-1", viaJWKS(nil), k.other), nil},
		{"a P-384 key as ES256", signAs(t, jwt.SigningMethodES384, "p384", viaJWKS(nil), k.ec384), nil},

		{"signed by a key the provider does not have", signAs(t, jwt.SigningMethodRS256, "rsa-1", viaJWKS(nil), k.other), nil},
		{"wrong audience", rs("rsa-1", claims(iss, "another-api", nil)), nil},
		{"wrong issuer", rs("rsa-1", claims("https://evil.example/", "streamgate", nil)), nil},
		{"issuer differs by a slash", rs("rsa-1", claims(strings.TrimSuffix(iss, "/"), "streamgate", nil)), nil},
		{"no aud", rs("rsa-1", viaJWKS(func(m jwt.MapClaims) { delete(m, "aud") })), nil},
		{"no iss", rs("rsa-1", viaJWKS(func(m jwt.MapClaims) { delete(m, "iss") })), nil},
		{"no sub", rs("rsa-1", viaJWKS(func(m jwt.MapClaims) { delete(m, "sub") })), nil},
		{"no exp", rs("rsa-1", viaJWKS(func(m jwt.MapClaims) { delete(m, "exp") })), nil},
		{"expired", rs("rsa-1", viaJWKS(func(m jwt.MapClaims) { m["exp"] = now.Add(-time.Minute).Unix() })), nil},
		{"channels not a list", rs("rsa-1", viaJWKS(func(m jwt.MapClaims) { m["channels"] = "chat.*" })), nil},
		{"bad channel pattern", rs("rsa-1", viaJWKS(func(m jwt.MapClaims) { m["channels"] = []string{"chat room"} })), nil},
		{"info not an object", rs("rsa-1", viaJWKS(func(m jwt.MapClaims) { m["info"] = []int{1} })), nil},
		{"tenant suspended", signAs(t, jwt.SigningMethodEdDSA, "", claims("https://susp.example/", "sg", nil), k.ed), nil},
		{"kid naming a signing key wins over iss and aud", rs(a.SigningKey.ID, viaJWKS(nil)), nil},
	}

	// Refused for the right reason: the key's own algorithm, not a signature that happens to fail.
	reasons := map[string]string{
		"HS256 signed with the RSA public key's PEM":     "no key of its identity provider accepts",
		"HS256 signed with the RSA public key's DER":     "no key of its identity provider accepts",
		"HS256 with the PEM, PEM provider":               "no key of its identity provider accepts",
		"RS256 token against the ES256 key's kid":        "no key of its identity provider accepts",
		"RS256 token against the ES256 PEM provider":     "no key of its identity provider accepts",
		"ES256 token against the RS256 key's kid":        "no key of its identity provider accepts",
		"EdDSA token against the RS256 PEM provider":     "no key of its identity provider accepts",
		"kid naming a signing key wins over iss and aud": "must be HS256",
		"a key labelled ES256 whose kty is RSA":          "no key of the identity provider's JWKS has the token's kid",
	}

	other := env.node(t, privateURLs)
	other.now = s.now
	for _, tc := range tests {
		for _, n := range []struct {
			name  string
			store *Store
		}{{"this node", s}, {"other node", other}} {
			t.Run(tc.name+"/"+n.name, func(t *testing.T) {
				got, err := n.store.VerifyToken(t.Context(), tc.token)
				if tc.want == nil {
					if !errors.Is(err, ErrUnauthorized) {
						t.Fatalf("VerifyToken = %+v, %v; want ErrUnauthorized", got, err)
					}
					if !reflect.DeepEqual(got, Claims{}) {
						t.Errorf("refused, yet returned claims %+v", got)
					}
					if r := reasons[tc.name]; !strings.Contains(err.Error(), r) {
						t.Errorf("refused with %q, want the reason %q", err, r)
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
	if n := js.fetches.Load(); n != 2 {
		t.Errorf("the JWKS was fetched %d times by two nodes, want once each", n)
	}
}

// A JWKS is kept for its max-age (at least 5 min), fetched again for an unknown kid at most once
// a minute, fetched once for many concurrent tokens, used stale when the provider fails, and
// fetched only from addresses the guard allows at fetch time.
func TestJWKSFetching(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	s := env.node(t, privateURLs)
	k := providerKeys(t)
	c := newClock(s)
	a := mustCreate(t, s, "Acme")
	js := newJWKSServer(t, jwkOf(t, k.ed.Public(), map[string]any{"kid": "k1"}))
	js.answer(http.StatusOK, "max-age=60") // under the floor: kept 5 min
	const iss, aud = "https://rotating.example/", "sg"
	mustCreateIDP(t, s, a.Tenant.ID, IdentityProvider{Issuer: iss, Audience: aud, JWKSURL: js.URL})

	token := func(kid string, key any) string {
		return signAs(t, jwt.SigningMethodEdDSA, kid, jwt.MapClaims{"iss": iss, "aud": aud, "sub": "u",
			"exp": c.Now().Add(time.Hour).Unix()}, key)
	}
	_, newKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	verify := func(st *Store, tok string) error {
		_, err := st.VerifyToken(t.Context(), tok)
		return err
	}
	step := func(what string, err error, accepted bool, fetches int32) {
		t.Helper()
		if accepted && err != nil {
			t.Errorf("%s: VerifyToken = %v, want accepted", what, err)
		}
		if !accepted && !errors.Is(err, ErrUnauthorized) {
			t.Errorf("%s: VerifyToken = %v, want ErrUnauthorized", what, err)
		}
		if got := js.fetches.Load(); got != fetches {
			t.Errorf("%s: %d fetches so far, want %d", what, got, fetches)
		}
	}

	step("first token", verify(s, token("k1", k.ed)), true, 1)
	step("again", verify(s, token("k1", k.ed)), true, 1)
	for range 5 {
		step("unknown kid within the minute", verify(s, token("k2", newKey)), false, 1)
	}
	js.set(t, jwkOf(t, k.ed.Public(), map[string]any{"kid": "k1"}), jwkOf(t, newKey.Public(), map[string]any{"kid": "k2"}))
	c.Advance(59 * time.Second)
	step("rotated, 59 s later", verify(s, token("k2", newKey)), false, 1)
	c.Advance(time.Second)
	step("rotated, a minute later", verify(s, token("k2", newKey)), true, 2)
	for range 5 {
		step("another unknown kid", verify(s, token("k3", newKey)), false, 2)
	}
	c.Advance(5*time.Minute - time.Second)
	step("just before the 5 min floor", verify(s, token("k1", k.ed)), true, 2)
	c.Advance(time.Second)
	step("at the 5 min floor", verify(s, token("k1", k.ed)), true, 3)

	// The provider fails: the stale document serves on; one attempt a minute.
	js.answer(http.StatusInternalServerError, "")
	c.Advance(6 * time.Minute)
	step("provider down, stale keys", verify(s, token("k1", k.ed)), true, 4)
	step("provider down, again", verify(s, token("k1", k.ed)), true, 4)

	// A node that never got the document refuses, and tries again a minute later.
	fresh := env.node(t, privateURLs)
	fresh.now = c.Now
	step("provider down, no document", verify(fresh, token("k1", k.ed)), false, 5)
	js.answer(http.StatusOK, "max-age=86400000")
	step("provider back, within the minute", verify(fresh, token("k1", k.ed)), false, 5)
	c.Advance(time.Minute)
	step("provider back, a minute later", verify(fresh, token("k1", k.ed)), true, 6)
	c.Advance(24*time.Hour - time.Second)
	step("max-age over a day, just before a day", verify(fresh, token("k1", k.ed)), true, 6)
	c.Advance(time.Second)
	step("max-age over a day, a day later", verify(fresh, token("k1", k.ed)), true, 7)

	// Many tokens at once on a node without the document: one fetch.
	crowd := env.node(t, privateURLs)
	crowd.now = c.Now
	var wg sync.WaitGroup
	errs := make([]error, 20)
	tok := token("k1", k.ed)
	for i := range errs {
		wg.Go(func() { errs[i] = verify(crowd, tok) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("concurrent token %d: %v", i, err)
		}
	}
	if got := js.fetches.Load(); got != 8 {
		t.Errorf("20 concurrent tokens made %d fetches, want 1", got-7)
	}

	// The guard judges the address when fetching, whatever it was when the URL was registered.
	strict := env.node(t)
	strict.now = c.Now
	err = verify(strict, token("k1", k.ed))
	if !errors.Is(err, ErrUnauthorized) || !strings.Contains(err.Error(), "address not allowed") {
		t.Errorf("public-only node: VerifyToken = %v, want refused: address not allowed", err)
	}
	if got := js.fetches.Load(); got != 8 {
		t.Errorf("a public-only node reached the loopback JWKS (%d fetches)", got)
	}
}

func TestJWKSTTL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		header string
		want   time.Duration
	}{
		{"", 5 * time.Minute},
		{"no-store", 5 * time.Minute},
		{"max-age=60", 5 * time.Minute},
		{"public, max-age=3600", time.Hour},
		{"public, max-age=\"7200\", must-revalidate", 2 * time.Hour},
		{"Max-Age=600", 10 * time.Minute},
		{"max-age=86401", 24 * time.Hour},
		{"max-age=99999999999999999999", 5 * time.Minute}, // unparsable: the floor
		{"max-age=-5", 5 * time.Minute},
	} {
		if got := jwksTTL(tc.header); got != tc.want {
			t.Errorf("jwksTTL(%q) = %v, want %v", tc.header, got, tc.want)
		}
	}
}

// A deleted provider's tokens are refused at once where it was deleted and on nodes told by the
// control event, within 1 s on any other, and every node hears of it; other tenants' and
// providers' tokens are untouched.
func TestDeleteIdentityProvider(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	ctx := t.Context()
	k := providerKeys(t)
	s := env.store
	a := mustCreate(t, s, "Acme")
	b := mustCreate(t, s, "Beta")
	doomed := mustCreateIDP(t, s, a.Tenant.ID, IdentityProvider{Issuer: "https://doomed.example/", Audience: "sg",
		PublicKey: pemOf(t, &k.rsa.PublicKey), Algorithm: "RS256"})
	kept := mustCreateIDP(t, s, a.Tenant.ID, IdentityProvider{Issuer: "https://kept.example/", Audience: "sg",
		PublicKey: pemOf(t, k.ed.Public()), Algorithm: "EdDSA"})
	tok := func(iss string, m jwt.SigningMethod, key any) string {
		return signAs(t, m, "", jwt.MapClaims{"iss": iss, "aud": "sg", "sub": "u", "exp": time.Now().Add(time.Hour).Unix()}, key)
	}
	doomedToken := tok(doomed.Issuer, jwt.SigningMethodRS256, k.rsa)
	keptToken := tok(kept.Issuer, jwt.SigningMethodEdDSA, k.ed)

	cached, told := env.node(t), env.node(t)
	for _, st := range []*Store{s, cached, told} {
		if c, err := st.VerifyToken(ctx, doomedToken); err != nil || c.KeyID != doomed.ID {
			t.Fatalf("before deletion: VerifyToken = %+v, %v", c, err)
		}
	}

	if err := s.DeleteIdentityProvider(ctx, b.Tenant.ID, doomed.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("another tenant deleting it: %v, want ErrNotFound", err)
	}
	if err := s.DeleteIdentityProvider(ctx, a.Tenant.ID, "idp_nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("deleting an unknown provider: %v, want ErrNotFound", err)
	}

	sub := env.rdb.Subscribe(ctx, keys.Control())
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	if err := s.DeleteIdentityProvider(ctx, a.Tenant.ID, doomed.ID); err != nil {
		t.Fatalf("DeleteIdentityProvider: %v", err)
	}
	deleted := time.Now()
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	msg, err := sub.ReceiveMessage(rctx)
	if err != nil {
		t.Fatalf("no control event: %v", err)
	}
	var ev Event
	if err := json.Unmarshal([]byte(msg.Payload), &ev); err != nil ||
		ev != (Event{Type: EventIdentityProviderDeleted, TenantID: a.Tenant.ID, KeyID: doomed.ID}) {
		t.Errorf("control event %s, want %s of %s", msg.Payload, EventIdentityProviderDeleted, doomed.ID)
	}
	told.Forget(ev)

	for name, st := range map[string]*Store{"deleting node": s, "node told": told, "fresh node": env.node(t)} {
		if _, err := st.VerifyToken(ctx, doomedToken); !errors.Is(err, ErrUnauthorized) {
			t.Errorf("%s: VerifyToken = %v, want ErrUnauthorized at once", name, err)
		}
	}
	refusedAfter := pollRefused(t, 3*time.Second, func() error {
		_, err := cached.VerifyToken(ctx, doomedToken)
		return err
	}, deleted)
	if refusedAfter > time.Second {
		t.Errorf("a node with the provider cached refused its token %v after deletion, want at most 1 s", refusedAfter)
	}
	for _, st := range []*Store{s, cached, told} {
		if c, err := st.VerifyToken(ctx, keptToken); err != nil || c.KeyID != kept.ID {
			t.Errorf("the tenant's other provider: VerifyToken = %+v, %v", c, err)
		}
	}
	list, err := s.IdentityProviders(ctx, a.Tenant.ID)
	if err != nil || len(list) != 1 || list[0].ID != kept.ID {
		t.Errorf("after deletion the list is %+v, %v; want only %s", list, err, kept.ID)
	}
	if n, err := env.rdb.Exists(ctx, keys.IdentityProviderIndex(pairHash(doomed.Issuer, doomed.Audience))).Result(); err != nil || n != 0 {
		t.Errorf("the deleted provider's pair is still indexed (%d, %v)", n, err)
	}
}
