package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestErrorRows walks the contract's error table: every refusal has its status, its code and
// a message, and changes nothing.
func TestErrorRows(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil, map[string]string{"STREAMGATE_DEFAULT_MAX_MESSAGE_BYTES": "1000"})
	a := n.signup(t, "Acme")
	tok := n.token(t, a, "u", []string{"chat.*"}, 0)
	watch := n.openStream(t, tok, "chat.x")

	hs384 := signedToken(t, "HS384", a.SigningID, a.SigningKey, map[string]any{"sub": "u", "exp": time.Now().Add(time.Hour).Unix(), "channels": []string{"*"}})
	none := unsignedToken(map[string]any{"sub": "u", "exp": time.Now().Add(time.Hour).Unix()}, a.SigningID)
	noExp := signedToken(t, "HS256", a.SigningID, a.SigningKey, map[string]any{"sub": "u", "channels": []string{"*"}})

	pub := "/v1/channels/chat.x/events"
	for _, tc := range []struct {
		name   string
		c      call
		status int
		code   string
	}{
		{"malformed json", call{method: "POST", path: pub, auth: a.APIKey, body: `{"data":`}, 400, "invalid_request"},
		{"unknown field", call{method: "POST", path: pub, auth: a.APIKey, body: `{"data":1,"colour":"red"}`}, 400, "invalid_request"},
		{"wrong type", call{method: "POST", path: pub, auth: a.APIKey, body: `{"data":1,"event":7}`}, 400, "invalid_request"},
		{"not an object", call{method: "POST", path: pub, auth: a.APIKey, body: `[1,2]`}, 400, "invalid_request"},
		{"two objects", call{method: "POST", path: pub, auth: a.APIKey, body: `{"data":1}{"data":2}`}, 400, "invalid_request"},
		{"missing data", call{method: "POST", path: pub, auth: a.APIKey, body: `{"event":"x"}`}, 400, "invalid_request"},
		{"bad channel", call{method: "POST", path: "/v1/channels/bad%20name/events", auth: a.APIKey, body: `{"data":1}`}, 400, "invalid_request"},
		{"long channel", call{method: "POST", path: "/v1/channels/" + strings.Repeat("c", 201) + "/events", auth: a.APIKey, body: `{"data":1}`}, 400, "invalid_request"},
		{"event with newline", call{method: "POST", path: pub, auth: a.APIKey, body: `{"event":"a\nb","data":1}`}, 400, "invalid_request"},
		{"long event", call{method: "POST", path: pub, auth: a.APIKey, body: fmt.Sprintf(`{"event":%q,"data":1}`, strings.Repeat("e", 101))}, 400, "invalid_request"},
		{"deep nesting", call{method: "POST", path: pub, auth: a.APIKey, body: `{"data":` + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + `}`}, 400, "invalid_request"},
		{"reserved job", call{method: "POST", path: "/v1/channels/job:1/events", auth: a.APIKey, body: `{"data":1}`}, 400, "reserved_channel"},
		{"reserved workflow", call{method: "POST", path: "/v1/channels/workflow:1/events", auth: a.APIKey, body: `{"data":1}`}, 400, "reserved_channel"},
		{"no key", call{method: "POST", path: pub, body: `{"data":1}`}, 401, "unauthorized"},
		{"bad key", call{method: "POST", path: pub, auth: "sgk_nope", body: `{"data":1}`}, 401, "unauthorized"},
		{"token as key", call{method: "POST", path: pub, auth: tok, body: `{"data":1}`}, 401, "unauthorized"},
		{"stream without token", call{method: "GET", path: "/v1/stream?channel=chat.x"}, 401, "unauthorized"},
		{"stream garbage token", call{method: "GET", path: "/v1/stream?channel=chat.x&token=abc.def.ghi"}, 401, "unauthorized"},
		{"stream alg HS384", call{method: "GET", path: "/v1/stream?channel=chat.x&token=" + hs384}, 401, "unauthorized"},
		{"stream alg none", call{method: "GET", path: "/v1/stream?channel=chat.x&token=" + none}, 401, "unauthorized"},
		{"stream no exp", call{method: "GET", path: "/v1/stream?channel=chat.x&token=" + noExp}, 401, "unauthorized"},
		{"stream api key as token", call{method: "GET", path: "/v1/stream?channel=chat.x&token=" + a.APIKey}, 401, "unauthorized"},
		{"channel not granted", call{method: "GET", path: "/v1/stream?channel=news&token=" + tok}, 403, "forbidden"},
		{"stream bad channel", call{method: "GET", path: "/v1/stream?channel=a%0Ab&token=" + tok}, 400, "invalid_request"},
		{"unknown key id", call{method: "DELETE", path: "/v1/api-keys/key_nope", auth: a.APIKey}, 404, "not_found"},
		{"unknown signing key", call{method: "DELETE", path: "/v1/signing-keys/sig_nope", auth: a.APIKey}, 404, "not_found"},
		{"unknown route", call{method: "GET", path: "/v1/nothing"}, 404, "not_found"},
		{"wrong method", call{method: "DELETE", path: "/v1/tenants"}, 405, "method_not_allowed"},
		{"wrong method on stream", call{method: "POST", path: "/v1/stream"}, 405, "method_not_allowed"},
		{"body over route limit", call{method: "POST", path: "/v1/tokens", auth: a.APIKey, body: `{"sub":"` + strings.Repeat("u", 70<<10) + `"}`}, 413, "payload_too_large"},
		{"10 MB body", call{method: "POST", path: "/v1/events", auth: a.APIKey, body: `{"events":[{"channel":"x","data":"` + strings.Repeat("z", 10<<20) + `"}]}`}, 413, "payload_too_large"},
		{"data over max_message_bytes", call{method: "POST", path: pub, auth: a.APIKey, body: fmt.Sprintf(`{"data":%q}`, strings.Repeat("d", 1000))}, 413, "payload_too_large"},
		{"signup empty name", call{method: "POST", path: "/v1/tenants", body: `{"name":""}`}, 400, "invalid_request"},
		{"signup long name", call{method: "POST", path: "/v1/tenants", body: fmt.Sprintf(`{"name":%q}`, strings.Repeat("n", 101))}, 400, "invalid_request"},
		{"signup no name", call{method: "POST", path: "/v1/tenants", body: `{}`}, 400, "invalid_request"},
		{"token ttl too long", call{method: "POST", path: "/v1/tokens", auth: a.APIKey, body: `{"sub":"u","ttl_seconds":86401}`}, 400, "invalid_request"},
		{"token ttl zero", call{method: "POST", path: "/v1/tokens", auth: a.APIKey, body: `{"sub":"u","ttl_seconds":0}`}, 400, "invalid_request"},
		{"token bad pattern", call{method: "POST", path: "/v1/tokens", auth: a.APIKey, body: `{"sub":"u","channels":["a b"]}`}, 400, "invalid_request"},
		{"token no sub", call{method: "POST", path: "/v1/tokens", auth: a.APIKey, body: `{"channels":["a"]}`}, 400, "invalid_request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n.do(t, tc.c).want(t, tc.status, tc.code)
		})
	}

	t.Run("unsupported media type", func(t *testing.T) {
		req, _ := http.NewRequest("POST", n.URL+pub, strings.NewReader(`{"data":1}`))
		req.Header.Set("Authorization", "Bearer "+a.APIKey)
		req.Header.Set("Content-Type", "text/plain")
		resp, err := testClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 415 {
			t.Fatalf("status %d, want 415", resp.StatusCode)
		}
	})

	// Nothing refused above reached the stream.
	watch.expectNone(300 * time.Millisecond)
	var stats struct {
		Published int `json:"published_total"`
	}
	n.do(t, call{method: "GET", path: "/v1/stats", auth: a.APIKey}).want(t, 200).decode(t, &stats)
	if stats.Published != 0 {
		t.Errorf("published_total %d after only refusals, want 0", stats.Published)
	}
}

