package main

// The security checklist, item by item. Each test is named after its item and asserts what a
// user (or an attacker) would notice: the status, the contract's error code, and that nothing
// leaked or changed. The parsers behind these checks are fuzzed in their packages:
// FuzzValidChannel and FuzzMatchPattern (names_test.go), FuzzVerifyToken
// (internal/tenant/token_test.go) and FuzzParseCursor (internal/stream/cursor_test.go).

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// securityNode starts a node for these tests, which make many requests from one address: the
// per-IP signup and stream rates are raised (these tests are not about rate limits). Still, no
// test signs up more than three tenants.
func securityNode(t testing.TB) *node {
	t.Helper()
	return startNode(t, nil, map[string]string{"STREAMGATE_RATE_SIGNUP": "1000-M", "STREAMGATE_RATE_STREAM_IP": "1000-M"})
}

// try sends a request that may be refused, within 10 s; header keys must be in canonical form
// ("Last-Event-Id"). Unlike n.do it never hangs on a
// response that turns out to be an open event stream: it closes it and returns its status
// with an empty body, so that want reports the 200 instead of the test timing out.
func (n *node) try(t testing.TB, method, path string, header http.Header, body string) reply {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, n.URL+path, r)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	maps.Copy(req.Header, header)
	resp, err := testClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, clipText(path, 80), err)
	}
	defer resp.Body.Close()
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		return reply{Status: resp.StatusCode, Header: resp.Header}
	}
	raw, _ := io.ReadAll(resp.Body)
	return reply{Status: resp.StatusCode, Header: resp.Header, Body: raw}
}

func bearerHeader(token string) http.Header {
	return http.Header{"Authorization": {"Bearer " + token}}
}

// streamPath is streamURL without the host, for n.try.
func streamPath(n *node, token string, channels ...string) string {
	return strings.TrimPrefix(streamURL(n, token, channels...), n.URL)
}

// stillServing fails the test unless the node answers /healthz and a real request.
func (n *node) stillServing(t testing.TB, a account) {
	t.Helper()
	n.try(t, "GET", "/healthz", nil, "").want(t, 200)
	n.do(t, call{method: "GET", path: "/v1/tenant", auth: a.APIKey}).want(t, 200)
}

func clipText(s string, max int) string {
	if len(s) <= max {
		return s
	}
	return s[:max] + "…"
}

// forge builds a JWT from any header and claims with the given signature part.
func forge(header, claims map[string]any, signature string) string {
	h, _ := json.Marshal(header)
	c, _ := json.Marshal(claims)
	return b64(h) + "." + b64(c) + "." + signature
}

