package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

type presenceView struct {
	Channel string `json:"channel"`
	Count   int    `json:"count"`
	Members []struct {
		Sub      string          `json:"sub"`
		Info     json.RawMessage `json:"info"`
		Sessions int             `json:"sessions"`
		JoinedAt time.Time       `json:"joined_at"`
	} `json:"members"`
	Truncated bool `json:"truncated"`
}

func (p presenceView) String() string {
	var out []string
	for _, m := range p.Members {
		out = append(out, fmt.Sprintf("%s×%d %s", m.Sub, m.Sessions, m.Info))
	}
	return fmt.Sprintf("%d: %s", p.Count, strings.Join(out, ", "))
}

func (n *node) presence(t testing.TB, auth, channel string) presenceView {
	t.Helper()
	var p presenceView
	n.do(t, call{method: "GET", path: "/v1/channels/" + channel + "/presence", auth: auth}).want(t, 200).decode(t, &p)
	if p.Channel != channel || p.Members == nil {
		t.Fatalf("presence of %s: %+v", channel, p)
	}
	return p
}

// keepPresence sets the tenant's presence channels and waits until every node applies them.
func keepPresence(t testing.TB, a account, patterns []string, nodes ...*node) {
	t.Helper()
	body := map[string]any{"presence_channels": patterns}
	want, _ := json.Marshal(body)
	got := nodes[0].do(t, call{method: "PUT", path: "/v1/settings", auth: a.APIKey, body: body}).want(t, 200)
	if strings.TrimSpace(string(got.Body)) != string(want) {
		t.Fatalf("PUT /v1/settings answered %s, want %s", got.Body, want)
	}
	for _, n := range nodes {
		waitFor(t, 5*time.Second, "the settings on every node", func() bool {
			r := n.do(t, call{method: "GET", path: "/v1/settings", auth: a.APIKey}).want(t, 200)
			return strings.TrimSpace(string(r.Body)) == string(want)
		})
	}
}

// infoToken signs a token with an info claim, as a tenant's backend would.
func infoToken(a account, sub, info string, channels ...string) string {
	claims := map[string]any{"sub": sub, "exp": time.Now().Add(time.Hour).Unix(), "channels": channels}
	if info != "" {
		claims["info"] = json.RawMessage(info)
	}
	return hmacToken("HS256", a.SigningID, a.SigningKey, claims)
}

// presenceEvent reads the next event, which must be a presence event without an id.
func presenceEvent(t testing.TB, s *subscriber) string {
	t.Helper()
	ev := s.next(10 * time.Second)
	var p struct {
		Channel, Action, Sub string
		Info                 json.RawMessage
	}
	if ev.Event != "presence" || ev.ID != "" || json.Unmarshal([]byte(ev.Data), &p) != nil {
		t.Fatalf("got %s %q (id %q), want a presence event without id", ev.Event, ev.Data, ev.ID)
	}
	return fmt.Sprintf("%s %s %s %s", p.Action, p.Sub, p.Channel, p.Info)
}

func TestPresenceAcrossNodes(t *testing.T) {
	t.Parallel()
	a := startNode(t, nil, nil)
	b := startNode(t, a.Redis, nil)
	acct := a.signup(t, "Acme")
	keepPresence(t, acct, []string{"room.*"}, a, b)

	bob := b.openStream(t, infoToken(acct, "bob", "", "room.*"), "room.1")
	if got := presenceEvent(t, bob); got != "join bob room.1 null" {
		t.Fatalf("got %s, want bob's own join", got)
	}
	adaToken := infoToken(acct, "ada", `{"name": "Ada", "avatar": "https://cdn.example/ada.png"}`, "room.*")
	tab1 := a.openStream(t, adaToken, "room.1")
	tab2 := a.openStream(t, adaToken, "room.1") // a second tab: no change for anyone
	// A join on node A is seen on node B, once.
	if got := presenceEvent(t, bob); got != `join ada room.1 {"name":"Ada","avatar":"https://cdn.example/ada.png"}` {
		t.Fatalf("got %s, want ada's join with her info", got)
	}
	want := `2: bob×1 null, ada×2 {"name":"Ada","avatar":"https://cdn.example/ada.png"}`
	if got := a.presence(t, acct.APIKey, "room.1"); got.String() != want || got.Truncated {
		t.Fatalf("presence %s (truncated %v), want %s", got, got.Truncated, want)
	}
	// An end user reads it with a token that grants the channel, on any node.
	if got := b.presence(t, adaToken, "room.1").String(); got != want {
		t.Fatalf("presence for ada %s", got)
	}
	var st struct {
		PresenceChannels int `json:"presence_channels"`
	}
	b.do(t, call{method: "GET", path: "/v1/stats", auth: acct.APIKey}).want(t, 200).decode(t, &st)
	if st.PresenceChannels != 1 {
		t.Fatalf("stats presence_channels %d, want 1", st.PresenceChannels)
	}

	tab1.Close()
	waitFor(t, 5*time.Second, "ada's first tab to be gone", func() bool {
		return strings.Contains(b.presence(t, acct.APIKey, "room.1").String(), "ada×1")
	})
	tab2.Close()
	if got := presenceEvent(t, bob); got != "leave ada room.1 "+`{"name":"Ada","avatar":"https://cdn.example/ada.png"}` {
		t.Fatalf("got %s, want ada's leave once her last tab closed", got)
	}
	if got := a.presence(t, acct.APIKey, "room.1").String(); got != "1: bob×1 null" {
		t.Fatalf("presence %s", got)
	}
	// A channel that keeps no presence reads as empty.
	b.openStream(t, infoToken(acct, "bob", "", "*"), "lobby")
	if got := a.presence(t, acct.APIKey, "lobby").String(); got != "0: " {
		t.Fatalf("lobby %s", got)
	}
}