func TestSubscriptionAndConnectionCaps(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil, map[string]string{
		"STREAMGATE_DEFAULT_MAX_CONNECTIONS":               "2",
		"STREAMGATE_DEFAULT_MAX_SUBSCRIPTIONS_PER_SESSION": "3",
	})
	a := n.signup(t, "Acme")
	tok := n.token(t, a, "u", []string{"*"}, 0)

	n.do(t, call{method: "GET", path: "/v1/stream?channel=a&channel=b&channel=c&channel=d&token=" + tok}).want(t, 403, "limit_exceeded")
	s1 := n.openStream(t, tok, "a", "b", "c")
	s2 := n.openStream(t, tok, "a", "a", "a") // duplicates count once
	n.do(t, call{method: "GET", path: "/v1/stream?channel=a&token=" + tok}).want(t, 403, "limit_exceeded")

	// Another tenant's cap is its own.
	b := n.signup(t, "B")
	n.openStream(t, n.token(t, b, "u", []string{"*"}, 0), "a")

	var usage struct {
		Usage struct{ Connections, Subscriptions int } `json:"usage"`
	}
	n.do(t, call{method: "GET", path: "/v1/tenant", auth: a.APIKey}).want(t, 200).decode(t, &usage)
	if usage.Usage.Connections != 2 || usage.Usage.Subscriptions != 4 {
		t.Errorf("usage %+v, want 2 connections and 4 subscriptions", usage.Usage)
	}

	// A closed stream frees its place.
	s1.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		r := n.do(t, call{method: "GET", path: "/v1/tenant", auth: a.APIKey})
		r.decode(t, &usage)
		if usage.Usage.Connections == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("connections still %d after a stream closed", usage.Usage.Connections)
		}
		time.Sleep(20 * time.Millisecond)
	}
	n.openStream(t, tok, "x")
	_ = s2
}