// userClaims are the claims of a valid token for sub "u" granting every channel; a nil value
// in extra removes that claim.
func userClaims(extra map[string]any) map[string]any {
	now := time.Now()
	c := map[string]any{"sub": "u", "channels": []string{"*"}, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
	for k, v := range extra {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	return c
}

// TestSecurityJWT covers the token items: alg none, HS384/HS512, an RS256 header signed with
// the HMAC secret as "public key", a missing exp, expired, nbf in the future, an unknown kid
// and a deleted signing key. Each forged token is refused with 401 on the stream (query and
// header) and on the sessions API, where it changes nothing.
func TestSecurityJWT(t *testing.T) {
	t.Parallel()
	n := securityNode(t)
	a := n.signup(t, "Acme")
	b := n.signup(t, "Globex")
	live := n.openStream(t, n.token(t, a, "u", []string{"*"}, 0), "x")
	subs := "/v1/sessions/" + live.connected.SessionID + "/subscriptions"

	var gone struct{ ID, Secret string }
	n.do(t, call{method: "POST", path: "/v1/signing-keys", auth: a.APIKey}).want(t, 201).decode(t, &gone)
	hs256 := func(kid, secret string, extra map[string]any) string {
		return hmacToken("HS256", kid, secret, userClaims(extra))
	}
	// Control: the hand-built HS256 tokens are accepted as they are, so each refusal below is
	// down to the one thing its case changes.
	valid := hs256(a.SigningID, a.SigningKey, nil)
	n.openStream(t, valid, "x").Close()
	n.openStream(t, hs256(gone.ID, gone.Secret, nil), "x").Close()
	n.do(t, call{method: "DELETE", path: "/v1/signing-keys/" + gone.ID, auth: a.APIKey}).want(t, 204)

	parts := strings.Split(valid, ".")
	now := time.Now()
	for _, tc := range []struct{ name, token string }{
		{"alg none", unsignedToken(userClaims(nil), a.SigningID)},
		{"alg none keeping a valid signature", forge(map[string]any{"alg": "none", "typ": "JWT", "kid": a.SigningID}, userClaims(nil), parts[2])},
		{"alg NONE", forge(map[string]any{"alg": "NONE", "kid": a.SigningID}, userClaims(nil), "")},
		{"alg HS384", signedToken(t, "HS384", a.SigningID, a.SigningKey, userClaims(nil))},
		{"alg HS512", signedToken(t, "HS512", a.SigningID, a.SigningKey, userClaims(nil))},
		{"alg hs256 in lower case", hmacToken("hs256", a.SigningID, a.SigningKey, userClaims(nil))},
		// What an attacker does against a server that would hand the HMAC secret to an RSA
		// verifier as the "public key": HMAC-SHA256 under an RS256 header.
		{"RS256 header signed with the HMAC secret", hmacToken("RS256", a.SigningID, a.SigningKey, userClaims(nil))},
		{"missing exp", hs256(a.SigningID, a.SigningKey, map[string]any{"exp": nil})},
		{"expired", hs256(a.SigningID, a.SigningKey, map[string]any{"exp": now.Add(-time.Minute).Unix()})},
		{"nbf in the future", hs256(a.SigningID, a.SigningKey, map[string]any{"nbf": now.Add(time.Minute).Unix()})},
		{"unknown kid", hs256("sig_unknown0000000000", a.SigningKey, nil)},
		{"empty kid", hs256("", a.SigningKey, nil)},
		{"deleted signing key", hs256(gone.ID, gone.Secret, nil)},
		{"another tenant's kid", hs256(b.SigningID, a.SigningKey, nil)},
		{"another tenant's secret", hs256(a.SigningID, b.SigningKey, nil)},
		{"claims changed after signing", forge(map[string]any{"alg": "HS256", "typ": "JWT", "kid": a.SigningID}, userClaims(map[string]any{"sub": "admin"}), parts[2])},
		{"signature stripped", parts[0] + "." + parts[1] + "."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n.try(t, "GET", streamPath(n, tc.token, "x"), nil, "").want(t, 401, "unauthorized")
			n.try(t, "GET", streamPath(n, "", "x"), bearerHeader(tc.token), "").want(t, 401, "unauthorized")
			n.do(t, call{method: "POST", path: subs, auth: tc.token, body: `{"channel":"y"}`}).want(t, 401, "unauthorized")
			n.do(t, call{method: "DELETE", path: subs + "/x", auth: tc.token}).want(t, 401, "unauthorized")
		})
	}

	// None of them changed the live session; its own token still can (so the path was right).
	live.expectNone(300 * time.Millisecond)
	n.do(t, call{method: "POST", path: subs, auth: valid, body: `{"channel":"y"}`}).want(t, 201)
	if ev := live.next(5 * time.Second); ev.Event != "subscribed" {
		t.Fatalf("got %s %s, want subscribed", ev.Event, ev.Data)
	}
}

// TestSecurityTenantIsolation: a token of tenant A used against tenant B's channels, sessions
// and jobs, and an API key of A reading B's job or workflow.
func TestSecurityTenantIsolation(t *testing.T) {
	t.Parallel()
	n := securityNode(t)
	startWorker(t, n.Redis, "w1")
	a := n.signup(t, "Acme")
	b := n.signup(t, "Globex")
	aTok := n.token(t, a, "u", []string{"*"}, 0) // same sub as B's user, every channel
	bTok := n.token(t, b, "u", []string{"*"}, 0)

	t.Run("A's token on B's channels", func(t *testing.T) {
		as := n.openStream(t, aTok, "x")
		bs := n.openStream(t, bTok, "x")
		n.publish(t, b, "x", "for-b")
		if m := decodeMessage(t, bs.next(5*time.Second)); string(m.Data) != `"for-b"` {
			t.Fatalf("B got %s", m.Data)
		}
		n.publish(t, a, "x", "for-a")
		// A's first event is its own: B's, published before, never reached it.
		if m := decodeMessage(t, as.next(5*time.Second)); string(m.Data) != `"for-a"` {
			t.Fatalf("A's stream on x got %s, want only A's own event", m.Data)
		}
		as.expectNone(300 * time.Millisecond)
		bs.expectNone(300 * time.Millisecond)
	})

	t.Run("A's token on B's session", func(t *testing.T) {
		bs := n.openStream(t, bTok, "x")
		path := "/v1/sessions/" + bs.connected.SessionID + "/subscriptions"
		n.do(t, call{method: "POST", path: path, auth: aTok, body: `{"channel":"y"}`}).want(t, 404, "not_found")
		n.do(t, call{method: "DELETE", path: path + "/x", auth: aTok}).want(t, 404, "not_found")
		bs.expectNone(300 * time.Millisecond)
		n.publish(t, b, "x", 1) // still subscribed to x
		decodeMessage(t, bs.next(5*time.Second))
		// B's own token can change it: the 404s were about the tenant, not the path.
		n.do(t, call{method: "POST", path: path, auth: bTok, body: `{"channel":"y"}`}).want(t, 201)
		if ev := bs.next(5 * time.Second); ev.Event != "subscribed" {
			t.Fatalf("got %s %s, want subscribed", ev.Event, ev.Data)
		}
	})

	t.Run("A's token on B's job and workflow", func(t *testing.T) {
		n.putJob(t, b, "render", map[string]any{"status": "running", "message": "globex-only"})
		n.do(t, call{method: "PUT", path: "/v1/workflows/onboard", auth: b.APIKey, body: `{"status":"running","step":"globex-only"}`}).want(t, 202)
		waitFor(t, 10*time.Second, "B's job and workflow to be applied", func() bool {
			return n.do(t, call{method: "GET", path: "/v1/jobs/render", auth: b.APIKey}).Status == 200 &&
				n.do(t, call{method: "GET", path: "/v1/workflows/onboard", auth: b.APIKey}).Status == 200
		})
		as := n.openStream(t, aTok, "job:render", "workflow:onboard")
		bs := n.openStream(t, bTok, "job:render")
		if st := jobEvent(t, bs.next(5*time.Second)); st.Status != "running" {
			t.Fatalf("B's own subscriber got %+v", st) // control: there is a state to leak
		}
		// Subscribed through the sessions API too: the notice, and no state of B's.
		added := n.openStream(t, aTok)
		n.do(t, call{method: "POST", path: "/v1/sessions/" + added.connected.SessionID + "/subscriptions", auth: aTok,
			body: `{"channel":"job:render"}`}).want(t, 201)
		if ev := added.next(5 * time.Second); ev.Event != "subscribed" {
			t.Fatalf("got %s %s, want subscribed", ev.Event, ev.Data)
		}
		n.putJob(t, b, "render", map[string]any{"progress": 50})
		if st := jobEvent(t, bs.next(10*time.Second)); *st.Progress != 50 {
			t.Fatalf("B's subscriber got %+v", st)
		}
		as.expectNone(500 * time.Millisecond)
		added.expectNone(100 * time.Millisecond)
		// A's job of the same id is A's alone.
		n.putJob(t, a, "render", map[string]any{"status": "queued"})
		if st := jobEvent(t, as.next(10*time.Second)); st.Status != "queued" || st.Message != nil {
			t.Fatalf("A sees %+v, want its own queued job", st)
		}
	})

	t.Run("A's API key on B's job and workflow", func(t *testing.T) {
		n.putJob(t, b, "b-job", map[string]any{"status": "running", "message": "globex-only"})
		n.do(t, call{method: "PUT", path: "/v1/workflows/b-flow", auth: b.APIKey, body: `{"status":"running"}`}).want(t, 202)
		waitFor(t, 10*time.Second, "B's job and workflow to be applied", func() bool {
			return n.do(t, call{method: "GET", path: "/v1/jobs/b-job", auth: b.APIKey}).Status == 200 &&
				n.do(t, call{method: "GET", path: "/v1/workflows/b-flow", auth: b.APIKey}).Status == 200
		})
		for _, path := range []string{"/v1/jobs/b-job", "/v1/workflows/b-flow"} {
			r := n.do(t, call{method: "GET", path: path, auth: a.APIKey}).want(t, 404, "not_found")
			if strings.Contains(string(r.Body), "globex-only") {
				t.Errorf("GET %s with A's key leaks B's state: %s", path, r.Body)
			}
		}
	})
}

// TestSecurityRevokedAPIKey: a revoked key is refused on every route and does nothing.
func TestSecurityRevokedAPIKey(t *testing.T) {
	t.Parallel()
	n := securityNode(t)
	a := n.signup(t, "Acme")
	var k struct{ ID, Secret string }
	n.do(t, call{method: "POST", path: "/v1/api-keys", auth: a.APIKey}).want(t, 201).decode(t, &k)
	n.do(t, call{method: "GET", path: "/v1/tenant", auth: k.Secret}).want(t, 200)
	s := n.openStream(t, n.token(t, a, "u", []string{"*"}, 0), "x")
	n.do(t, call{method: "DELETE", path: "/v1/api-keys/" + k.ID, auth: a.APIKey}).want(t, 204)

	for _, c := range []call{
		{method: "GET", path: "/v1/tenant"},
		{method: "POST", path: "/v1/channels/x/events", body: `{"data":1}`},
		{method: "POST", path: "/v1/events", body: `{"events":[{"channel":"x","data":1}]}`},
		{method: "POST", path: "/v1/tokens", body: `{"sub":"u","channels":["*"]}`},
		{method: "POST", path: "/v1/api-keys"},
		{method: "POST", path: "/v1/signing-keys"},
		{method: "DELETE", path: "/v1/api-keys/" + a.APIKeyID},
		{method: "PUT", path: "/v1/jobs/j", body: `{"status":"running"}`},
		{method: "GET", path: "/v1/stats"},
	} {
		c.auth = k.Secret
		n.do(t, c).want(t, 401, "unauthorized")
	}
	s.expectNone(300 * time.Millisecond)
	var list struct {
		APIKeys []struct{ ID string } `json:"api_keys"`
	}
	n.do(t, call{method: "GET", path: "/v1/api-keys", auth: a.APIKey}).want(t, 200).decode(t, &list)
	if len(list.APIKeys) != 1 || list.APIKeys[0].ID != a.APIKeyID {
		t.Errorf("keys %+v, want only the first (the revoked key neither created nor revoked any)", list.APIKeys)
	}
}

// TestSecuritySuspendedTenant: suspension through the admin API refuses the tenant's API keys
// (403) and end-user tokens (401) and closes its streams with disconnect, reconnect false;
// lifting it restores access. Other tenants notice nothing.
func TestSecuritySuspendedTenant(t *testing.T) {
	t.Parallel()
	n := securityNode(t)
	a := n.signup(t, "Acme")
	other := n.signup(t, "Globex")
	tok := n.token(t, a, "u", []string{"*"}, 0)
	s := n.openStream(t, tok, "x")
	bystander := n.openStream(t, n.token(t, other, "u", []string{"*"}, 0), "x")
	suspend := func(v bool) {
		t.Helper()
		n.do(t, call{method: "PATCH", path: "/admin/api/tenants/" + a.TenantID, auth: testAdminToken,
			body: map[string]bool{"suspended": v}}).want(t, 200)
	}

	suspend(true)
	ev := s.next(5 * time.Second)
	var d struct {
		Reason    string
		Reconnect *bool
	}
	if ev.Event != "disconnect" || json.Unmarshal([]byte(ev.Data), &d) != nil || d.Reconnect == nil || *d.Reconnect {
		t.Fatalf("suspended tenant's stream got %s %s, want disconnect with reconnect false", ev.Event, ev.Data)
	}
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		t.Fatal("the stream stayed open after disconnect")
	}

	for _, c := range []call{
		{method: "GET", path: "/v1/tenant"},
		{method: "POST", path: "/v1/channels/x/events", body: `{"data":1}`},
		{method: "POST", path: "/v1/tokens", body: `{"sub":"u"}`},
		{method: "PUT", path: "/v1/jobs/j", body: `{"status":"running"}`},
	} {
		c.auth = a.APIKey
		n.do(t, c).want(t, 403, "forbidden")
	}
	n.try(t, "GET", streamPath(n, tok, "x"), nil, "").want(t, 401, "unauthorized")
	n.do(t, call{method: "POST", path: "/v1/sessions/" + s.connected.SessionID + "/subscriptions", auth: tok,
		body: `{"channel":"y"}`}).want(t, 401, "unauthorized")
	var view struct{ Suspended bool }
	n.do(t, call{method: "GET", path: "/admin/api/tenants/" + a.TenantID, auth: testAdminToken}).want(t, 200).decode(t, &view)
	if !view.Suspended {
		t.Error("the admin view does not show the tenant suspended")
	}

	// The other tenant is untouched.
	n.publish(t, other, "x", "still here")
	if m := decodeMessage(t, bystander.next(5*time.Second)); string(m.Data) != `"still here"` {
		t.Fatalf("other tenant got %s", m.Data)
	}

	suspend(false)
	waitFor(t, 3*time.Second, "the API key to work again", func() bool {
		return n.do(t, call{method: "GET", path: "/v1/tenant", auth: a.APIKey}).Status == 200
	})
	again := n.openStream(t, tok, "x")
	n.publish(t, a, "x", "back")
	if m := decodeMessage(t, again.next(5*time.Second)); string(m.Data) != `"back"` {
		t.Fatalf("after resuming the tenant got %s", m.Data)
	}
	bystander.expectNone(200 * time.Millisecond)
}

