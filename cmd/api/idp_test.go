package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/streamgate/streamgate/internal/redistest"
)

type providerView struct {
	ID            string    `json:"id"`
	Issuer        string    `json:"issuer"`
	Audience      string    `json:"audience"`
	JWKSURL       string    `json:"jwks_url"`
	PublicKey     string    `json:"public_key"`
	Algorithm     string    `json:"algorithm"`
	ChannelsClaim string    `json:"channels_claim"`
	CreatedAt     time.Time `json:"created_at"`
}

func listProviders(t testing.TB, n *node, a account) []providerView {
	t.Helper()
	var out struct {
		IdentityProviders []providerView `json:"identity_providers"`
	}
	n.do(t, call{method: "GET", path: "/v1/identity-providers", auth: a.APIKey}).want(t, 200).decode(t, &out)
	return out.IdentityProviders
}

// A tenant's own provider, as Auth0 or Keycloak would be: an RSA key pair made here, its JWKS
// served locally. Its tokens open streams on any node; deleting it ends them with auth_failed
// on every node and refuses the token from then on.
func TestIdentityProviderEndToEnd(t *testing.T) {
	t.Parallel()
	env := map[string]string{"STREAMGATE_ALLOW_PRIVATE_URLS": "true"}
	na := startNode(t, nil, env)
	nb := startNode(t, na.Redis, env)
	a := na.signup(t, "Acme")

	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	enc := base64.RawURLEncoding.EncodeToString
	jwks, _ := json.Marshal(map[string]any{"keys": []any{map[string]any{
		"kty": "RSA", "kid": "key-2024", "alg": "RS256", "use": "sig",
		"n": enc(priv.N.Bytes()), "e": enc(big.NewInt(int64(priv.E)).Bytes()),
	}}})
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/.well-known/jwks.json" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "public, max-age=3600")
		_, _ = w.Write(jwks)
	}))
	t.Cleanup(idp.Close)

	issuer := idp.URL + "/"
	var created providerView
	na.do(t, call{method: "POST", path: "/v1/identity-providers", auth: a.APIKey, body: map[string]any{
		"issuer": issuer, "audience": "streamgate", "jwks_url": idp.URL + "/.well-known/jwks.json",
	}}).want(t, 201).decode(t, &created)
	if !strings.HasPrefix(created.ID, "idp_") || created.Issuer != issuer || created.Audience != "streamgate" ||
		created.ChannelsClaim != "channels" || created.CreatedAt.IsZero() || created.JWKSURL == "" {
		t.Fatalf("created %+v", created)
	}
	if list := listProviders(t, nb, a); len(list) != 1 || list[0] != created {
		t.Fatalf("listed %+v, want [%+v]", list, created)
	}

	mint := func(channels []string) string {
		tok := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{
			"iss": issuer, "aud": []string{"streamgate", "https://acme.example/api"}, "sub": "auth0|42",
			"exp": time.Now().Add(time.Hour).Unix(), "channels": channels, "info": map[string]string{"name": "Ada"},
		})
		tok.Header["kid"] = "key-2024"
		s, err := tok.SignedString(priv)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	tok := mint([]string{"chat.*"})
	onA := na.openStream(t, tok, "chat.lobby")
	onB := nb.openStream(t, tok, "chat.lobby")
	na.publish(t, a, "chat.lobby", "hello")
	for _, s := range []*subscriber{onA, onB} {
		if m := decodeMessage(t, s.next(5*time.Second)); string(m.Data) != `"hello"` {
			t.Fatalf("message %s, want \"hello\"", m.Data)
		}
	}
	// The token grants what its channels claim says, no more.
	na.do(t, call{method: "GET", path: "/v1/stream?channel=admin&token=" + tok}).want(t, 403, "forbidden")
	// A token signed by another key under the same kid is refused.
	forger, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	forged := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{"iss": issuer, "aud": "streamgate", "sub": "x",
		"exp": time.Now().Add(time.Hour).Unix(), "channels": []string{"*"}})
	forged.Header["kid"] = "key-2024"
	forgedToken, _ := forged.SignedString(forger)
	na.do(t, call{method: "GET", path: "/v1/stream?channel=chat.lobby&token=" + forgedToken}).want(t, 401, "unauthorized")

	na.do(t, call{method: "DELETE", path: "/v1/identity-providers/" + created.ID, auth: a.APIKey}).want(t, 204)
	for name, s := range map[string]*subscriber{"node A": onA, "node B": onB} {
		ev := s.next(5 * time.Second)
		var d struct{ Reason string }
		if ev.Event != "auth_failed" || json.Unmarshal([]byte(ev.Data), &d) != nil || d.Reason != "identity provider deleted" {
			t.Fatalf("%s: got %s %s, want auth_failed: identity provider deleted", name, ev.Event, ev.Data)
		}
		select {
		case <-s.done:
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: stream stayed open after auth_failed", name)
		}
	}
	for _, n := range []*node{na, nb} {
		n.do(t, call{method: "GET", path: "/v1/stream?channel=chat.lobby&token=" + tok}).want(t, 401, "unauthorized")
	}
	if list := listProviders(t, na, a); len(list) != 0 {
		t.Errorf("after deletion the list is %+v", list)
	}
	na.do(t, call{method: "DELETE", path: "/v1/identity-providers/" + created.ID, auth: a.APIKey}).want(t, 404, "not_found")
}