func TestAPIKeysLifecycle(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil, nil)
	other := startNode(t, n.Redis, nil) // a second node on the same Redis
	a := n.signup(t, "Acme")

	var k2 struct{ ID, Secret string }
	n.do(t, call{method: "POST", path: "/v1/api-keys", auth: a.APIKey}).want(t, 201).decode(t, &k2)
	if !strings.HasPrefix(k2.Secret, "sgk_") || k2.ID == "" {
		t.Fatalf("new key %+v", k2)
	}
	other.do(t, call{method: "GET", path: "/v1/tenant", auth: k2.Secret}).want(t, 200)

	var list struct {
		APIKeys []struct {
			ID, Prefix string
			Secret     string
			LastUsedAt *time.Time `json:"last_used_at"`
		} `json:"api_keys"`
	}
	r := n.do(t, call{method: "GET", path: "/v1/api-keys", auth: a.APIKey}).want(t, 200)
	r.decode(t, &list)
	if len(list.APIKeys) != 2 || strings.Contains(string(r.Body), k2.Secret) || strings.Contains(string(r.Body), a.APIKey) {
		t.Fatalf("list %s: want two keys and no secrets", r.Body)
	}
	for _, k := range list.APIKeys {
		if k.LastUsedAt == nil || !strings.HasPrefix(k2.Secret, k.Prefix) && !strings.HasPrefix(a.APIKey, k.Prefix) {
			t.Errorf("key %+v: want a prefix of its secret and a last use", k)
		}
	}

	n.do(t, call{method: "DELETE", path: "/v1/api-keys/" + k2.ID, auth: a.APIKey}).want(t, 204)
	n.do(t, call{method: "GET", path: "/v1/tenant", auth: k2.Secret}).want(t, 401, "unauthorized")
	// Every node refuses it within 1 s.
	time.Sleep(time.Second)
	other.do(t, call{method: "GET", path: "/v1/tenant", auth: k2.Secret}).want(t, 401, "unauthorized")
	n.do(t, call{method: "DELETE", path: "/v1/api-keys/" + k2.ID, auth: a.APIKey}).want(t, 404, "not_found")
	// The first key still works.
	other.do(t, call{method: "GET", path: "/v1/tenant", auth: a.APIKey}).want(t, 200)
}

func TestSignupClosed(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil, map[string]string{"STREAMGATE_SIGNUP": "closed"})
	n.do(t, call{method: "POST", path: "/v1/tenants", body: `{"name":"Acme"}`}).want(t, 401, "unauthorized")
	n.do(t, call{method: "POST", path: "/v1/tenants", auth: "wrong-admin-token-xxxx", body: `{"name":"Acme"}`}).want(t, 401, "unauthorized")
	n.do(t, call{method: "POST", path: "/v1/tenants", auth: testAdminToken, body: `{"name":"Acme"}`}).want(t, 201)
}