// TestSecurityNamesNeverBreakSSEFraming: channel and event names with CR, LF, NUL or over the
// length limits are refused wherever they enter, and data that looks like SSE fields arrives
// as one event whose data decodes to exactly what was sent.
func TestSecurityNamesNeverBreakSSEFraming(t *testing.T) {
	t.Parallel()
	n := securityNode(t)
	a := n.signup(t, "Acme")
	tok := n.token(t, a, "u", []string{"*"}, 0)

	t.Run("bad names are refused", func(t *testing.T) {
		watch := n.openStream(t, tok, "x")
		sess := "/v1/sessions/" + watch.connected.SessionID + "/subscriptions"
		event := func(name string) string { return fmt.Sprintf(`{"event":%s,"data":1}`, mustMarshal(name)) }
		batch := func(channel, name string) string {
			return fmt.Sprintf(`{"events":[{"channel":"x","data":1},{"channel":%s,"event":%s,"data":1}]}`, mustMarshal(channel), mustMarshal(name))
		}
		long := strings.Repeat("c", 201)
		pub := "/v1/channels/x/events"
		for _, tc := range []struct {
			name string
			c    call
		}{
			{"event with CR", call{method: "POST", path: pub, body: event("a\rb")}},
			{"event with LF", call{method: "POST", path: pub, body: event("a\nb")}},
			{"event with NUL", call{method: "POST", path: pub, body: event("a\u0000b")}},
			{"event with CRLF and a field", call{method: "POST", path: pub, body: event("x\r\n\r\ndata: injected")}},
			{"event with a space", call{method: "POST", path: pub, body: event("a b")}},
			{"event of 101", call{method: "POST", path: pub, body: event(strings.Repeat("e", 101))}},
			{"empty event", call{method: "POST", path: pub, body: event("")}},
			{"batch event with LF", call{method: "POST", path: "/v1/events", body: batch("x", "a\nb")}},
			{"batch channel with CR", call{method: "POST", path: "/v1/events", body: batch("a\rb", "e")}},
			{"batch channel with NUL", call{method: "POST", path: "/v1/events", body: batch("a\u0000b", "e")}},
			{"batch channel of 201", call{method: "POST", path: "/v1/events", body: batch(long, "e")}},
			{"path channel with %0D", call{method: "POST", path: "/v1/channels/a%0Db/events", body: `{"data":1}`}},
			{"path channel with %0A", call{method: "POST", path: "/v1/channels/a%0Ab/events", body: `{"data":1}`}},
			{"path channel with %00", call{method: "POST", path: "/v1/channels/a%00b/events", body: `{"data":1}`}},
			{"path channel with CRLF and a field", call{method: "POST", path: "/v1/channels/x%0D%0A%0D%0Adata:%20injected/events", body: `{"data":1}`}},
			{"path channel of 201", call{method: "POST", path: "/v1/channels/" + long + "/events", body: `{"data":1}`}},
			{"token pattern with LF", call{method: "POST", path: "/v1/tokens", body: `{"sub":"u","channels":["chat\n*"]}`}},
			{"token pattern of 201", call{method: "POST", path: "/v1/tokens", body: `{"sub":"u","channels":["` + long + `"]}`}},
			{"job id with %0A", call{method: "PUT", path: "/v1/jobs/a%0Ab", body: `{"status":"running"}`}},
			{"step name with %0D", call{method: "PUT", path: "/v1/workflows/w/steps/a%0Db", body: `{"status":"running"}`}},
			{"sessions API channel with CRLF", call{method: "POST", path: sess, body: `{"channel":"a\r\nb"}`}},
			{"sessions API channel with NUL", call{method: "POST", path: sess, body: `{"channel":"a\u0000b"}`}},
			{"sessions API channel of 201", call{method: "POST", path: sess, body: `{"channel":"` + long + `"}`}},
			{"sessions API path channel with %0A", call{method: "DELETE", path: sess + "/a%0Ab"}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				tc.c.auth = a.APIKey
				if strings.HasPrefix(tc.c.path, "/v1/sessions/") {
					tc.c.auth = tok
				}
				n.do(t, tc.c).want(t, 400, "invalid_request")
			})
		}
		for _, ch := range []string{"a%0Db", "a%0Ab", "a%00b", "x%0D%0Aevent:%20injected", long} {
			t.Run("stream query channel "+clipText(ch, 30), func(t *testing.T) {
				n.try(t, "GET", "/v1/stream?token="+tok+"&channel=x&channel="+ch, nil, "").want(t, 400, "invalid_request")
			})
		}
		watch.expectNone(300 * time.Millisecond)

		// The limits themselves are allowed: 100-character events, 200-character channels.
		edge := strings.Repeat("c", 200)
		n.do(t, call{method: "POST", path: "/v1/channels/" + edge + "/events", auth: a.APIKey, body: event(strings.Repeat("e", 100))}).want(t, 202)
		n.openStream(t, tok, edge).Close()
	})

	t.Run("data cannot break the framing", func(t *testing.T) {
		payloads := []string{
			"\n\ndata: injected",
			"\r\n\r\nevent: injected\ndata: {}\n\n",
			"lone\rcarriage return",
			"id: 1\nretry: 1",
			": comment\n\n",
			"nul\u0000byte",
			"line\u2028separator\u2029",
		}
		// Job and workflow texts go through the worker's Lua (re-encoded there): the same rules.
		startWorker(t, n.Redis, "w1")
		channels := []string{"frames", "job:frames", "workflow:frames"}
		parsed := n.openStream(t, tok, channels...)
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "GET", streamURL(n, tok, channels...), nil)
		resp, err := testClient.Do(req)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("raw stream: %v %v", resp, err)
		}
		defer resp.Body.Close()

		for _, p := range payloads {
			n.publish(t, a, "frames", p)
		}
		for _, want := range payloads {
			ev := parsed.next(5 * time.Second)
			var got string
			if err := json.Unmarshal(decodeMessage(t, ev).Data, &got); err != nil || got != want {
				t.Fatalf("event %q decodes to %q (%v), want %q", ev.Data, got, err, want)
			}
		}

		n.putJob(t, a, "frames", map[string]any{"status": "failed", "message": payloads[0], "error": payloads[1]})
		if st := jobEvent(t, parsed.next(10*time.Second)); *st.Message != payloads[0] || *st.Error != payloads[1] {
			t.Fatalf("job message %q error %q, want %q and %q", *st.Message, *st.Error, payloads[0], payloads[1])
		}
		steps := make([]map[string]string, len(payloads))
		for i, p := range payloads {
			steps[i] = map[string]string{"name": fmt.Sprint("s", i), "status": "failed", "error": p}
		}
		n.do(t, call{method: "PUT", path: "/v1/workflows/frames", auth: a.APIKey,
			body: map[string]any{"status": "failed", "waiting_for": payloads[2], "steps": steps}}).want(t, 202)
		ev := parsed.next(10 * time.Second)
		var wf struct {
			Workflow struct {
				WaitingFor string `json:"waiting_for"`
				Steps      []struct{ Error string }
			}
		}
		if ev.Event != "workflow" || json.Unmarshal([]byte(ev.Data), &wf) != nil || len(wf.Workflow.Steps) != len(payloads) {
			t.Fatalf("got %s %q, want the workflow with %d steps", ev.Event, ev.Data, len(payloads))
		}
		if wf.Workflow.WaitingFor != payloads[2] {
			t.Errorf("waiting_for %q, want %q", wf.Workflow.WaitingFor, payloads[2])
		}
		for i, st := range wf.Workflow.Steps {
			if st.Error != payloads[i] {
				t.Errorf("step %d error %q, want %q", i, st.Error, payloads[i])
			}
		}

		n.publish(t, a, "frames", "the end")
		if m := decodeMessage(t, parsed.next(5*time.Second)); string(m.Data) != `"the end"` {
			t.Fatalf("last event %s", m.Data)
		}
		parsed.expectNone(200 * time.Millisecond)

		// On the wire: every line is a known field or a comment, no CR or NUL anywhere, and one
		// event per publish or state change.
		lines := rawLinesUntil(t, resp, `"data":"the end"`, 10*time.Second)
		events := 0
		for _, l := range lines {
			body, ok := strings.CutSuffix(l, "\n")
			if !ok || strings.ContainsAny(body, "\r\x00") {
				t.Errorf("raw line %q holds CR or NUL", l)
			}
			known := body == ""
			for _, field := range []string{"retry: ", "id: ", "event: ", "data: {", ": "} {
				known = known || strings.HasPrefix(body, field)
			}
			if !known || strings.HasPrefix(body, "data: injected") || strings.HasPrefix(body, "event: injected") {
				t.Errorf("raw line %q is not one the server means to write", l)
			}
			if strings.HasPrefix(body, "event: ") && body != "event: connected" {
				events++
			}
		}
		if want := len(payloads) + 3; events != want {
			t.Errorf("%d events on the wire, want %d:\n%s", events, want, strings.Join(lines, ""))
		}
	})
}