// Bad input gets the contract's errors and changes nothing; a tenant has at most five
// providers; an issuer and audience pair belongs to one tenant.
func TestIdentityProviderErrors(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil, nil) // private URLs refused, the default
	a := n.signup(t, "Acme")
	b := n.signup(t, "Beta")
	_, edPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(edPriv.Public())
	edPEM := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	spec := func(i int) map[string]any {
		return map[string]any{"issuer": fmt.Sprintf("https://idp%d.example/", i), "audience": "streamgate",
			"public_key": edPEM, "algorithm": "EdDSA"}
	}
	path := "/v1/identity-providers"

	first := spec(0)
	n.do(t, call{method: "POST", path: path, auth: a.APIKey, body: first}).want(t, 201)

	for _, tc := range []struct {
		name   string
		c      call
		status int
		code   string
	}{
		{"empty object", call{body: `{}`}, 400, "invalid_request"},
		{"unknown field", call{body: `{"issuer":"https://x.example/","audience":"a","public_key":"k","algorithm":"EdDSA","secret":"x"}`}, 400, "invalid_request"},
		{"issuer not a string", call{body: `{"issuer":1,"audience":"a","jwks_url":"https://x.example/jwks"}`}, 400, "invalid_request"},
		{"loopback JWKS URL", call{body: map[string]any{"issuer": "https://x.example/", "audience": "a", "jwks_url": "http://127.0.0.1:9/jwks"}}, 400, "invalid_request"},
		{"metadata JWKS URL", call{body: map[string]any{"issuer": "https://x.example/", "audience": "a", "jwks_url": "http://169.254.169.254/latest"}}, 400, "invalid_request"},
		{"file URL", call{body: map[string]any{"issuer": "https://x.example/", "audience": "a", "jwks_url": "file:///etc/passwd"}}, 400, "invalid_request"},
		{"not a PEM key", call{body: map[string]any{"issuer": "https://x.example/", "audience": "a", "public_key": "abc", "algorithm": "EdDSA"}}, 400, "invalid_request"},
		{"HS256", call{body: map[string]any{"issuer": "https://x.example/", "audience": "a", "public_key": edPEM, "algorithm": "HS256"}}, 400, "invalid_request"},
		{"key of another algorithm", call{body: map[string]any{"issuer": "https://x.example/", "audience": "a", "public_key": edPEM, "algorithm": "RS256"}}, 400, "invalid_request"},
		{"both key and URL", call{body: map[string]any{"issuer": "https://x.example/", "audience": "a", "public_key": edPEM, "algorithm": "EdDSA", "jwks_url": "https://x.example/jwks"}}, 400, "invalid_request"},
		{"not JSON", call{body: "issuer=x", header: map[string]string{"Content-Type": "text/plain"}}, 415, "unsupported_media_type"},
		{"no API key", call{body: spec(9), auth: "-"}, 401, "unauthorized"},
		{"pair taken by another tenant", call{body: first, auth: b.APIKey}, 409, "conflict"},
		{"pair taken by the same tenant", call{body: first}, 409, "conflict"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.c
			c.method, c.path = "POST", path
			switch c.auth {
			case "":
				c.auth = a.APIKey
			case "-":
				c.auth = ""
			}
			n.do(t, c).want(t, tc.status, tc.code)
			if got := len(listProviders(t, n, a)) + len(listProviders(t, n, b)); got != 1 {
				t.Errorf("after a refused create the tenants have %d providers, want 1", got)
			}
		})
	}

	for i := 1; i < 5; i++ {
		n.do(t, call{method: "POST", path: path, auth: a.APIKey, body: spec(i)}).want(t, 201)
	}
	n.do(t, call{method: "POST", path: path, auth: a.APIKey, body: spec(5)}).want(t, 403, "limit_exceeded")
	list := listProviders(t, n, a)
	if len(list) != 5 {
		t.Fatalf("the tenant has %d providers, want 5", len(list))
	}
	// The refused sixth left its pair free.
	n.do(t, call{method: "POST", path: path, auth: b.APIKey, body: spec(5)}).want(t, 201)

	n.do(t, call{method: "DELETE", path: path + "/idp_nope", auth: a.APIKey}).want(t, 404, "not_found")
	n.do(t, call{method: "DELETE", path: path + "/" + list[0].ID, auth: b.APIKey}).want(t, 404, "not_found")
	n.do(t, call{method: "DELETE", path: path + "/" + list[0].ID}).want(t, 401, "unauthorized")
	if got := len(listProviders(t, n, a)); got != 5 {
		t.Errorf("after refused deletes the tenant has %d providers, want 5", got)
	}
	n.do(t, call{method: "DELETE", path: path + "/" + list[0].ID, auth: a.APIKey}).want(t, 204)
	n.do(t, call{method: "POST", path: path, auth: a.APIKey, body: spec(6)}).want(t, 201)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPatch, n.URL+path, nil)
	req.Header.Set("Authorization", "Bearer "+a.APIKey)
	resp, err := testClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("PATCH %s: %d, want 405", path, resp.StatusCode)
	}
}

