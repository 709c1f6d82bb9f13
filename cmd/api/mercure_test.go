package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/streamgate/streamgate/internal/redistest"
	"github.com/streamgate/streamgate/internal/sseclient"
)

// mercureView is the configuration as PUT and GET /v1/mercure show it.
type mercureView struct {
	Hosts            []string `json:"hosts"`
	Algorithm        string   `json:"jwt_algorithm"`
	Anonymous        bool     `json:"anonymous"`
	SubscriptionsAPI bool     `json:"subscriptions_api"`
	CORSOrigins      []string `json:"cors_origins"`
}

// configureMercure turns the tenant's hub on with cfg and returns what the API answered.
func (n *node) configureMercure(t testing.TB, a account, cfg map[string]any) mercureView {
	t.Helper()
	var out mercureView
	n.do(t, call{method: "PUT", path: "/v1/mercure", auth: a.APIKey, body: cfg}).want(t, 200).decode(t, &out)
	return out
}

func TestMercureConfiguration(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil, nil)
	a := n.signup(t, "Acme")
	b := n.signup(t, "Beta")

	n.do(t, call{method: "GET", path: "/v1/mercure", auth: a.APIKey}).want(t, 404, "not_found")
	n.do(t, call{method: "DELETE", path: "/v1/mercure", auth: a.APIKey}).want(t, 404, "not_found")

	put := n.do(t, call{method: "PUT", path: "/v1/mercure", auth: a.APIKey, body: map[string]any{
		"hosts": []string{"Hub.Acme.Example"}, "publisher_jwt_key": "publisher-key-0123456789",
		"subscriber_jwt_key": "subscriber-key-0123456789", "cors_origins": []string{"https://acme.example"},
	}}).want(t, 200)
	if strings.Contains(string(put.Body), "key-0123456789") {
		t.Errorf("PUT echoes a key: %s", put.Body)
	}
	var got mercureView
	put.decode(t, &got)
	want := mercureView{Hosts: []string{"hub.acme.example"}, Algorithm: "HS256", CORSOrigins: []string{"https://acme.example"}}
	if !sameView(got, want) {
		t.Errorf("PUT answered %+v, want %+v", got, want)
	}
	read := n.do(t, call{method: "GET", path: "/v1/mercure", auth: a.APIKey}).want(t, 200)
	var raw map[string]json.RawMessage
	read.decode(t, &raw)
	for _, k := range []string{"publisher_jwt_key", "subscriber_jwt_key"} {
		if _, ok := raw[k]; ok {
			t.Errorf("GET shows %s: %s", k, read.Body)
		}
	}
	read.decode(t, &got)
	if !sameView(got, want) {
		t.Errorf("GET answered %+v, want %+v", got, want)
	}

	// Refusals change nothing.
	for _, tc := range []struct {
		name   string
		c      call
		status int
		code   string
	}{
		{"no API key", call{method: "PUT", path: "/v1/mercure", body: map[string]any{"publisher_jwt_key": "k", "anonymous": true}}, 401, "unauthorized"},
		{"no publisher key", call{method: "PUT", path: "/v1/mercure", auth: a.APIKey, body: map[string]any{"subscriber_jwt_key": "k"}}, 400, "invalid_request"},
		{"no subscriber key", call{method: "PUT", path: "/v1/mercure", auth: a.APIKey, body: map[string]any{"publisher_jwt_key": "k"}}, 400, "invalid_request"},
		{"unknown field", call{method: "PUT", path: "/v1/mercure", auth: a.APIKey, body: map[string]any{"publisher_jwt_key": "k", "anonymous": true, "colour": 1}}, 400, "invalid_request"},
		{"bad algorithm", call{method: "PUT", path: "/v1/mercure", auth: a.APIKey, body: map[string]any{"publisher_jwt_key": "k", "anonymous": true, "jwt_algorithm": "none"}}, 400, "invalid_request"},
		{"RS256 without PEM", call{method: "PUT", path: "/v1/mercure", auth: a.APIKey, body: map[string]any{"publisher_jwt_key": "k", "anonymous": true, "jwt_algorithm": "RS256"}}, 400, "invalid_request"},
		{"host with port", call{method: "PUT", path: "/v1/mercure", auth: a.APIKey, body: map[string]any{"publisher_jwt_key": "k", "anonymous": true, "hosts": []string{"a.example:8080"}}}, 400, "invalid_request"},
		{"another tenant's host", call{method: "PUT", path: "/v1/mercure", auth: b.APIKey, body: map[string]any{"publisher_jwt_key": "k", "anonymous": true, "hosts": []string{"hub.acme.example"}}}, 409, "conflict"},
		{"wrong method", call{method: "POST", path: "/v1/mercure", auth: a.APIKey, body: map[string]any{}}, 405, "method_not_allowed"},
	} {
		n.do(t, tc.c).want(t, tc.status, tc.code)
	}
	n.do(t, call{method: "GET", path: "/v1/mercure", auth: a.APIKey}).want(t, 200).decode(t, &got)
	if !sameView(got, want) {
		t.Errorf("after refusals GET answered %+v, want %+v", got, want)
	}
	n.do(t, call{method: "GET", path: "/v1/mercure", auth: b.APIKey}).want(t, 404, "not_found")

	// PUT replaces the whole configuration; DELETE frees the host for another tenant.
	n.configureMercure(t, a, map[string]any{"publisher_jwt_key": "k", "anonymous": true})
	n.do(t, call{method: "GET", path: "/v1/mercure", auth: a.APIKey}).want(t, 200).decode(t, &got)
	if !sameView(got, mercureView{Hosts: []string{}, Algorithm: "HS256", Anonymous: true, CORSOrigins: []string{}}) {
		t.Errorf("after a second PUT: %+v", got)
	}
	n.do(t, call{method: "DELETE", path: "/v1/mercure", auth: a.APIKey}).want(t, 204)
	n.do(t, call{method: "GET", path: "/v1/mercure", auth: a.APIKey}).want(t, 404, "not_found")
	n.configureMercure(t, b, map[string]any{"publisher_jwt_key": "k", "anonymous": true, "hosts": []string{"hub.acme.example"}})
}