// rawLinesUntil reads the raw lines of resp, line endings included, until one contains until.
func rawLinesUntil(t testing.TB, resp *http.Response, until string, timeout time.Duration) []string {
	t.Helper()
	type result struct {
		lines []string
		err   error
	}
	done := make(chan result, 1)
	go func() {
		r := bufio.NewReader(resp.Body)
		var lines []string
		for {
			line, err := r.ReadString('\n')
			if line != "" {
				lines = append(lines, line)
			}
			if err != nil || strings.Contains(line, until) {
				done <- result{lines, err}
				return
			}
		}
	}()
	select {
	case res := <-done:
		if res.err != nil {
			t.Fatalf("raw stream ended before %q: %v\n%s", until, res.err, strings.Join(res.lines, ""))
		}
		return res.lines
	case <-time.After(timeout):
		resp.Body.Close()
		t.Fatalf("no %q on the raw stream within %s", until, timeout)
		return nil
	}
}

// TestSecurityJSONBombs: deep nesting is refused fast, huge numbers are valid JSON carried
// verbatim (never parsed into floats) or refused where a number is expected, and 10 MB bodies
// get 413. The node stays healthy throughout.
func TestSecurityJSONBombs(t *testing.T) {
	t.Parallel()
	n := securityNode(t)
	startWorker(t, n.Redis, "w1")
	a := n.signup(t, "Acme")
	tok := n.token(t, a, "u", []string{"*"}, 0)
	watch := n.openStream(t, tok, "x")
	sess := "/v1/sessions/" + watch.connected.SessionID + "/subscriptions"
	admin := "/admin/api/tenants/" + a.TenantID

	t.Run("deep nesting", func(t *testing.T) {
		nest := func(depth int) string { return strings.Repeat("[", depth) + strings.Repeat("]", depth) }
		deepObject := strings.Repeat(`{"a":`, 100000) + "1" + strings.Repeat("}", 100000)
		// Routes that take 1 MB bodies get 100,000 levels; the 64 KiB routes get 20,000, twice
		// what encoding/json allows yet small enough to be about depth, not size.
		small := nest(20000)
		for _, tc := range []struct {
			name string
			c    call
		}{
			{"publish array", call{method: "POST", path: "/v1/channels/x/events", auth: a.APIKey, body: `{"data":` + nest(100000) + `}`}},
			{"publish object", call{method: "POST", path: "/v1/channels/x/events", auth: a.APIKey, body: `{"data":` + deepObject + `}`}},
			{"batch", call{method: "POST", path: "/v1/events", auth: a.APIKey, body: `{"events":[{"channel":"x","data":` + nest(100000) + `}]}`}},
			{"job output", call{method: "PUT", path: "/v1/jobs/j", auth: a.APIKey, body: `{"output":` + nest(100000) + `}`}},
			{"workflow output", call{method: "PUT", path: "/v1/workflows/w", auth: a.APIKey, body: `{"output":` + nest(100000) + `}`}},
			{"token channels", call{method: "POST", path: "/v1/tokens", auth: a.APIKey, body: `{"sub":"u","channels":` + small + `}`}},
			{"sessions API", call{method: "POST", path: sess, auth: tok, body: `{"channel":` + small + `}`}},
			{"admin patch", call{method: "PATCH", path: admin, auth: testAdminToken, body: `{"limits":` + small + `}`}},
			{"signup", call{method: "POST", path: "/v1/tenants", body: `{"name":` + small + `}`}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				start := time.Now()
				n.do(t, tc.c).want(t, 400, "invalid_request")
				if took := time.Since(start); took > 5*time.Second {
					t.Errorf("refused after %s; a bomb must be refused quickly", took)
				}
			})
		}
		n.stillServing(t, a)
		watch.expectNone(200 * time.Millisecond)
	})

	t.Run("huge numbers", func(t *testing.T) {
		for _, raw := range []string{
			`1e999999`,
			`-1e999999`,
			`123456789012345678901234567890`,
			`1.5e-999999`,
			`{"n":1e999999,"m":[123456789012345678901234567890,-0.00000000000000000000000000000001]}`,
		} {
			n.do(t, call{method: "POST", path: "/v1/channels/x/events", auth: a.APIKey, body: `{"data":` + raw + `}`}).want(t, 202)
			if got := decodeMessage(t, watch.next(5*time.Second)).Data; string(got) != raw {
				t.Errorf("sent %s, received %s", raw, got)
			}
		}
		// Job output is carried verbatim too, through the worker.
		const output = `{"n":1e999999,"m":123456789012345678901234567890}`
		js := n.openStream(t, tok, "job:big")
		n.putJob(t, a, "big", map[string]any{"status": "running", "output": json.RawMessage(output)})
		if got := jobEvent(t, js.next(10*time.Second)); string(got.Output) != output {
			t.Errorf("job output %s, want %s", got.Output, output)
		}
		// Where a number is expected, a huge one is a 400, never a 500.
		for _, c := range []call{
			{method: "POST", path: "/v1/tokens", auth: a.APIKey, body: `{"sub":"u","ttl_seconds":1e999999}`},
			{method: "POST", path: "/v1/tokens", auth: a.APIKey, body: `{"sub":"u","ttl_seconds":123456789012345678901234567890}`},
			{method: "PUT", path: "/v1/jobs/big", auth: a.APIKey, body: `{"progress":1e999999}`},
			{method: "PATCH", path: admin, auth: testAdminToken, body: `{"limits":{"max_connections":123456789012345678901234567890}}`},
		} {
			n.do(t, c).want(t, 400, "invalid_request")
		}
	})

	t.Run("10 MB bodies", func(t *testing.T) {
		huge := `{"data":"` + strings.Repeat("z", 10<<20) + `"}`
		for _, c := range []call{
			{method: "POST", path: "/v1/channels/x/events", auth: a.APIKey},
			{method: "POST", path: "/v1/events", auth: a.APIKey},
			{method: "PUT", path: "/v1/jobs/j", auth: a.APIKey},
			{method: "PUT", path: "/v1/workflows/w", auth: a.APIKey},
			{method: "PUT", path: "/v1/workflows/w/steps/s", auth: a.APIKey},
			{method: "POST", path: "/v1/tokens", auth: a.APIKey},
			{method: "POST", path: "/v1/api-keys", auth: a.APIKey},
			{method: "POST", path: "/v1/signing-keys", auth: a.APIKey},
			{method: "POST", path: sess, auth: tok},
			{method: "PATCH", path: admin, auth: testAdminToken},
			{method: "POST", path: "/v1/tenants"},
		} {
			c.body = huge
			t.Run(c.method+" "+clipText(c.path, 40), func(t *testing.T) {
				n.do(t, c).want(t, 413, "payload_too_large")
			})
		}
		// Without a Content-Length the limit holds while reading.
		req, _ := http.NewRequest("POST", n.URL+"/v1/channels/x/events", io.MultiReader(strings.NewReader(huge)))
		req.Header.Set("Authorization", "Bearer "+a.APIKey)
		req.Header.Set("Content-Type", "application/json")
		if req.ContentLength != 0 {
			t.Fatal("the request has a Content-Length: it would not test the limit while reading")
		}
		resp, err := testClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		reply{Status: resp.StatusCode, Body: raw}.want(t, 413, "payload_too_large")

		n.stillServing(t, a)
		watch.expectNone(200 * time.Millisecond)
	})
}

