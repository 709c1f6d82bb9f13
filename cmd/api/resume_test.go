package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/streamgate/streamgate/internal/keys"
)

// resumeFrom reconnects with Last-Event-ID, as EventSource does by itself.
func (n *node) resumeFrom(t testing.TB, token, cursor string, channels ...string) *subscriber {
	t.Helper()
	return n.dial(t, streamURL(n, token, channels...), http.Header{"Last-Event-ID": {cursor}}, 1<<16)
}

func dataInt(t testing.TB, raw json.RawMessage) int {
	t.Helper()
	n, err := strconv.Atoi(string(raw))
	if err != nil {
		t.Fatalf("data %s is not a number", raw)
	}
	return n
}

func TestResumeOnAnotherNodeReplaysExactlyTheMissedEvents(t *testing.T) {
	t.Parallel()
	a1 := startNode(t, nil, nil)
	a2 := startNode(t, a1.Redis, nil)
	acct := a1.signup(t, "Acme")
	tok := a1.token(t, acct, "u", []string{"*"}, 0)

	s := a1.openStream(t, tok, "x", "y")
	a1.publish(t, acct, "x", 1)
	a2.publish(t, acct, "y", 2) // published on another node: delivered everywhere
	var last string
	for want := 1; want <= 2; want++ {
		ev := s.next(5 * time.Second)
		if got := dataInt(t, decodeMessage(t, ev).Data); got != want {
			t.Fatalf("got %d, want %d", got, want)
		}
		last = ev.ID
	}
	s.Close()

	for i := 3; i <= 6; i++ {
		a1.publish(t, acct, []string{"x", "y"}[i%2], i)
	}
	a1.publish(t, acct, "z", 99) // not subscribed: never replayed

	r := a2.resumeFrom(t, tok, last, "x") // the URL's channels do not matter on resume
	if r.connected.SessionID != s.connected.SessionID {
		t.Errorf("resumed session %s, want the same session %s", r.connected.SessionID, s.connected.SessionID)
	}
	if fmt.Sprint(r.connected.Channels) != "[x y]" {
		t.Errorf("resumed channels %v, want the session's own [x y]", r.connected.Channels)
	}
	for want := 3; want <= 6; want++ {
		if got := dataInt(t, decodeMessage(t, r.next(5*time.Second)).Data); got != want {
			t.Fatalf("replay: got %d, want %d", got, want)
		}
	}
	a2.publish(t, acct, "y", 7)
	if got := dataInt(t, decodeMessage(t, r.next(5*time.Second)).Data); got != 7 {
		t.Fatalf("live after replay: got %d, want 7", got)
	}
	r.expectNone(300 * time.Millisecond)
}

// TestResumeSeamUnderSteadyPublishing reconnects again and again while events flow and checks
// that, across all connections, every event arrived exactly once and in order.
func TestResumeSeamUnderSteadyPublishing(t *testing.T) {
	t.Parallel()
	a1 := startNode(t, nil, map[string]string{"STREAMGATE_DEFAULT_PUBLISH_PER_SECOND": "100000"})
	a2 := startNode(t, a1.Redis, map[string]string{"STREAMGATE_DEFAULT_PUBLISH_PER_SECOND": "100000"})
	nodes := []*node{a1, a2}
	acct := a1.signup(t, "Acme")
	tok := a1.token(t, acct, "u", []string{"*"}, 0)

	const total = 600
	sub := a1.openStream(t, tok, "a", "b")
	var published atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range total {
			if ctx.Err() != nil {
				return
			}
			nodes[i%2].publish(t, acct, []string{"a", "b"}[i%2], i)
			published.Add(1)
			time.Sleep(2 * time.Millisecond)
		}
	}()

	next := 0
	cursor := ""
	for reconnects := 0; next < total; {
		// Read a few events, then drop the connection mid-flow and resume on the other node.
		for k := 0; k < 40 && next < total; k++ {
			ev := sub.next(10 * time.Second)
			got := dataInt(t, decodeMessage(t, ev).Data)
			if got != next {
				t.Fatalf("after %d reconnects: got event %d, want %d (gap or duplicate at the seam)", reconnects, got, next)
			}
			next++
			cursor = ev.ID
		}
		if next < total {
			sub.Close()
			reconnects++
			sub = nodes[reconnects%2].resumeFrom(t, tok, cursor)
		}
	}
	wg.Wait()
	sub.expectNone(300 * time.Millisecond)
}