func sameView(a, b mercureView) bool {
	return strings.Join(a.Hosts, ",") == strings.Join(b.Hosts, ",") && a.Hosts != nil && b.Hosts != nil &&
		a.Algorithm == b.Algorithm && a.Anonymous == b.Anonymous && a.SubscriptionsAPI == b.SubscriptionsAPI &&
		strings.Join(a.CORSOrigins, ",") == strings.Join(b.CORSOrigins, ",") && a.CORSOrigins != nil
}

const mercureCookieName = "mercureAuthorization"

// The reference hub's development keys, as in Mercure's own conformance tests.
const (
	mercurePublisherKey  = "!ChangeThisMercureHubJWTSecretKey!"
	mercureSubscriberKey = "!ChangeThisMercureSubscriberKey!!"
)

// mercureJWT signs a Mercure token with HS256.
func mercureJWT(t testing.TB, key string, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(key))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// publisherJWT may publish to selectors.
func publisherJWT(t testing.TB, selectors ...string) string {
	return mercureJWT(t, mercurePublisherKey, jwt.MapClaims{"mercure": map[string]any{"publish": selectors}})
}

// subscriberJWT may receive the private updates of selectors.
func subscriberJWT(t testing.TB, sub string, selectors ...string) string {
	claims := jwt.MapClaims{"mercure": map[string]any{"subscribe": selectors, "payload": map[string]any{"user": sub}}}
	if sub != "" {
		claims["sub"] = sub
	}
	return mercureJWT(t, mercureSubscriberKey, claims)
}

// mercureHub configures the tenant's hub with the development keys and returns its path.
func (n *node) mercureHub(t testing.TB, a account, cfg map[string]any) string {
	t.Helper()
	body := map[string]any{"publisher_jwt_key": mercurePublisherKey, "subscriber_jwt_key": mercureSubscriberKey}
	for k, v := range cfg {
		body[k] = v
	}
	n.configureMercure(t, a, body)
	return "/mercure/" + a.TenantID + "/.well-known/mercure"
}

// mercureRequest is one request to a hub: on path, sent to host when set.
type mercureRequest struct {
	method, path, host string
	query              url.Values
	header             http.Header
	form               url.Values
}

func (n *node) mercureHTTP(t testing.TB, ctx context.Context, mr mercureRequest) *http.Response {
	t.Helper()
	u := n.URL + mr.path
	if len(mr.query) > 0 {
		u += "?" + mr.query.Encode()
	}
	var body io.Reader
	if mr.form != nil {
		body = strings.NewReader(mr.form.Encode())
	}
	method := mr.method
	if method == "" {
		method = "GET"
		if mr.form != nil {
			method = "POST"
		}
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range mr.header {
		req.Header[k] = vs
	}
	if mr.form != nil && req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if mr.host != "" {
		req.Host = mr.host
	}
	resp, err := testClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, mr.path, err)
	}
	return resp
}

// mercureDo sends a request that is not a stream and returns its reply.
func (n *node) mercureDo(t testing.TB, mr mercureRequest) reply {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp := n.mercureHTTP(t, ctx, mr)
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return reply{Status: resp.StatusCode, Header: resp.Header, Body: raw}
}

// mercureStatus sends a request and returns its status without reading the body: a stream is
// closed at once.
func (n *node) mercureStatus(t testing.TB, mr mercureRequest) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp := n.mercureHTTP(t, ctx, mr)
	resp.Body.Close()
	return resp.StatusCode
}

// mercurePublish publishes and returns the update's id, failing unless the hub answers 200.
func (n *node) mercurePublish(t testing.TB, path, token string, form url.Values) string {
	t.Helper()
	r := n.mercureDo(t, mercureRequest{path: path, form: form, header: http.Header{"Authorization": {"Bearer " + token}}})
	if r.Status != 200 || !strings.HasPrefix(r.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("publish: %d %s %q", r.Status, r.Header.Get("Content-Type"), r.Body)
	}
	return string(r.Body)
}

// mercureSubscribe opens a subscription and reads it in the background; the stream is open
// (and the subscriber registered) once it returns.
func (n *node) mercureSubscribe(t testing.TB, mr mercureRequest) *subscriber {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	resp := n.mercureHTTP(t, ctx, mr)
	if resp.StatusCode != 200 {
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		cancel()
		t.Fatalf("subscription refused: %d %s", resp.StatusCode, raw)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		cancel()
		t.Fatalf("subscription answered %s", ct)
	}
	st := sseclient.NewStream(resp)
	s := &subscriber{t: t, stream: st, events: make(chan sseclient.Event, 1<<12), done: make(chan error, 1), cancel: cancel}
	t.Cleanup(s.Close)
	// The stream starts with the reconnection delay, written once the subscriber is in place.
	if ev, err := st.Next(); err != nil || ev.Retry <= 0 {
		t.Fatalf("first event %+v, %v; want the retry advice", ev, err)
	}
	go func() {
		defer close(s.events)
		for {
			ev, err := st.Next()
			if err != nil {
				s.done <- err
				return
			}
			s.events <- ev
		}
	}()
	return s
}

func topics(ts ...string) url.Values { return url.Values{"topic": ts} }

// expectUpdate fails unless the next event is the update with id and data.
func (s *subscriber) expectUpdate(id, data string) sseclient.Event {
	s.t.Helper()
	ev := s.next(10 * time.Second)
	if ev.ID != id || ev.Data != data {
		s.t.Fatalf("got update %q (%s: %q), want %q (%q)", ev.ID, ev.Event, ev.Data, id, data)
	}
	return ev
}