// TestSecurityOversizedRequests: headers over the limit, 10,000 query channels and one
// channel over max_subscriptions_per_session each get a clean 4xx, and the node keeps serving.
func TestSecurityOversizedRequests(t *testing.T) {
	t.Parallel()
	n := securityNode(t)
	a := n.signup(t, "Acme")
	tok := n.token(t, a, "u", []string{"*"}, 0)

	t.Run("headers over the limit", func(t *testing.T) {
		many := http.Header{}
		for i := range 2000 {
			many.Set(fmt.Sprintf("X-Filler-%04d", i), strings.Repeat("f", 50))
		}
		for name, h := range map[string]http.Header{
			"one header of 100 KiB": {"X-Big": {strings.Repeat("b", 100<<10)}},
			"2,000 headers":         many,
		} {
			t.Run(name, func(t *testing.T) {
				n.try(t, "GET", "/v1/tenant", h, "").want(t, http.StatusRequestHeaderFieldsTooLarge)
				n.stillServing(t, a)
			})
		}
	})

	t.Run("10,000 query channels", func(t *testing.T) {
		q := url.Values{"token": {tok}}
		for i := range 10000 {
			q.Add("channel", fmt.Sprintf("c%d", i))
		}
		r := n.try(t, "GET", "/v1/stream?"+q.Encode(), nil, "")
		switch r.Status {
		case 400, 403:
			if code := r.errCode(t); code != "invalid_request" && code != "limit_exceeded" {
				t.Errorf("status %d code %q, want invalid_request or limit_exceeded", r.Status, code)
			}
		case http.StatusRequestURITooLong, http.StatusRequestHeaderFieldsTooLarge:
		default:
			t.Errorf("status %d (%s), want a clean 400, 403, 414 or 431", r.Status, clipText(string(r.Body), 200))
		}
		n.stillServing(t, a)
	})

	t.Run("101 channels", func(t *testing.T) {
		channels := make([]string, 101)
		for i := range channels {
			channels[i] = fmt.Sprintf("c%d", i)
		}
		n.try(t, "GET", streamPath(n, tok, channels...), nil, "").want(t, 403, "limit_exceeded")
		s := n.openStream(t, tok, channels[:100]...) // the cap itself is allowed
		if got := len(s.connected.Channels); got != 100 {
			t.Errorf("connected with %d channels, want 100", got)
		}
	})
}