// A node that dies without a word: its members leave within the presence lease, told by a
// live node.
func TestPresenceOfADeadNodeExpires(t *testing.T) {
	t.Parallel()
	env := map[string]string{"STREAMGATE_PRESENCE_LEASE": "1s"}
	a := startNode(t, nil, env)
	dead := startProcessNode(t, a.Redis, env)
	acct := a.signup(t, "Acme")
	keepPresence(t, acct, []string{"room"}, a, dead.node)

	watcher := a.openStream(t, infoToken(acct, "bob", "", "room"), "room")
	presenceEvent(t, watcher) // bob's own join
	dead.openStream(t, infoToken(acct, "ada", "", "room"), "room")
	if got := presenceEvent(t, watcher); got != "join ada room null" {
		t.Fatalf("got %s, want ada's join", got)
	}
	dead.Kill()
	if got := presenceEvent(t, watcher); got != "leave ada room null" {
		t.Fatalf("got %s, want ada's leave after her node died", got)
	}
	if got := a.presence(t, acct.APIKey, "room").String(); got != "1: bob×1 null" {
		t.Fatalf("presence %s", got)
	}
}

func TestSettingsAndPresenceRefusals(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil, nil)
	acct := n.signup(t, "Acme")
	tok := n.token(t, acct, "alice", []string{"room.*"}, 0)

	var got struct {
		PresenceChannels []string `json:"presence_channels"`
	}
	n.do(t, call{method: "GET", path: "/v1/settings", auth: acct.APIKey}).want(t, 200).decode(t, &got)
	if got.PresenceChannels == nil || len(got.PresenceChannels) != 0 {
		t.Fatalf("default settings %+v, want presence_channels []", got)
	}
	tooMany := make([]string, 101)
	for i := range tooMany {
		tooMany[i] = fmt.Sprintf("c%d", i)
	}
	for _, tc := range []struct {
		name   string
		c      call
		status int
		code   string
	}{
		{"101 patterns", call{method: "PUT", path: "/v1/settings", auth: acct.APIKey, body: map[string]any{"presence_channels": tooMany}}, 400, "invalid_request"},
		{"a bad pattern", call{method: "PUT", path: "/v1/settings", auth: acct.APIKey, body: `{"presence_channels":["bad name"]}`}, 400, "invalid_request"},
		{"not a list", call{method: "PUT", path: "/v1/settings", auth: acct.APIKey, body: `{"presence_channels":"room.*"}`}, 400, "invalid_request"},
		{"an unknown field", call{method: "PUT", path: "/v1/settings", auth: acct.APIKey, body: `{"presence":[]}`}, 400, "invalid_request"},
		{"no API key", call{method: "PUT", path: "/v1/settings", body: `{"presence_channels":[]}`}, 401, "unauthorized"},
		{"an end-user token", call{method: "GET", path: "/v1/settings", auth: tok}, 401, "unauthorized"},
		{"presence without credential", call{method: "GET", path: "/v1/channels/room.1/presence"}, 401, "unauthorized"},
		{"presence with a bad token", call{method: "GET", path: "/v1/channels/room.1/presence", auth: "eyJ.x.y"}, 401, "unauthorized"},
		{"presence of a channel not granted", call{method: "GET", path: "/v1/channels/lobby/presence", auth: tok}, 403, "forbidden"},
		{"presence of a bad channel", call{method: "GET", path: "/v1/channels/bad%20name/presence", auth: acct.APIKey}, 400, "invalid_request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n.do(t, tc.c).want(t, tc.status, tc.code)
		})
	}
	// Nothing refused changed the settings.
	n.do(t, call{method: "GET", path: "/v1/settings", auth: acct.APIKey}).want(t, 200).decode(t, &got)
	if len(got.PresenceChannels) != 0 {
		t.Fatalf("settings after refusals: %+v", got)
	}
	// An info claim over 1 KiB makes the token invalid.
	big := infoToken(acct, "alice", `{"bio":"`+strings.Repeat("x", 1100)+`"}`, "room.*")
	n.do(t, call{method: "GET", path: "/v1/stream?channel=room.1&token=" + big}).want(t, http.StatusUnauthorized, "unauthorized")
}