func TestMercurePublishAndSubscribe(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil, nil)
	a := n.signup(t, "Acme")
	hub := n.mercureHub(t, a, map[string]any{"anonymous": true})
	pub := publisherJWT(t, "https://example.com/books/{id}", "news")

	books := n.mercureSubscribe(t, mercureRequest{path: hub, query: topics("https://example.com/books/{id}")})
	both := n.mercureSubscribe(t, mercureRequest{path: hub, query: topics("https://example.com/books/1", "news", "https://example.com/books/{id}")})

	// A non-matching update first: the next event each subscriber sees must be the matching one.
	n.mercurePublish(t, hub, pub, url.Values{"topic": {"news"}, "data": {"headline"}, "id": {"n1"}})
	id := n.mercurePublish(t, hub, pub, url.Values{
		"topic": {"https://example.com/books/1", "news"}, "data": {"line one\nline two"},
		"id": {"urn:book:1"}, "type": {"book"}, "retry": {"1234"},
	})
	if id != "urn:book:1" {
		t.Errorf("publish answered %q, want the given id", id)
	}
	ev := books.expectUpdate("urn:book:1", "line one\nline two")
	if ev.Event != "book" || ev.Retry != 1234 {
		t.Errorf("update %+v, want type book and retry 1234", ev)
	}
	both.expectUpdate("n1", "headline")
	both.expectUpdate("urn:book:1", "line one\nline two") // two topics, three selectors: once

	fresh := n.mercurePublish(t, hub, pub, url.Values{"topic": {"https://example.com/books/2"}})
	if !regexp.MustCompile(`^urn:uuid:[0-9a-f-]{36}$`).MatchString(fresh) {
		t.Errorf("generated id %q, want urn:uuid:…", fresh)
	}
	books.expectUpdate(fresh, "")
	both.expectUpdate(fresh, "")
	books.expectNone(300 * time.Millisecond)
	both.expectNone(300 * time.Millisecond)
}

func TestMercurePrivateUpdates(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil, nil)
	a := n.signup(t, "Acme")
	hub := n.mercureHub(t, a, map[string]any{"anonymous": true})
	pub := publisherJWT(t, "*")
	books := topics("https://example.com/books/{id}")

	// The same topic selector, four ways of presenting (or not) a token.
	alice := n.mercureSubscribe(t, mercureRequest{path: hub, query: books, header: http.Header{
		"Authorization": {"Bearer " + subscriberJWT(t, "alice", "https://example.com/users/alice/{?topic}")}}})
	bob := n.mercureSubscribe(t, mercureRequest{path: hub, query: books, header: http.Header{
		"Cookie": {mercureCookieName + "=" + subscriberJWT(t, "bob", "https://example.com/users/bob/{?topic}")}}})
	q := topics("https://example.com/books/{id}")
	q.Set("authorization", subscriberJWT(t, "", "*"))
	admin := n.mercureSubscribe(t, mercureRequest{path: hub, query: q})
	anon := n.mercureSubscribe(t, mercureRequest{path: hub, query: books})

	private := n.mercurePublish(t, hub, pub, url.Values{"private": {"on"}, "data": {"for alice"}, "topic": {
		"https://example.com/books/1", "https://example.com/users/alice/?topic=" + url.QueryEscape("https://example.com/books/1")}})
	public := n.mercurePublish(t, hub, pub, url.Values{"topic": {"https://example.com/books/1"}, "data": {"for all"}})
	alice.expectUpdate(private, "for alice")
	admin.expectUpdate(private, "for alice")
	for _, s := range []*subscriber{alice, bob, admin, anon} {
		s.expectUpdate(public, "for all")
	}

	// Who is who: the token's sub, or anonymous.
	var sessions struct {
		Sessions []struct {
			Sub      string   `json:"sub"`
			Channels []string `json:"channels"`
		} `json:"sessions"`
	}
	n.do(t, call{method: "GET", path: "/admin/api/tenants/" + a.TenantID + "/sessions", auth: testAdminToken}).want(t, 200).decode(t, &sessions)
	var subs []string
	for _, s := range sessions.Sessions {
		subs = append(subs, s.Sub)
		if strings.Join(s.Channels, ",") != "https://example.com/books/{id}" {
			t.Errorf("session of %s lists channels %q, want its topic selector", s.Sub, s.Channels)
		}
	}
	slices.Sort(subs)
	if strings.Join(subs, ",") != "alice,anonymous,bob,mercure" {
		t.Errorf("sessions of %q", subs)
	}
}

func TestMercureTokenExpiryClosesTheStream(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil, nil)
	a := n.signup(t, "Acme")
	hub := n.mercureHub(t, a, nil)
	tok := mercureJWT(t, mercureSubscriberKey, jwt.MapClaims{"exp": time.Now().Add(2 * time.Second).Unix(), "mercure": map[string]any{"subscribe": []string{"*"}}})
	s := n.mercureSubscribe(t, mercureRequest{path: hub, query: topics("*"), header: http.Header{"Authorization": {"Bearer " + tok}}})
	select {
	case <-s.done: // the server closed it
	case <-time.After(20 * time.Second):
		t.Fatal("the stream outlived its token")
	}
	for ev := range s.events {
		if ev.Comment == "" && ev.Event != "" {
			t.Errorf("a Mercure stream got %s: %s", ev.Event, ev.Data)
		}
	}
}

func TestMercureResume(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	n1 := startNode(t, rs, nil)
	n2 := startNode(t, rs, nil)
	a := n1.signup(t, "Acme")
	hub := n1.mercureHub(t, a, map[string]any{"anonymous": true})
	pub := publisherJWT(t, "*")
	var ids []string
	for i := range 3 {
		ids = append(ids, n1.mercurePublish(t, hub, pub, url.Values{"topic": {"t"}, "data": {strconv.Itoa(i)}, "id": {"u" + strconv.Itoa(i)}}))
	}
	// Neither is for these subscribers: a private update (private= counts, even empty) and
	// another topic's.
	n1.mercurePublish(t, hub, pub, url.Values{"topic": {"t"}, "private": {""}, "data": {"private"}})
	n1.mercurePublish(t, hub, pub, url.Values{"topic": {"elsewhere"}, "data": {"x"}})

	open := func(name string, header http.Header, q url.Values, wantHeader string) *subscriber {
		t.Helper()
		if q == nil {
			q = url.Values{}
		}
		q.Set("topic", "t")
		s := n2.mercureSubscribe(t, mercureRequest{path: hub, query: q, header: header})
		if got := s.stream.Response.Header.Get("Last-Event-ID"); got != wantHeader {
			t.Errorf("%s: Last-Event-ID response header %q, want %q", name, got, wantHeader)
		}
		return s
	}
	// On another node, from the header (as EventSource reconnects) and from the query (the first
	// connect after discovery).
	fromHeader := open("header", http.Header{"Last-Event-ID": {"u0"}}, nil, "u0")
	fromQuery := open("query", nil, url.Values{"lastEventID": {"u1"}}, "u1")
	fromBoth := open("both", http.Header{"Last-Event-ID": {"u1"}}, url.Values{"lastEventID": {"u0"}}, "u1")
	earliest := open("earliest", http.Header{"Last-Event-ID": {"earliest"}}, nil, "earliest")
	unknown := open("unknown", http.Header{"Last-Event-ID": {"never-published"}}, nil, "earliest")
	live := open("none", nil, nil, "")

	fromHeader.expectUpdate("u1", "1")
	fromHeader.expectUpdate("u2", "2")
	fromQuery.expectUpdate("u2", "2")
	fromBoth.expectUpdate("u2", "2")
	for i := range 3 {
		earliest.expectUpdate(ids[i], strconv.Itoa(i))
	}
	// Then live, published on the first node; private and unmatched updates were never replayed.
	next := n1.mercurePublish(t, hub, pub, url.Values{"topic": {"t"}, "data": {"live"}})
	for _, s := range []*subscriber{fromHeader, fromQuery, fromBoth, earliest, unknown, live} {
		s.expectUpdate(next, "live")
	}
}

