package main

import (
	"encoding/json"
	"strings"
	"testing"
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
