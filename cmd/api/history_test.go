package main

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"
)

type historyPage struct {
	Events []struct {
		ID          string          `json:"id"`
		Event       string          `json:"event"`
		Data        json.RawMessage `json:"data"`
		PublishedAt time.Time       `json:"published_at"`
	} `json:"events"`
	Next      string `json:"next"`
	Truncated bool   `json:"truncated"`
}

// readHistory reads a channel's history with the credential auth and returns the page.
func (n *node) readHistory(t testing.TB, auth, channel string, query url.Values) historyPage {
	t.Helper()
	var p historyPage
	n.do(t, call{method: "GET", path: "/v1/channels/" + channel + "/events?" + query.Encode(), auth: auth}).want(t, 200).decode(t, &p)
	return p
}

func (p historyPage) data(t testing.TB) string {
	t.Helper()
	var out []string
	for _, e := range p.Events {
		if e.Event != "message" || e.PublishedAt.IsZero() || e.ID == "" {
			t.Fatalf("event %+v lacks its name, id or time", e)
		}
		out = append(out, string(e.Data))
	}
	return strings.Join(out, ",")
}

func TestHistoryReadsPageForBackendsAndEndUsers(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil, nil)
	acct := n.signup(t, "Acme")
	tok := n.token(t, acct, "alice", []string{"feed", "job:*"}, 0)
	s := n.openStream(t, tok, "feed")
	var ids []string
	for i := range 5 {
		ids = append(ids, n.publish(t, acct, "feed", i))
	}
	n.publish(t, acct, "other", 99)
	cursor := s.next(5 * time.Second).ID // the stream's cursor after event 0

	all := n.readHistory(t, acct.APIKey, "feed", nil)
	if got := all.data(t); got != "0,1,2,3,4" || all.Next != ids[4] || all.Truncated {
		t.Fatalf("whole window: [%s] next %s truncated %v; want [0,1,2,3,4] next %s", got, all.Next, all.Truncated, ids[4])
	}
	// Paging by next, as an end user whose token grants the channel.
	p1 := n.readHistory(t, tok, "feed", url.Values{"limit": {"2"}})
	p2 := n.readHistory(t, tok, "feed", url.Values{"limit": {"2"}, "after": {p1.Next}})
	p3 := n.readHistory(t, tok, "feed", url.Values{"limit": {"2"}, "after": {p2.Next}})
	p4 := n.readHistory(t, tok, "feed", url.Values{"limit": {"2"}, "after": {p3.Next}})
	if got := []string{p1.data(t), p2.data(t), p3.data(t), p4.data(t)}; strings.Join(got, "|") != "0,1|2,3|4|" {
		t.Fatalf("pages %q, want 0,1|2,3|4|", got)
	}
	if p4.Next != p3.Next || p4.Truncated {
		t.Fatalf("an empty page: next %q truncated %v, want next %q unchanged", p4.Next, p4.Truncated, p3.Next)
	}
	// A stream's cursor is a position too.
	if got := n.readHistory(t, acct.APIKey, "feed", url.Values{"after": {cursor}}).data(t); got != "1,2,3,4" {
		t.Fatalf("after the stream's cursor: [%s], want [1,2,3,4]", got)
	}
	// Another tenant's channel of the same name is another channel.
	other := n.signup(t, "Other")
	if got := n.readHistory(t, other.APIKey, "feed", nil); len(got.Events) != 0 {
		t.Fatalf("another tenant reads %d events of feed", len(got.Events))
	}
}

func TestHistoryReadTruncatedBeyondTheWindow(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil, map[string]string{"STREAMGATE_DEFAULT_HISTORY_EVENTS": "3"})
	acct := n.signup(t, "Acme")
	var ids []string
	for i := range 6 {
		ids = append(ids, n.publish(t, acct, "feed", i))
	}
	for _, tc := range []struct {
		after     string
		want      string
		truncated bool
	}{
		{"", "3,4,5", false},
		{ids[0], "3,4,5", true},  // events 1 and 2 are gone
		{ids[2], "3,4,5", false}, // nothing after it is gone
		{ids[4], "5", false},
		{"ses_x:0badbeef:" + ids[4], "3,4,5", true}, // a cursor of another epoch
	} {
		p := n.readHistory(t, acct.APIKey, "feed", url.Values{"after": {tc.after}})
		if got := p.data(t); got != tc.want || p.Truncated != tc.truncated {
			t.Errorf("after %q: [%s] truncated %v, want [%s] truncated %v", tc.after, got, p.Truncated, tc.want, tc.truncated)
		}
	}
}

func TestHistoryReadRefusals(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil, nil)
	acct := n.signup(t, "Acme")
	tok := n.token(t, acct, "alice", []string{"chat.*"}, 0)
	n.publish(t, acct, "chat.a", 1)
	for _, tc := range []struct {
		path, auth string
		status     int
		code       string
	}{
		{"/v1/channels/chat.a/events", "", 401, "unauthorized"},
		{"/v1/channels/chat.a/events", "sgk_unknown", 401, "unauthorized"},
		{"/v1/channels/chat.a/events", "not-a-jwt", 401, "unauthorized"},
		{"/v1/channels/news/events", tok, 403, "forbidden"},
		{"/v1/channels/chat.a/events?limit=0", acct.APIKey, 400, "invalid_request"},
		{"/v1/channels/chat.a/events?limit=1001", acct.APIKey, 400, "invalid_request"},
		{"/v1/channels/chat.a/events?limit=ten", acct.APIKey, 400, "invalid_request"},
		{"/v1/channels/chat.a/events?after=yesterday", tok, 400, "invalid_request"},
		{"/v1/channels/bad%20name/events", acct.APIKey, 400, "invalid_request"},
		{"/v1/channels/job:42/events", acct.APIKey, 400, "reserved_channel"},
		{"/v1/channels/workflow:42/events", acct.APIKey, 400, "reserved_channel"},
	} {
		n.do(t, call{method: "GET", path: tc.path, auth: tc.auth}).want(t, tc.status, tc.code)
	}
	n.do(t, call{method: "GET", path: "/v1/channels/chat.a/events?limit=1000", auth: tok}).want(t, 200)
}