func TestMercureHostRouting(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	n := startNode(t, rs, map[string]string{"STREAMGATE_TRUSTED_PROXIES": "127.0.0.1"})
	untrusting := startNode(t, rs, nil)
	a := n.signup(t, "Acme")
	byPath := n.mercureHub(t, a, map[string]any{"anonymous": true, "hosts": []string{"acme.localhost"}})
	pub := publisherJWT(t, "*")
	port := strings.TrimPrefix(n.URL[strings.LastIndex(n.URL, ":"):], ":")

	s := n.mercureSubscribe(t, mercureRequest{path: "/.well-known/mercure", host: "ACME.localhost:" + port, query: topics("t")})
	if link := s.stream.Response.Header.Get("Link"); link != `</.well-known/mercure>; rel="mercure"` {
		t.Errorf("Link %q", link)
	}
	viaProxy := n.mercureSubscribe(t, mercureRequest{path: "/.well-known/mercure", query: topics("t"),
		header: http.Header{"X-Forwarded-Host": {"acme.localhost"}}})
	viaPath := n.mercureSubscribe(t, mercureRequest{path: byPath, query: topics("t")})
	if link := viaPath.stream.Response.Header.Get("Link"); link != "<"+byPath+`>; rel="mercure"` {
		t.Errorf("Link %q", link)
	}
	r := n.mercureDo(t, mercureRequest{path: "/.well-known/mercure", host: "acme.localhost", form: url.Values{"topic": {"t"}, "data": {"by host"}},
		header: http.Header{"Authorization": {"Bearer " + pub}}})
	if r.Status != 200 {
		t.Fatalf("publish by host: %d %s", r.Status, r.Body)
	}
	for _, sub := range []*subscriber{s, viaProxy, viaPath} {
		sub.expectUpdate(string(r.Body), "by host")
	}

	// Other hosts, untrusted proxies and other paths behave as they always did.
	n.mercureDo(t, mercureRequest{path: "/.well-known/mercure", host: "other.localhost", query: topics("t")}).want(t, 404, "not_found")
	untrusting.mercureDo(t, mercureRequest{path: "/.well-known/mercure", query: topics("t"),
		header: http.Header{"X-Forwarded-Host": {"acme.localhost"}}}).want(t, 404, "not_found")
	n.mercureDo(t, mercureRequest{path: "/healthz", host: "acme.localhost"}).want(t, 200)
	n.mercureDo(t, mercureRequest{path: "/v1/tenant", host: "acme.localhost", header: http.Header{"Authorization": {"Bearer " + a.APIKey}}}).want(t, 200)
	n.mercureDo(t, mercureRequest{path: "/", host: "acme.localhost"}).want(t, 404, "not_found")

	// Once the tenant lets the host go, it is no hub's (within 2 s on every node).
	n.mercureHub(t, a, map[string]any{"anonymous": true})
	waitFor(t, 3*time.Second, "the host to be released", func() bool {
		return untrusting.mercureStatus(t, mercureRequest{path: "/.well-known/mercure", host: "acme.localhost", query: topics("t")}) == 404
	})
}

// wantPlain fails unless the reply is a plain-text refusal with status.
func (r reply) wantPlain(t testing.TB, status int) {
	t.Helper()
	if r.Status != status || !strings.HasPrefix(r.Header.Get("Content-Type"), "text/plain") || len(r.Body) == 0 {
		t.Fatalf("status %d (%s) %q, want a plain-text %d", r.Status, r.Header.Get("Content-Type"), r.Body, status)
	}
}