func TestRedisDownAnswers503AndStreamsStayOpen(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil, map[string]string{"STREAMGATE_HEARTBEAT": "200ms"})
	a := n.signup(t, "Acme")
	s := n.openStream(t, n.token(t, a, "u", []string{"*"}, 0), "c")

	n.Redis.Stop()
	start := time.Now()
	r := n.do(t, call{method: "POST", path: "/v1/channels/c/events", auth: a.APIKey, body: `{"data":1}`})
	if r.Status != 503 || r.errCode(t) != "unavailable" {
		// The API key may still be cached: that is fine, the publish itself must fail.
		t.Fatalf("publish with Redis down: %d %s, want 503 unavailable", r.Status, r.Body)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("publish took %s to fail; it must answer fast", took)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := testClient.Get(n.URL + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 503 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("/readyz still not 503 with Redis down")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The stream is still open: heartbeats keep coming.
	sawPing := false
	timeout := time.After(3 * time.Second)
	for !sawPing {
		select {
		case ev, ok := <-s.events:
			if !ok {
				t.Fatal("stream closed while Redis was down")
			}
			sawPing = ev.Comment == "ping"
		case <-timeout:
			t.Fatal("no heartbeat while Redis was down")
		}
	}
}

func TestHeartbeatComment(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil, map[string]string{"STREAMGATE_HEARTBEAT": "300ms"})
	a := n.signup(t, "Acme")
	s := n.openStream(t, n.token(t, a, "u", []string{"*"}, 0), "quiet")
	timeout := time.After(5 * time.Second)
	for {
		select {
		case ev := <-s.events:
			if ev.Comment == "ping" {
				return
			}
		case <-timeout:
			t.Fatal("no : ping on an idle stream")
		}
	}
}

func TestCORS(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil, nil)
	req, _ := http.NewRequest("OPTIONS", n.URL+"/v1/channels/c/events", nil)
	req.Header.Set("Origin", "https://app.example")
	req.Header.Set("Access-Control-Request-Method", "POST")
	resp, err := testClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 204 || resp.Header.Get("Access-Control-Allow-Origin") != "*" ||
		!strings.Contains(resp.Header.Get("Access-Control-Allow-Headers"), "Authorization") {
		t.Errorf("preflight %d %v", resp.StatusCode, resp.Header)
	}

	restricted := startNode(t, nil, map[string]string{"STREAMGATE_CORS_ORIGINS": "https://ok.example"})
	for origin, want := range map[string]string{"https://ok.example": "https://ok.example", "https://evil.example": ""} {
		req, _ := http.NewRequest("GET", restricted.URL+"/healthz", nil)
		req.Header.Set("Origin", origin)
		resp, err := testClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := resp.Header.Get("Access-Control-Allow-Origin"); got != want {
			t.Errorf("origin %s: allow-origin %q, want %q", origin, got, want)
		}
	}
}

func TestConfigurationIsValidatedBeforeAnythingOpens(t *testing.T) {
	t.Parallel()
	for name, env := range map[string]map[string]string{
		"no secret key with redis": {"REDIS_URL": "redis://127.0.0.1:1"},
		"bad secret key":           {"STREAMGATE_SECRET_KEY": "short"},
		"bad signup":               {"STREAMGATE_SIGNUP": "maybe"},
		"bad limit":                {"STREAMGATE_DEFAULT_MAX_CONNECTIONS": "-1"},
		"bad redis url":            {"REDIS_URL": "http://nope", "STREAMGATE_SECRET_KEY": testSecretKey},
	} {
		t.Run(name, func(t *testing.T) {
			env["STREAMGATE_ADDR"] = "127.0.0.1:0"
			err := run(t.Context(), nil, func(k string) string { return env[k] }, &strings.Builder{}, &strings.Builder{})
			if err == nil || !strings.Contains(err.Error(), "configuration") {
				t.Fatalf("run = %v, want a configuration error", err)
			}
		})
	}
}

// signedToken builds an HMAC JWT by hand with any HS algorithm.
func signedToken(t testing.TB, alg, kid, secret string, claims map[string]any) string {
	t.Helper()
	return hmacToken(alg, kid, secret, claims)
}

func unsignedToken(claims map[string]any, kid string) string {
	h, _ := json.Marshal(map[string]string{"alg": "none", "typ": "JWT", "kid": kid})
	c, _ := json.Marshal(claims)
	return b64(h) + "." + b64(c) + "."
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
