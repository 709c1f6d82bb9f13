package main

import (
	"encoding/json"
	"slices"
	"testing"
	"time"
)

// mint mints a token and returns it with its expiry.
func (n *node) mint(t testing.TB, a account, sub string, channels []string, ttl int) (string, time.Time) {
	t.Helper()
	var out struct {
		Token     string    `json:"token"`
		ExpiresAt time.Time `json:"expires_at"`
	}
	n.do(t, call{method: "POST", path: "/v1/tokens", auth: a.APIKey,
		body: map[string]any{"sub": sub, "channels": channels, "ttl_seconds": ttl}}).want(t, 201).decode(t, &out)
	return out.Token, out.ExpiresAt
}

func TestTokenRefreshAcrossNodes(t *testing.T) {
	t.Parallel()
	env := map[string]string{"STREAMGATE_TOKEN_WARNING": "10m"}
	a := startNode(t, nil, env)
	b := startNode(t, a.Redis, env)
	acct := a.signup(t, "Acme")
	old, oldExp := a.mint(t, acct, "alice", []string{"news", "sports"}, 300)
	s := a.openStream(t, old, "news", "sports")

	// The token expires within the warning time: the stream is told once.
	ev := s.next(10 * time.Second)
	var warning struct {
		ExpiresAt time.Time `json:"expires_at"`
	}
	if ev.Event != "token_expiring" || json.Unmarshal([]byte(ev.Data), &warning) != nil || !warning.ExpiresAt.Equal(oldExp) {
		t.Fatalf("got %s %s, want token_expiring at %s", ev.Event, ev.Data, oldExp)
	}

	// The new token, sent to the other node, grants only news and lasts an hour.
	fresh, freshExp := a.mint(t, acct, "alice", []string{"news"}, 3600)
	var out struct {
		ExpiresAt time.Time `json:"expires_at"`
	}
	b.do(t, call{method: "POST", path: "/v1/sessions/" + s.connected.SessionID + "/token", body: map[string]string{"token": fresh}}).
		want(t, 200).decode(t, &out)
	if !out.ExpiresAt.Equal(freshExp) {
		t.Fatalf("expires_at %s, want the new token's %s", out.ExpiresAt, freshExp)
	}
	if ev := s.next(5 * time.Second); ev.Event != "unsubscribed" || ev.Data != `{"channel":"sports"}` {
		t.Fatalf("got %s %s, want unsubscribed sports", ev.Event, ev.Data)
	}
	b.publish(t, acct, "sports", 1)
	b.publish(t, acct, "news", 2)
	// Nothing of sports, and no second warning: the new token is far from its expiry.
	if got := dataInt(t, decodeMessage(t, s.next(5*time.Second)).Data); got != 2 {
		t.Fatalf("got %d, want 2 on news", got)
	}

	// The next EventSource opens with the new token and resumes the trimmed session.
	last := s.stream.LastID()
	s.Close()
	r := b.resumeFrom(t, fresh, last)
	if r.connected.SessionID != s.connected.SessionID || !slices.Equal(r.connected.Channels, []string{"news"}) {
		t.Fatalf("resumed %s on %v, want %s on [news]", r.connected.SessionID, r.connected.Channels, s.connected.SessionID)
	}
}

func TestTokenRefreshRefusals(t *testing.T) {
	t.Parallel()
	a := startNode(t, nil, nil)
	b := startNode(t, a.Redis, nil)
	acct := a.signup(t, "Acme")
	other := a.signup(t, "Other")
	tok := a.token(t, acct, "alice", []string{"*"}, 0)
	s := a.openStream(t, tok, "news")
	path := "/v1/sessions/" + s.connected.SessionID + "/token"
	for _, tc := range []struct {
		name   string
		path   string
		body   any
		status int
		code   string
	}{
		{"no token", path, `{}`, 400, "invalid_request"},
		{"unknown field", path, map[string]string{"token": tok, "sub": "alice"}, 400, "invalid_request"},
		{"not a token", path, map[string]string{"token": "nope"}, 401, "unauthorized"},
		{"another user's session", path, map[string]string{"token": a.token(t, acct, "bob", []string{"*"}, 0)}, 403, "forbidden"},
		{"another tenant's session", path, map[string]string{"token": a.token(t, other, "alice", []string{"*"}, 0)}, 404, "not_found"},
		{"unknown session", "/v1/sessions/ses_unknown/token", map[string]string{"token": tok}, 404, "not_found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b.do(t, call{method: "POST", path: tc.path, body: tc.body}).want(t, tc.status, tc.code)
		})
	}
	b.do(t, call{method: "POST", path: path, body: "token=x", header: map[string]string{"Content-Type": "text/plain"}}).want(t, 415, "unsupported_media_type")
	// None of them changed the stream.
	a.publish(t, acct, "news", 1)
	if got := dataInt(t, decodeMessage(t, s.next(5*time.Second)).Data); got != 1 {
		t.Fatalf("got %d, want 1", got)
	}
}
