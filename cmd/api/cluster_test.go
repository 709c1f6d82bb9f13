package main

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/streamgate/streamgate/internal/redistest"
)

func TestThreeNodesShareStreamsAndSubscriptions(t *testing.T) {
	t.Parallel()
	a := startNode(t, nil, nil)
	b := startNode(t, a.Redis, nil)
	c := startNode(t, a.Redis, nil)
	startWorker(t, a.Redis, "w1")
	startWorker(t, a.Redis, "w2")
	acct := a.signup(t, "Acme")
	tok := a.token(t, acct, "u", []string{"*"}, 0)
	s := a.openStream(t, tok, "news")

	b.publish(t, acct, "news", 1)
	if got := dataInt(t, decodeMessage(t, s.next(5*time.Second)).Data); got != 1 {
		t.Fatalf("stream on A got %d from a publish on B", got)
	}

	// Job updates accepted by B and C, applied by either worker, reach the stream on A.
	jobs := a.openStream(t, tok, "job:export-7")
	b.putJob(t, acct, "export-7", map[string]any{"status": "running", "progress": 30})
	c.putJob(t, acct, "export-7", map[string]any{"progress": 60})
	b.putJob(t, acct, "export-7", map[string]any{"status": "succeeded", "progress": 100})
	for _, want := range []float64{30, 60, 100} {
		if st := jobEvent(t, jobs.next(10*time.Second)); *st.Progress != want {
			t.Fatalf("job progress %v, want %v", *st.Progress, want)
		}
	}

	// A subscription added through C reaches the stream on A.
	c.do(t, call{method: "POST", path: "/v1/sessions/" + s.connected.SessionID + "/subscriptions", auth: tok,
		body: map[string]string{"channel": "sports"}}).want(t, 201)
	ev := s.next(5 * time.Second)
	if ev.Event != "subscribed" || ev.Data != `{"channel":"sports"}` {
		t.Fatalf("got %s %s, want subscribed sports", ev.Event, ev.Data)
	}
	c.publish(t, acct, "sports", 2)
	if got := dataInt(t, decodeMessage(t, s.next(5*time.Second)).Data); got != 2 {
		t.Fatalf("got %d, want 2 on the added channel", got)
	}

	// And removed through B.
	b.do(t, call{method: "DELETE", path: "/v1/sessions/" + s.connected.SessionID + "/subscriptions/news", auth: tok}).want(t, 204)
	if ev := s.next(5 * time.Second); ev.Event != "unsubscribed" {
		t.Fatalf("got %s, want unsubscribed", ev.Event)
	}
	b.publish(t, acct, "news", 3)
	c.publish(t, acct, "sports", 4)
	if got := dataInt(t, decodeMessage(t, s.next(5*time.Second)).Data); got != 4 {
		t.Fatalf("got %d, want 4 (news was unsubscribed)", got)
	}

	// The change survives a resume on yet another node.
	last := s.stream.LastID()
	s.Close()
	b.publish(t, acct, "sports", 5)
	r := c.resumeFrom(t, tok, last)
	if got := r.connected.Channels; len(got) != 1 || got[0] != "sports" {
		t.Fatalf("resumed channels %v, want [sports]", got)
	}
	if got := dataInt(t, decodeMessage(t, r.next(5*time.Second)).Data); got != 5 {
		t.Fatalf("replay got %d, want 5", got)
	}
}

func TestSessionsAPIRefusals(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil, map[string]string{"STREAMGATE_DEFAULT_MAX_SUBSCRIPTIONS_PER_SESSION": "2"})
	acct := n.signup(t, "Acme")
	other := n.signup(t, "Other")
	tok := n.token(t, acct, "alice", []string{"chat.*"}, 0)
	s := n.openStream(t, tok, "chat.a")
	path := "/v1/sessions/" + s.connected.SessionID + "/subscriptions"

	n.do(t, call{method: "POST", path: path, auth: tok, body: `{"channel":"news"}`}).want(t, 403, "forbidden")
	n.do(t, call{method: "POST", path: path, auth: tok, body: `{"channel":"bad name"}`}).want(t, 400, "invalid_request")
	n.do(t, call{method: "POST", path: path, body: `{"channel":"chat.b"}`}).want(t, 401, "unauthorized")
	n.do(t, call{method: "POST", path: "/v1/sessions/ses_unknown/subscriptions", auth: tok, body: `{"channel":"chat.b"}`}).want(t, 404, "not_found")
	bob := n.token(t, acct, "bob", []string{"*"}, 0)
	n.do(t, call{method: "POST", path: path, auth: bob, body: `{"channel":"chat.b"}`}).want(t, 403, "forbidden")
	eve := n.token(t, other, "alice", []string{"*"}, 0)
	n.do(t, call{method: "POST", path: path, auth: eve, body: `{"channel":"chat.b"}`}).want(t, 404, "not_found")

	n.do(t, call{method: "POST", path: path, auth: tok, body: `{"channel":"chat.b"}`}).want(t, 201)
	if ev := s.next(5 * time.Second); ev.Event != "subscribed" {
		t.Fatalf("got %s", ev.Event)
	}
	n.do(t, call{method: "POST", path: path, auth: tok, body: `{"channel":"chat.c"}`}).want(t, 403, "limit_exceeded")
	s.expectNone(200 * time.Millisecond)
}