func TestMercureRefusals(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil, map[string]string{"STREAMGATE_DEFAULT_MAX_MESSAGE_BYTES": "100"})
	a := n.signup(t, "Acme")
	hub := n.mercureHub(t, a, nil) // not anonymous
	off := n.signup(t, "No hub")
	pub := publisherJWT(t, "https://example.com/books/{id}")
	auth := func(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }
	book := func(extra ...string) url.Values {
		v := url.Values{"topic": {"https://example.com/books/1"}, "data": {"x"}}
		for i := 0; i+1 < len(extra); i += 2 {
			v[extra[i]] = append(v[extra[i]], extra[i+1])
		}
		return v
	}
	watcher := n.mercureSubscribe(t, mercureRequest{path: hub, query: topics("*"), header: auth(subscriberJWT(t, "w", "*"))})

	for _, tc := range []struct {
		name   string
		r      mercureRequest
		status int
	}{
		{"publish without token", mercureRequest{path: hub, form: book()}, 401},
		{"publish with the subscriber key", mercureRequest{path: hub, form: book(), header: auth(mercureJWT(t, mercureSubscriberKey, jwt.MapClaims{"mercure": map[string]any{"publish": []string{"*"}}}))}, 401},
		{"publish with a malformed header", mercureRequest{path: hub, form: book(), header: http.Header{"Authorization": {"Basic x"}}}, 401},
		{"publish without mercure.publish", mercureRequest{path: hub, form: book(), header: auth(mercureJWT(t, mercurePublisherKey, jwt.MapClaims{"mercure": map[string]any{"subscribe": []string{"*"}}}))}, 401},
		{"publish an expired token", mercureRequest{path: hub, form: book(), header: auth(mercureJWT(t, mercurePublisherKey, jwt.MapClaims{"exp": time.Now().Add(-time.Hour).Unix(), "mercure": map[string]any{"publish": []string{"*"}}}))}, 401},
		{"publish with a cookie from nowhere", mercureRequest{path: hub, form: book(), header: http.Header{"Cookie": {mercureCookieName + "=" + pub}}}, 401},
		{"topic not allowed", mercureRequest{path: hub, form: url.Values{"topic": {"https://example.com/books/1", "news"}}, header: auth(pub)}, 403},
		{"private topic not allowed", mercureRequest{path: hub, form: url.Values{"topic": {"news"}, "private": {"on"}}, header: auth(pub)}, 403},
		{"reserved topic", mercureRequest{path: hub, form: url.Values{"topic": {"/.well-known/mercure/subscriptions/x/y"}}, header: auth(publisherJWT(t, "*"))}, 403},
		{"no topic", mercureRequest{path: hub, form: url.Values{"data": {"x"}}, header: auth(pub)}, 400},
		{"not a form", mercureRequest{path: hub, form: book(), header: http.Header{"Authorization": {"Bearer " + pub}, "Content-Type": {"application/json"}}}, 400},
		{"bad retry", mercureRequest{path: hub, form: book("retry", "soon"), header: auth(pub)}, 400},
		{"id with a line break", mercureRequest{path: hub, form: book("id", "a\ndata: forged"), header: auth(pub)}, 400},
		{"type with a line break", mercureRequest{path: hub, form: book("type", "a\rb"), header: auth(pub)}, 400},
		{"topic not UTF-8", mercureRequest{path: hub, form: url.Values{"topic": {"\xff"}}, header: auth(publisherJWT(t, "*"))}, 400},
		{"data over max_message_bytes", mercureRequest{path: hub, form: url.Values{"topic": {"https://example.com/books/1"}, "data": {strings.Repeat("d", 101)}}, header: auth(pub)}, 413},
		{"subscribe without token", mercureRequest{path: hub, query: topics("*")}, 401},
		{"subscribe with a bad token", mercureRequest{path: hub, query: topics("*"), header: auth("a.b.c")}, 401},
		{"subscribe with the publisher key", mercureRequest{path: hub, query: topics("*"), header: auth(pub)}, 401},
		{"subscribe with a bad query token", mercureRequest{path: hub, query: url.Values{"topic": {"*"}, "authorization": {"nope"}}}, 401},
		{"subscribe without topic", mercureRequest{path: hub, header: auth(subscriberJWT(t, "u", "*"))}, 400},
		{"subscribe to an empty topic", mercureRequest{path: hub, query: topics(""), header: auth(subscriberJWT(t, "u", "*"))}, 400},
		{"wrong method", mercureRequest{method: "PUT", path: hub}, 405},
		{"unknown path under the hub", mercureRequest{path: hub + "/nothing"}, 404},
		{"tenant without a hub", mercureRequest{path: "/mercure/" + off.TenantID + "/.well-known/mercure", query: topics("*")}, 404},
		{"unknown tenant", mercureRequest{path: "/mercure/tn_nobody/.well-known/mercure", query: topics("*")}, 404},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n.mercureDo(t, tc.r).wantPlain(t, tc.status)
		})
	}
	// No refusal published anything.
	ok := n.mercurePublish(t, hub, pub, book())
	watcher.expectUpdate(ok, "x")

	// A suspended tenant's hub refuses everyone; its subscribers are closed.
	n.do(t, call{method: "PATCH", path: "/admin/api/tenants/" + a.TenantID, auth: testAdminToken, body: map[string]any{"suspended": true}}).want(t, 200)
	select {
	case <-watcher.done:
	case <-time.After(10 * time.Second):
		t.Error("a subscriber of a suspended tenant is still open")
	}
	waitFor(t, 3*time.Second, "the suspension to apply", func() bool {
		return n.mercureDo(t, mercureRequest{path: hub, form: book(), header: auth(pub)}).Status == 403
	})
}

func TestMercureRateLimit(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil, map[string]string{"STREAMGATE_DEFAULT_PUBLISH_PER_SECOND": "1"})
	a := n.signup(t, "Acme")
	hub := n.mercureHub(t, a, map[string]any{"anonymous": true})
	pub := publisherJWT(t, "*")
	limited := false
	for range 20 {
		r := n.mercureDo(t, mercureRequest{path: hub, form: url.Values{"topic": {"t"}}, header: http.Header{"Authorization": {"Bearer " + pub}}})
		if r.Status == 429 {
			r.wantPlain(t, 429)
			if r.Header.Get("Retry-After") == "" || r.Header.Get("X-RateLimit-Limit") != "1" {
				t.Errorf("429 without Retry-After or X-RateLimit-*: %v", r.Header)
			}
			limited = true
			break
		}
		if r.Status != 200 {
			t.Fatalf("publish: %d %s", r.Status, r.Body)
		}
	}
	if !limited {
		t.Error("20 publishes in a row at 1 per second were never limited")
	}
}