// TestSecurityLastEventID: garbage is a 400, another user's cursor a 403, and another tenant's
// cursor a fresh session of its own, never the other session.
func TestSecurityLastEventID(t *testing.T) {
	t.Parallel()
	n := securityNode(t)
	a := n.signup(t, "Acme")
	b := n.signup(t, "Globex")
	alice := n.token(t, a, "alice", []string{"*"}, 0)
	mallory := n.token(t, a, "mallory", []string{"*"}, 0)
	eve := n.token(t, b, "alice", []string{"*"}, 0) // even the same sub, in another tenant

	s := n.openStream(t, alice, "secret")
	n.publish(t, a, "secret", 1)
	cursor := s.next(5 * time.Second).ID
	s.Close()
	n.publish(t, a, "secret", 2) // alice missed it; nobody else may get it

	t.Run("garbage", func(t *testing.T) {
		sid := s.connected.SessionID
		for _, garbage := range []string{
			"nope",
			"ses_x:zz:1-1",
			"ses_x:0000000g:1-1",
			"ses_x:00000000:abc",
			"ses_x:00000000:-1-1",
			"ses_x:00000000:1-1:2",
			"ses_x:00000000:18446744073709551616-1",
			"tn_x:00000000:1-1",
			cursor + "0" + strings.Repeat("9", 100),
			cursor + " ",
			cursor + "\nevent: injected",
			cursor + "\r\n\r\ndata: injected",
			sid + ":00000000:1-1\x00",
			string(make([]byte, 500)),
		} {
			t.Run(clipText(fmt.Sprintf("%q", garbage), 40), func(t *testing.T) {
				n.try(t, "GET", streamPath(n, alice, "secret")+"&last_event_id="+url.QueryEscape(garbage), nil, "").want(t, 400, "invalid_request")
				if !strings.ContainsAny(garbage, " \r\n\x00") { // what an HTTP client can send as a header
					n.try(t, "GET", streamPath(n, alice, "secret"), http.Header{"Last-Event-Id": {garbage}}, "").want(t, 400, "invalid_request")
				}
			})
		}
	})

	t.Run("another user's cursor", func(t *testing.T) {
		n.try(t, "GET", streamPath(n, mallory, "secret"), http.Header{"Last-Event-Id": {cursor}}, "").want(t, 403, "forbidden")
		n.try(t, "GET", streamPath(n, mallory, "secret")+"&last_event_id="+url.QueryEscape(cursor), nil, "").want(t, 403, "forbidden")
	})

	t.Run("another tenant's cursor", func(t *testing.T) {
		r := n.dial(t, streamURL(n, eve, "secret"), http.Header{"Last-Event-Id": {cursor}}, 16)
		if r.connected.SessionID == s.connected.SessionID {
			t.Fatal("another tenant resumed a foreign session")
		}
		if ev := r.next(5 * time.Second); ev.Event != "reset" {
			t.Fatalf("got %s %s, want reset", ev.Event, ev.Data)
		}
		r.expectNone(300 * time.Millisecond) // never the missed event of the other tenant
	})

	// None of that harmed the session: its owner resumes it and gets what she missed.
	r := n.dial(t, streamURL(n, alice, "secret"), http.Header{"Last-Event-Id": {cursor}}, 16)
	if r.connected.SessionID != s.connected.SessionID {
		t.Fatalf("owner resumed %s, want %s", r.connected.SessionID, s.connected.SessionID)
	}
	if got := dataInt(t, decodeMessage(t, r.next(5*time.Second)).Data); got != 2 {
		t.Fatalf("owner got %d, want the missed 2", got)
	}
}

