package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

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