// A Mercure subscriber is a session of its tenant: it counts against max_connections and
// max_subscriptions_per_session, shows in usage and stats, and the operator can evict it.
func TestMercureSubscribersAreSessions(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil, map[string]string{"STREAMGATE_DEFAULT_MAX_CONNECTIONS": "2", "STREAMGATE_DEFAULT_MAX_SUBSCRIPTIONS_PER_SESSION": "3"})
	a := n.signup(t, "Acme")
	hub := n.mercureHub(t, a, map[string]any{"anonymous": true})
	tok := n.token(t, a, "native", []string{"*"}, 0)

	native := n.openStream(t, tok, "news")
	m := n.mercureSubscribe(t, mercureRequest{path: hub, query: topics("news", "https://example.com/{x}", "news")})
	var tn struct {
		Usage struct{ Connections, Subscriptions int } `json:"usage"`
	}
	n.do(t, call{method: "GET", path: "/v1/tenant", auth: a.APIKey}).want(t, 200).decode(t, &tn)
	if tn.Usage.Connections != 2 || tn.Usage.Subscriptions != 3 {
		t.Errorf("usage %+v, want 2 connections and 3 subscriptions (1 native, 2 distinct selectors)", tn.Usage)
	}
	n.mercureDo(t, mercureRequest{path: hub, query: topics("a")}).wantPlain(t, 403) // max_connections
	native.Close()
	waitFor(t, 5*time.Second, "the native stream to close", func() bool {
		n.do(t, call{method: "GET", path: "/v1/tenant", auth: a.APIKey}).want(t, 200).decode(t, &tn)
		return tn.Usage.Connections == 1
	})
	n.mercureDo(t, mercureRequest{path: hub, query: topics("a", "b", "c", "d")}).wantPlain(t, 403) // max_subscriptions_per_session

	// Topics are not channels: neither side's publishes reach the other.
	native = n.openStream(t, tok, "news")
	n.publish(t, a, "news", "native")
	id := n.mercurePublish(t, hub, publisherJWT(t, "*"), url.Values{"topic": {"news"}, "data": {"mercure"}})
	m.expectUpdate(id, "mercure")
	if got := decodeMessage(t, native.next(10*time.Second)); string(got.Data) != `"native"` {
		t.Errorf("native stream got %s", got.Data)
	}
	native.expectNone(300 * time.Millisecond)
	m.expectNone(300 * time.Millisecond)

	var sessions struct {
		Sessions []struct{ ID, Sub string } `json:"sessions"`
	}
	n.do(t, call{method: "GET", path: "/admin/api/tenants/" + a.TenantID + "/sessions", auth: testAdminToken}).want(t, 200).decode(t, &sessions)
	evicted := ""
	for _, s := range sessions.Sessions {
		if s.Sub == "anonymous" {
			evicted = s.ID
		}
	}
	if evicted == "" {
		t.Fatalf("the Mercure subscriber is not among the sessions: %+v", sessions)
	}
	n.do(t, call{method: "DELETE", path: "/admin/api/sessions/" + evicted, auth: testAdminToken}).want(t, 204)
	select {
	case <-m.done:
	case <-time.After(10 * time.Second):
		t.Fatal("an evicted Mercure subscriber is still open")
	}
	for ev := range m.events {
		if ev.Comment == "" && ev.Event != "" {
			t.Errorf("the evicted Mercure stream got %s %q: notices are not Mercure's", ev.Event, ev.Data)
		}
	}
}

func TestMercureReconfigurationClosesSubscribers(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	n1 := startNode(t, rs, nil)
	n2 := startNode(t, rs, nil)
	a := n1.signup(t, "Acme")
	hub := n1.mercureHub(t, a, map[string]any{"anonymous": true, "cors_origins": []string{"https://a.example"}})
	ended := func(s *subscriber) bool {
		select {
		case <-s.done:
			return true
		case <-time.After(10 * time.Second):
			return false
		}
	}
	s := n2.mercureSubscribe(t, mercureRequest{path: hub, query: topics("t")})
	// A change subscribers do not feel leaves them be.
	n1.mercureHub(t, a, map[string]any{"anonymous": true})
	s.expectNone(500 * time.Millisecond)
	// A new subscriber key, or turning the hub off, closes them on every node.
	n1.mercureHub(t, a, map[string]any{"anonymous": true, "subscriber_jwt_key": "another-key"})
	if !ended(s) {
		t.Fatal("a subscriber kept its stream after the subscriber key changed")
	}
	s = n2.mercureSubscribe(t, mercureRequest{path: hub, query: topics("t")})
	n1.do(t, call{method: "DELETE", path: "/v1/mercure", auth: a.APIKey}).want(t, 204)
	if !ended(s) {
		t.Fatal("a subscriber kept its stream after the hub was turned off")
	}
	waitFor(t, 3*time.Second, "the hub to be off on the other node", func() bool {
		return n2.mercureStatus(t, mercureRequest{path: hub, query: topics("t")}) == 404
	})
}