// TestSecurityAdminRoutes: every /admin/api route refuses a missing or wrong token with 401 in
// the contract's shape, and changes nothing.
func TestSecurityAdminRoutes(t *testing.T) {
	t.Parallel()
	n := securityNode(t)
	a := n.signup(t, "Acme")
	tok := n.token(t, a, "u", []string{"*"}, 0)
	s := n.openStream(t, tok, "x")
	routes := []struct{ name, method, path, body string }{
		{"GET stats", "GET", "/admin/api/stats", ""},
		{"GET stats stream", "GET", "/admin/api/stats/stream", ""},
		{"GET tenant", "GET", "/admin/api/tenants/" + a.TenantID, ""},
		{"PATCH tenant", "PATCH", "/admin/api/tenants/" + a.TenantID, `{"suspended":true}`},
		{"GET sessions", "GET", "/admin/api/tenants/" + a.TenantID + "/sessions", ""},
		{"DELETE session", "DELETE", "/admin/api/sessions/" + s.connected.SessionID, ""},
	}
	basic := base64.StdEncoding.EncodeToString([]byte("admin:" + testAdminToken))
	for _, cred := range []struct {
		name   string
		header http.Header
	}{
		{"no token", nil},
		{"wrong token", bearerHeader("wrong-admin-token-0123456789")},
		{"empty bearer", http.Header{"Authorization": {"Bearer "}}},
		{"admin token plus a character", bearerHeader(testAdminToken + "x")},
		{"admin token minus a character", bearerHeader(testAdminToken[:len(testAdminToken)-1])},
		{"a tenant's API key", bearerHeader(a.APIKey)},
		{"an end-user token", bearerHeader(tok)},
		{"admin token without Bearer", http.Header{"Authorization": {testAdminToken}}},
		{"admin token as Basic credentials", http.Header{"Authorization": {"Basic " + basic}}},
	} {
		for _, r := range routes {
			t.Run(cred.name+"/"+r.name, func(t *testing.T) {
				n.try(t, r.method, r.path, cred.header, r.body).want(t, 401, "unauthorized")
			})
		}
	}

	// Nothing changed: the tenant is not suspended and the session was not evicted.
	n.stillServing(t, a)
	n.publish(t, a, "x", 1)
	decodeMessage(t, s.next(5*time.Second))

	// Control: the right token opens every route.
	admin := bearerHeader(testAdminToken)
	for _, r := range routes {
		body, want := r.body, 200
		switch r.method {
		case "PATCH":
			body = `{"suspended":false}`
		case "DELETE":
			want = 204
		}
		n.try(t, r.method, r.path, admin, body).want(t, want)
	}
}