func TestMaxConnectionsHoldsAcrossNodes(t *testing.T) {
	t.Parallel()
	env := map[string]string{"STREAMGATE_DEFAULT_MAX_CONNECTIONS": "2"}
	a := startNode(t, nil, env)
	b := startNode(t, a.Redis, env)
	acct := a.signup(t, "Acme")
	tok := a.token(t, acct, "u", []string{"*"}, 0)
	a.openStream(t, tok, "x")
	b.openStream(t, tok, "x")
	// The count is exact at once: no heartbeat has to carry the other node's stream first.
	for _, n := range []*node{a, b} {
		n.do(t, call{method: "GET", path: "/v1/stream?channel=x&token=" + tok}).want(t, 403, "limit_exceeded")
	}
}

func TestKilledNodeClientsResumeElsewhereAndStopCounting(t *testing.T) {
	t.Parallel()
	a := startNode(t, nil, nil)
	dead := startProcessNode(t, a.Redis, nil)
	acct := a.signup(t, "Acme")
	tok := a.token(t, acct, "u", []string{"*"}, 0)
	s := dead.openStream(t, tok, "x")
	a.publish(t, acct, "x", 1)
	last := s.next(5 * time.Second).ID
	waitFor(t, 5*time.Second, "the process node's connection to count", func() bool {
		var st struct{ Connections int }
		a.do(t, call{method: "GET", path: "/v1/stats", auth: acct.APIKey}).want(t, 200).decode(t, &st)
		return st.Connections == 1
	})

	dead.Kill()
	a.publish(t, acct, "x", 2)
	r := a.resumeFrom(t, tok, last)
	if r.connected.SessionID != s.connected.SessionID {
		t.Errorf("resumed as %s, want %s", r.connected.SessionID, s.connected.SessionID)
	}
	if got := dataInt(t, decodeMessage(t, r.next(5*time.Second)).Data); got != 2 {
		t.Fatalf("got %d, want the missed 2", got)
	}
	// The dead node's connection stops counting when its heartbeat expires: only the resumed
	// stream remains.
	waitFor(t, 10*time.Second, "the dead node to stop counting", func() bool {
		var st struct{ Connections, Nodes int }
		a.do(t, call{method: "GET", path: "/v1/stats", auth: acct.APIKey}).want(t, 200).decode(t, &st)
		return st.Connections == 1 && st.Nodes == 1
	})
	// A subscription change for a session whose node died lands on the record and holds on
	// resume: here the session already moved to a, which applies it live.
	a.do(t, call{method: "POST", path: "/v1/sessions/" + r.connected.SessionID + "/subscriptions", auth: tok, body: `{"channel":"y"}`}).want(t, 201)
	if ev := r.next(5 * time.Second); ev.Event != "subscribed" {
		t.Fatalf("got %s, want subscribed", ev.Event)
	}
}

func TestRedisRestartStreamsSurviveAndDeliveryResumes(t *testing.T) {
	t.Parallel()
	// An append-only Redis keeps the tenant across the restart.
	rs := redistest.Start(t, "--appendonly", "yes", "--appendfsync", "always")
	n := startNode(t, rs, map[string]string{"STREAMGATE_HEARTBEAT": "500ms"})
	acct := n.signup(t, "Acme")
	s := n.openStream(t, n.token(t, acct, "u", []string{"*"}, 0), "x")

	n.Redis.Stop()
	n.do(t, call{method: "POST", path: "/v1/channels/x/events", auth: acct.APIKey, body: `{"data":1}`}).want(t, 503, "unavailable")
	waitFor(t, 5*time.Second, "/readyz to say 503", func() bool {
		resp, err := testClient.Get(n.URL + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 503
	})
	n.Redis.Restart()
	waitFor(t, 15*time.Second, "/readyz to come back", func() bool {
		resp, err := testClient.Get(n.URL + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	n.publish(t, acct, "x", 2)
	ev := s.next(5 * time.Second)
	var m messageData
	if err := json.Unmarshal([]byte(ev.Data), &m); err != nil || string(m.Data) != "2" {
		t.Fatalf("after the restart the open stream got %s %s, want the new event", ev.Event, ev.Data)
	}
}

// TestSubscriberConnectionLossLosesNothing kills the node's pub/sub connections while events
// are being published: what was published before the node had subscribed again reaches the
// open stream all the same (from history), once and in order.
func TestSubscriberConnectionLossLosesNothing(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil, map[string]string{"STREAMGATE_DEFAULT_PUBLISH_PER_SECOND": "100000"})
	acct := n.signup(t, "Acme")
	s := n.openStream(t, n.token(t, acct, "u", []string{"*"}, 0), "feed")
	rdb := n.Redis.Client()
	for round := range 3 {
		if err := rdb.Do(t.Context(), "CLIENT", "KILL", "TYPE", "pubsub").Err(); err != nil {
			t.Fatal(err)
		}
		for i := range 5 {
			n.publish(t, acct, "feed", round*5+i)
		}
		for i := range 5 {
			want := round*5 + i
			if got := dataInt(t, decodeMessage(t, s.next(10*time.Second)).Data); got != want {
				t.Fatalf("round %d: got %d, want %d", round, got, want)
			}
		}
	}
	s.expectNone(300 * time.Millisecond)
}