// On a Redis Cluster the per-tenant records and the global issuer+audience index live in
// different slots: create, conflict, stream and delete still work across nodes.
func TestRedisClusterIdentityProvider(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t, 3)
	na, nb := startClusterNode(t, cl), startClusterNode(t, cl)
	a, b := na.signup(t, "Acme"), nb.signup(t, "Beta")
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(priv.Public())
	spec := map[string]any{"issuer": "https://keycloak.example/realms/acme", "audience": "streamgate",
		"public_key": string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})), "algorithm": "EdDSA"}
	var p providerView
	na.do(t, call{method: "POST", path: "/v1/identity-providers", auth: a.APIKey, body: spec}).want(t, 201).decode(t, &p)
	nb.do(t, call{method: "POST", path: "/v1/identity-providers", auth: b.APIKey, body: spec}).want(t, 409, "conflict")

	tok, err := jwt.NewWithClaims(jwt.SigningMethodEdDSA, jwt.MapClaims{"iss": spec["issuer"], "aud": "streamgate",
		"sub": "kc-7", "exp": time.Now().Add(time.Hour).Unix(), "channels": []string{"*"}}).SignedString(priv)
	if err != nil {
		t.Fatal(err)
	}
	s := nb.openStream(t, tok, "room")
	na.publish(t, a, "room", 1)
	decodeMessage(t, s.next(5*time.Second))

	na.do(t, call{method: "DELETE", path: "/v1/identity-providers/" + p.ID, auth: a.APIKey}).want(t, 204)
	if ev := s.next(5 * time.Second); ev.Event != "auth_failed" {
		t.Fatalf("got %s %s, want auth_failed", ev.Event, ev.Data)
	}
	nb.do(t, call{method: "GET", path: "/v1/stream?channel=room&token=" + tok}).want(t, 401, "unauthorized")
	// The pair is free again.
	nb.do(t, call{method: "POST", path: "/v1/identity-providers", auth: b.APIKey, body: spec}).want(t, 201)
}