func TestResumeBeyondHistoryWindowResets(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil, map[string]string{"STREAMGATE_DEFAULT_HISTORY_EVENTS": "5"})
	acct := n.signup(t, "Acme")
	tok := n.token(t, acct, "u", []string{"*"}, 0)
	s := n.openStream(t, tok, "x")
	n.publish(t, acct, "x", 0)
	last := s.next(5 * time.Second).ID
	s.Close()
	for i := 1; i <= 20; i++ {
		n.publish(t, acct, "x", i)
	}
	r := n.resumeFrom(t, tok, last, "x", "w")
	ev := r.next(5 * time.Second)
	var reset struct {
		Reason   string
		Channels []string
	}
	if ev.Event != "reset" || json.Unmarshal([]byte(ev.Data), &reset) != nil || reset.Reason == "" {
		t.Fatalf("first event %s %s, want reset", ev.Event, ev.Data)
	}
	if fmt.Sprint(reset.Channels) != "[w x]" {
		t.Errorf("reset channels %v, want the request's [w x]", reset.Channels)
	}
	// No partial replay: the client refetches state; then live events flow.
	n.publish(t, acct, "w", 21)
	if got := dataInt(t, decodeMessage(t, r.next(5*time.Second)).Data); got != 21 {
		t.Fatalf("after reset got %d, want the live 21", got)
	}
}

func TestResumeAfterEpochChangeResets(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil, nil)
	acct := n.signup(t, "Acme")
	tok := n.token(t, acct, "u", []string{"*"}, 0)
	s := n.openStream(t, tok, "x")
	n.publish(t, acct, "x", 0)
	last := s.next(5 * time.Second).ID
	s.Close()
	// Redis lost the tenant's counter: old cursors cannot be trusted.
	n.Redis.Client().Del(t.Context(), keys.Sequence(acct.TenantID))
	r := n.resumeFrom(t, tok, last, "x")
	if ev := r.next(5 * time.Second); ev.Event != "reset" {
		t.Fatalf("got %s %s, want reset", ev.Event, ev.Data)
	}
}

func TestResumeRefusesForeignOrGarbageCursors(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil, nil)
	a := n.signup(t, "A")
	b := n.signup(t, "B")
	alice := n.token(t, a, "alice", []string{"*"}, 0)
	mallory := n.token(t, a, "mallory", []string{"*"}, 0)
	eve := n.token(t, b, "eve", []string{"*"}, 0)

	s := n.openStream(t, alice, "secret")
	n.publish(t, a, "secret", 1)
	cursor := s.next(5 * time.Second).ID

	for _, garbage := range []string{"nope", "ses_x:zz:1-1", "ses_x:0000000g:1-1", "ses_x:00000000:abc", "ses_x:00000000:1-1\nevent: x", string(make([]byte, 500))} {
		req, _ := http.NewRequest("GET", streamURL(n, alice, "secret"), nil)
		req.Header.Set("Last-Event-ID", garbage)
		resp, err := testClient.Do(req)
		if err != nil {
			continue // the client refused to send it: fine
		}
		resp.Body.Close()
		if resp.StatusCode != 400 {
			t.Errorf("Last-Event-ID %q: status %d, want 400", garbage, resp.StatusCode)
		}
	}
	// Another user of the same tenant cannot take the session over.
	n.do(t, call{method: "GET", path: "/v1/stream?channel=secret&token=" + mallory + "&last_event_id=" + cursor}).want(t, 403, "forbidden")
	// Another tenant does not even see it: it gets a fresh session of its own.
	r := n.dial(t, streamURL(n, eve, "secret"), http.Header{"Last-Event-ID": {cursor}}, 16)
	if r.connected.SessionID == s.connected.SessionID {
		t.Fatal("another tenant resumed a foreign session")
	}
	if ev := r.next(5 * time.Second); ev.Event != "reset" {
		t.Fatalf("got %s, want reset", ev.Event)
	}
	r.expectNone(200 * time.Millisecond)
}