func TestMercureSubscriptionsAPI(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	n1 := startNode(t, rs, nil)
	n2 := startNode(t, rs, nil)
	a := n1.signup(t, "Acme")
	hub := n1.mercureHub(t, a, map[string]any{"subscriptions_api": true})
	const api = "/.well-known/mercure/subscriptions{/topic}{/subscriber}"
	watcherTok := subscriberJWT(t, "watcher", api)
	auth := func(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }
	watcher := n1.mercureSubscribe(t, mercureRequest{path: hub, query: topics(api), header: auth(watcherTok)})

	// Alice arrives on the other node: the watcher hears of it.
	const books = "https://example.com/books/{id}"
	alice := n2.mercureSubscribe(t, mercureRequest{path: hub, query: topics(books), header: auth(subscriberJWT(t, "alice", "x"))})
	ev := watcher.next(10 * time.Second)
	var doc struct {
		Context    string          `json:"@context"`
		ID         string          `json:"id"`
		Type       string          `json:"type"`
		Topic      string          `json:"topic"`
		Subscriber string          `json:"subscriber"`
		Active     bool            `json:"active"`
		Payload    json.RawMessage `json:"payload"`
	}
	if err := json.Unmarshal([]byte(ev.Data), &doc); err != nil {
		t.Fatalf("subscription event %q: %v", ev.Data, err)
	}
	if doc.Context != "https://mercure.rocks/" || doc.Type != "Subscription" || doc.Topic != books || !doc.Active ||
		!strings.HasPrefix(doc.Subscriber, "urn:uuid:") || string(doc.Payload) != `{"user":"alice"}` ||
		doc.ID != "/.well-known/mercure/subscriptions/"+url.QueryEscape(books)+"/"+url.QueryEscape(doc.Subscriber) {
		t.Errorf("subscription event %+v", doc)
	}

	// The API lists every node's subscriptions.
	get := func(path string, tok string) reply {
		t.Helper()
		h := http.Header{}
		if tok != "" {
			h = auth(tok)
		}
		return n1.mercureDo(t, mercureRequest{path: hub + path, header: h})
	}
	r := get("/subscriptions", watcherTok)
	if r.Status != 200 || r.Header.Get("Content-Type") != "application/ld+json" || r.Header.Get("ETag") == "" {
		t.Fatalf("collection: %d %v %s", r.Status, r.Header, r.Body)
	}
	var coll struct {
		Type          string `json:"type"`
		ID            string `json:"id"`
		LastEventID   string `json:"lastEventID"`
		Subscriptions []struct {
			ID, Topic, Subscriber string
			Active                bool
		} `json:"subscriptions"`
	}
	r.decode(t, &coll)
	if coll.Type != "Subscriptions" || coll.LastEventID != ev.ID || coll.ID != hub+"/subscriptions" || len(coll.Subscriptions) != 2 {
		t.Errorf("collection %+v, want both subscriptions and the last event %s", coll, ev.ID)
	}
	if nm := n1.mercureDo(t, mercureRequest{path: hub + "/subscriptions", header: http.Header{"Authorization": {"Bearer " + watcherTok}, "If-None-Match": {r.Header.Get("ETag")}}}); nm.Status != 304 {
		t.Errorf("If-None-Match with the current ETag: %d", nm.Status)
	}
	r = get("/subscriptions/"+url.QueryEscape(books), watcherTok)
	r.decode(t, &coll)
	if r.Status != 200 || len(coll.Subscriptions) != 1 || coll.Subscriptions[0].Subscriber != doc.Subscriber {
		t.Errorf("the topic's collection: %d %s", r.Status, r.Body)
	}
	r = get("/subscriptions/"+url.QueryEscape(books)+"/"+url.QueryEscape(doc.Subscriber), watcherTok)
	var one struct {
		ID, Topic, Subscriber, LastEventID string
		Active                             bool
	}
	r.decode(t, &one)
	if r.Status != 200 || one.ID != doc.ID || !one.Active || one.LastEventID != ev.ID {
		t.Errorf("one subscription: %d %s", r.Status, r.Body)
	}
	get("/subscriptions/"+url.QueryEscape(books)+"/urn%3Auuid%3Anobody", watcherTok).wantPlain(t, 404)
	get("/subscriptions", "").wantPlain(t, 401)
	get("/subscriptions", subscriberJWT(t, "u", "https://example.com/{x}")).wantPlain(t, 403)
	n1.mercureDo(t, mercureRequest{method: "POST", path: hub + "/subscriptions", header: auth(watcherTok)}).wantPlain(t, 405)

	// Alice leaves: the watcher hears that too, and she is no longer listed.
	alice.Close()
	ev = watcher.next(10 * time.Second)
	if err := json.Unmarshal([]byte(ev.Data), &doc); err != nil || doc.Active || doc.Topic != books {
		t.Errorf("departure event %s (%v)", ev.Data, err)
	}
	waitFor(t, 5*time.Second, "alice to leave the listing", func() bool {
		get("/subscriptions/"+url.QueryEscape(books), watcherTok).decode(t, &coll)
		return len(coll.Subscriptions) == 0
	})

	// Without subscriptions_api there is no such API, and no events.
	n1.mercureHub(t, a, nil)
	waitFor(t, 3*time.Second, "the API to be off", func() bool { return get("/subscriptions", watcherTok).Status == 404 })
}

// TestMercureOnRedisCluster runs the hub on a Redis Cluster: each tenant's Mercure log, its index
// and its sharded pub/sub channel share the tenant's slot; host names are global keys.
func TestMercureOnRedisCluster(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t, 3)
	a := startClusterNode(t, cl)
	b := startClusterNode(t, cl)
	pub := publisherJWT(t, "*")
	for i := range 3 {
		acct := a.signup(t, fmt.Sprint("tenant-", i))
		host := fmt.Sprintf("hub%d.localhost", i)
		a.mercureHub(t, acct, map[string]any{"anonymous": true, "hosts": []string{host}})
		s := a.mercureSubscribe(t, mercureRequest{path: mercurePathForTest, host: host, query: topics("https://example.com/{x}")})
		first := b.mercurePublish(t, "/mercure/"+acct.TenantID+mercurePathForTest, pub, url.Values{"topic": {"https://example.com/1"}, "data": {"one"}})
		s.expectUpdate(first, "one")
		s.Close()
		second := a.mercurePublish(t, "/mercure/"+acct.TenantID+mercurePathForTest, pub, url.Values{"topic": {"https://example.com/2"}, "data": {"two"}})
		r := b.mercureSubscribe(t, mercureRequest{path: mercurePathForTest, host: host, query: topics("https://example.com/{x}"),
			header: http.Header{"Last-Event-ID": {first}}})
		r.expectUpdate(second, "two")
	}
}

const mercurePathForTest = "/.well-known/mercure"

// Presence and channel occupancy are about channels: a Mercure subscriber takes part in neither,
// whatever the tenant's presence patterns.
func TestMercureSubscribersKeepNoPresence(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil, nil)
	a := n.signup(t, "Acme")
	keepPresence(t, a, []string{"*"}, n)
	hub := n.mercureHub(t, a, map[string]any{"anonymous": true})
	s := n.mercureSubscribe(t, mercureRequest{path: hub, query: topics("room.1", "*")})
	id := n.mercurePublish(t, hub, publisherJWT(t, "*"), url.Values{"topic": {"room.1"}, "data": {"x"}})
	s.expectUpdate(id, "x")
	var st struct {
		Connections      int `json:"connections"`
		PresenceChannels int `json:"presence_channels"`
	}
	waitFor(t, 5*time.Second, "the subscriber in the stats", func() bool {
		n.do(t, call{method: "GET", path: "/v1/stats", auth: a.APIKey}).want(t, 200).decode(t, &st)
		return st.Connections == 1
	})
	if st.PresenceChannels != 0 {
		t.Errorf("stats presence_channels %d with only a Mercure subscriber, want 0", st.PresenceChannels)
	}
	if p := n.presence(t, a.APIKey, "room.1"); p.Count != 0 {
		t.Errorf("presence of room.1: %+v", p)
	}
}