// TestSecuritySecretsNeverLogged runs a flow that creates API keys, signing keys and tokens,
// publishes, streams, runs a job and fails authentication in many ways, then greps the api's
// log and stdout and the worker's log for every secret and token it handled.
func TestSecuritySecretsNeverLogged(t *testing.T) {
	t.Parallel()
	n := securityNode(t)
	w := startWorker(t, n.Redis, "w-secrets")
	a := n.signup(t, "Acme")

	var key2, sig2 struct{ ID, Secret string }
	n.do(t, call{method: "POST", path: "/v1/api-keys", auth: a.APIKey}).want(t, 201).decode(t, &key2)
	n.do(t, call{method: "POST", path: "/v1/signing-keys", auth: key2.Secret}).want(t, 201).decode(t, &sig2)
	minted := n.token(t, a, "u", []string{"*"}, 0) // signed with sig2, the newest key
	handSigned := hmacToken("HS256", a.SigningID, a.SigningKey, userClaims(nil))

	// Streams with the token in the query and in the header; publish, a job, a subscription
	// change and a resume.
	s := n.openStream(t, minted, "x", "job:j1")
	h := n.dial(t, streamURL(n, "", "x"), bearerHeader(handSigned), 64)
	n.do(t, call{method: "POST", path: "/v1/channels/x/events", auth: key2.Secret, body: `{"data":"hello"}`}).want(t, 202)
	decodeMessage(t, s.next(5*time.Second))
	decodeMessage(t, h.next(5*time.Second))
	n.putJob(t, a, "j1", map[string]any{"status": "running", "output": "done"})
	jobEvent(t, s.next(10*time.Second))
	n.do(t, call{method: "POST", path: "/v1/sessions/" + s.connected.SessionID + "/subscriptions", auth: minted, body: `{"channel":"y"}`}).want(t, 201)
	s.next(5 * time.Second)
	s.Close()
	r := n.resumeFrom(t, minted, s.stream.LastID())
	n.do(t, call{method: "GET", path: "/admin/api/stats", auth: testAdminToken}).want(t, 200)

	// Failures.
	wrongKey := "sgk_wrongwrongwrongwrongwrongwrongwrong"
	wrongAdmin := "wrong-admin-token-0123456789"
	forged := hmacToken("HS256", a.SigningID, "not-the-signing-secret", userClaims(nil))
	expired := hmacToken("HS256", a.SigningID, a.SigningKey, userClaims(map[string]any{"exp": time.Now().Add(-time.Hour).Unix()}))
	hs512 := hmacToken("HS512", a.SigningID, a.SigningKey, userClaims(nil))
	n.do(t, call{method: "GET", path: "/v1/tenant", auth: wrongKey}).want(t, 401)
	n.do(t, call{method: "GET", path: "/v1/tenant", auth: minted}).want(t, 401)
	for _, bad := range []string{forged, expired, hs512, a.APIKey} {
		n.try(t, "GET", streamPath(n, bad, "x"), nil, "").want(t, 401)
		n.do(t, call{method: "POST", path: "/v1/sessions/" + s.connected.SessionID + "/subscriptions", auth: bad, body: `{"channel":"z"}`}).want(t, 401)
	}
	n.do(t, call{method: "GET", path: "/admin/api/stats", auth: wrongAdmin}).want(t, 401)
	n.do(t, call{method: "GET", path: "/v1/tenant", auth: testAdminToken}).want(t, 401)
	n.do(t, call{method: "DELETE", path: "/v1/api-keys/" + key2.ID, auth: a.APIKey}).want(t, 204)
	n.do(t, call{method: "GET", path: "/v1/tenant", auth: key2.Secret}).want(t, 401)
	n.do(t, call{method: "DELETE", path: "/v1/signing-keys/" + sig2.ID, auth: a.APIKey}).want(t, 204)
	if ev := r.next(5 * time.Second); ev.Event != "auth_failed" {
		t.Fatalf("got %s, want auth_failed after its key was deleted", ev.Event)
	}
	n.try(t, "GET", streamPath(n, minted, "x"), nil, "").want(t, 401)
	if err := n.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}

	secrets := map[string]string{
		"API key":                a.APIKey,
		"second API key":         key2.Secret,
		"signing key secret":     a.SigningKey,
		"second signing secret":  sig2.Secret,
		"minted token":           minted,
		"minted token signature": minted[strings.LastIndex(minted, ".")+1:],
		"hand-signed token":      handSigned,
		"forged token":           forged,
		"expired token":          expired,
		"HS512 token":            hs512,
		"wrong API key":          wrongKey,
		"admin token":            testAdminToken,
		"wrong admin token":      wrongAdmin,
		"STREAMGATE_SECRET_KEY":  testSecretKey,
		"minted token claims":    strings.Split(minted, ".")[1],
	}
	logs := map[string]string{"api log": n.logs.String(), "api stdout": n.stdout.String(), "worker log": w.logs.String()}
	for where, text := range logs {
		for what, secret := range secrets {
			if i := strings.Index(text, secret); i >= 0 {
				start := strings.LastIndexByte(text[:i], '\n') + 1
				end := strings.IndexByte(text[i:], '\n')
				if end < 0 {
					end = len(text) - i
				}
				t.Errorf("the %s holds the %s: %s", where, what, clipText(text[start:i+end], 300))
			}
		}
	}
	// The grep looked where the logs are: the api logged the signup, the worker its work.
	if !strings.Contains(logs["api log"], a.TenantID) || !strings.Contains(logs["worker log"], "consuming updates") {
		t.Fatalf("the captured logs are not the processes' logs:\napi: %s\nworker: %s", clipText(logs["api log"], 500), clipText(logs["worker log"], 500))
	}
}