// TestMercureAnswersMatchOpenAPI checks the hub's answers against the OpenAPI document the node
// serves: every status is one it lists, every JSON body matches its schema.
func TestMercureAnswersMatchOpenAPI(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil, map[string]string{"STREAMGATE_DEFAULT_MAX_MESSAGE_BYTES": "10"})
	c := loadContract(t, n)
	a := n.signup(t, "Acme")
	cfg := call{method: "PUT", path: "/v1/mercure", auth: a.APIKey, body: map[string]any{
		"publisher_jwt_key": mercurePublisherKey, "subscriber_jwt_key": mercureSubscriberKey,
		"subscriptions_api": true, "hosts": []string{"openapi.localhost"}}}
	c.check("GET", "/v1/mercure", n.do(t, call{method: "GET", path: "/v1/mercure", auth: a.APIKey}).want(t, 404))
	c.check("PUT", "/v1/mercure", n.do(t, cfg).want(t, 200))
	c.check("PUT", "/v1/mercure", n.do(t, call{method: "PUT", path: "/v1/mercure", auth: a.APIKey, body: map[string]any{}}).want(t, 400))
	c.check("GET", "/v1/mercure", n.do(t, call{method: "GET", path: "/v1/mercure", auth: a.APIKey}).want(t, 200))

	hub := "/mercure/" + a.TenantID + "/.well-known/mercure"
	auth := func(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }
	pub := publisherJWT(t, "https://example.com/{x}")
	for _, tc := range []struct {
		method, path string
		r            mercureRequest
		status       int
	}{
		{"POST", hub, mercureRequest{path: hub, form: url.Values{"topic": {"https://example.com/1"}}, header: auth(pub)}, 200},
		{"POST", hub, mercureRequest{path: hub, form: url.Values{"data": {"x"}}, header: auth(pub)}, 400},
		{"POST", hub, mercureRequest{path: hub, form: url.Values{"topic": {"t"}}}, 401},
		{"POST", hub, mercureRequest{path: hub, form: url.Values{"topic": {"elsewhere"}}, header: auth(pub)}, 403},
		{"POST", hub, mercureRequest{path: hub, form: url.Values{"topic": {"https://example.com/1"}, "data": {"more than ten"}}, header: auth(pub)}, 413},
		{"POST", "/.well-known/mercure", mercureRequest{path: "/.well-known/mercure", host: "openapi.localhost", form: url.Values{"topic": {"https://example.com/1"}}, header: auth(pub)}, 200},
		{"GET", hub, mercureRequest{path: hub, header: auth(subscriberJWT(t, "u"))}, 400},
		{"GET", hub, mercureRequest{path: hub, query: topics("t")}, 401},
		{"GET", "/.well-known/mercure", mercureRequest{path: "/.well-known/mercure", host: "openapi.localhost", query: topics("t")}, 401},
		{"GET", "/mercure/tn_nobody/.well-known/mercure", mercureRequest{path: "/mercure/tn_nobody/.well-known/mercure", query: topics("t")}, 404},
		{"GET", "/.well-known/mercure/subscriptions", mercureRequest{path: "/.well-known/mercure/subscriptions", host: "openapi.localhost"}, 401},
		{"GET", "/.well-known/mercure/subscriptions", mercureRequest{path: "/.well-known/mercure/subscriptions", host: "openapi.localhost", header: auth(subscriberJWT(t, "u", "nothing"))}, 403},
		{"GET", "/.well-known/mercure/subscriptions", mercureRequest{path: "/.well-known/mercure/subscriptions", host: "openapi.localhost", header: auth(subscriberJWT(t, "u", "/.well-known/mercure/subscriptions"))}, 200},
	} {
		r := n.mercureDo(t, tc.r)
		if r.Status != tc.status {
			t.Errorf("%s %s: %d %s, want %d", tc.method, tc.path, r.Status, r.Body, tc.status)
		}
		c.check(tc.method, tc.path, r)
	}
	s := n.mercureSubscribe(t, mercureRequest{path: hub, query: topics("t"), header: auth(subscriberJWT(t, "u"))})
	s.Close()
	c.check("DELETE", "/v1/mercure", n.do(t, call{method: "DELETE", path: "/v1/mercure", auth: a.APIKey}).want(t, 204))
	c.check("DELETE", "/v1/mercure", n.do(t, call{method: "DELETE", path: "/v1/mercure", auth: a.APIKey}).want(t, 404))
}

func TestMercureCORS(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil, map[string]string{"STREAMGATE_CORS_ORIGINS": "https://api-console.example"})
	a := n.signup(t, "Acme")
	listed := n.mercureHub(t, a, map[string]any{"anonymous": true, "cors_origins": []string{"https://acme.example"}})
	preflight := func(path, origin string) reply {
		return n.mercureDo(t, mercureRequest{method: "OPTIONS", path: path, header: http.Header{
			"Origin": {origin}, "Access-Control-Request-Method": {"GET"}, "Access-Control-Request-Headers": {"last-event-id"}}})
	}
	r := preflight(listed, "https://acme.example")
	if r.Status != 204 || r.Header.Get("Access-Control-Allow-Origin") != "https://acme.example" ||
		r.Header.Get("Access-Control-Allow-Credentials") != "true" || !strings.Contains(r.Header.Get("Access-Control-Allow-Headers"), "Last-Event-ID") {
		t.Errorf("preflight from a listed origin: %d %v", r.Status, r.Header)
	}
	// The operator's origins are the API's, not the hub's.
	if r := preflight(listed, "https://api-console.example"); r.Status != 403 || r.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("preflight from an origin the hub does not list: %d %v", r.Status, r.Header)
	}
	s := n.mercureSubscribe(t, mercureRequest{path: listed, query: topics("t"), header: http.Header{"Origin": {"https://acme.example"}}})
	if got := s.stream.Response.Header.Get("Access-Control-Allow-Origin"); got != "https://acme.example" {
		t.Errorf("subscription from a listed origin: Access-Control-Allow-Origin %q", got)
	}
	b := n.signup(t, "Beta")
	open := n.mercureHub(t, b, map[string]any{"anonymous": true})
	if r := preflight(open, "https://anywhere.example"); r.Status != 204 || r.Header.Get("Access-Control-Allow-Origin") != "*" || r.Header.Get("Access-Control-Allow-Credentials") != "" {
		t.Errorf("preflight to a hub without cors_origins: %d %v", r.Status, r.Header)
	}
}
