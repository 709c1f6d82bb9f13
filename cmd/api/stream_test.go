package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/streamgate/streamgate/internal/sseclient"
)

func TestSignupPublishReceive(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil, nil)
	a := n.signup(t, "Acme")
	tok := n.token(t, a, "user-42", []string{"chat.*"}, 0)

	resp, err := testClient.Get(streamURL(n, tok, "chat.room"))
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{
		"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no",
	} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("header %s = %q, want %q", k, got, want)
		}
	}
	st := sseclient.NewStream(resp)
	defer st.Close()
	first, err := st.Next()
	if err != nil || first.Retry <= 0 {
		t.Fatalf("stream must start with a retry line, got %+v %v", first, err)
	}
	conn, err := st.NextEvent()
	if err != nil || conn.Event != "connected" || conn.ID == "" {
		t.Fatalf("second event %+v %v, want connected with an id", conn, err)
	}
	var cd connectedData
	if err := json.Unmarshal([]byte(conn.Data), &cd); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(cd.SessionID, "ses_") || cd.NodeID == "" || len(cd.Channels) != 1 || cd.Channels[0] != "chat.room" {
		t.Errorf("connected data %+v", cd)
	}

	var pub struct{ ID string }
	n.do(t, call{method: "POST", path: "/v1/channels/chat.room/events", auth: a.APIKey,
		body: `{"event":"chat.message","data":{"text":"hello"}}`}).want(t, 202).decode(t, &pub)

	ev, err := st.NextEvent()
	if err != nil {
		t.Fatal(err)
	}
	m := decodeMessage(t, ev)
	if m.Channel != "chat.room" || m.Event != "chat.message" || string(m.Data) != `{"text":"hello"}` || m.PublishedAt.IsZero() {
		t.Errorf("message %+v", m)
	}
	if got := eventID(t, ev.ID); got != pub.ID {
		t.Errorf("event id %q, want the publish's id %q", got, pub.ID)
	}
	if !strings.HasPrefix(ev.ID, cd.SessionID+":") {
		t.Errorf("cursor %q does not name the session %s", ev.ID, cd.SessionID)
	}
}

func TestTokenInHeader(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil, nil)
	a := n.signup(t, "Acme")
	tok := n.token(t, a, "u", []string{"*"}, 0)
	s := n.dial(t, streamURL(n, "", "news"), http.Header{"Authorization": {"Bearer " + tok}}, 16)
	n.publish(t, a, "news", 1)
	if m := decodeMessage(t, s.next(5*time.Second)); string(m.Data) != "1" {
		t.Errorf("data %s", m.Data)
	}
}

func TestPerChannelOrderOfRapidPublishes(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil, map[string]string{"STREAMGATE_DEFAULT_PUBLISH_PER_SECOND": "100000"})
	a := n.signup(t, "Acme")
	channels := []string{"a", "b", "c", "d"}
	tok := n.token(t, a, "u", []string{"*"}, 0)
	s := n.openStream(t, tok, channels...)

	const perChannel = 150
	var wg sync.WaitGroup
	for _, ch := range channels {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perChannel {
				n.publish(t, a, ch, i)
			}
		}()
	}
	wg.Wait()

	next := map[string]int{}
	lastID := ""
	for range perChannel * len(channels) {
		ev := s.next(10 * time.Second)
		m := decodeMessage(t, ev)
		got, _ := strconv.Atoi(string(m.Data))
		if got != next[m.Channel] {
			t.Fatalf("channel %s: got event %d, want %d", m.Channel, got, next[m.Channel])
		}
		next[m.Channel]++
		id := eventID(t, ev.ID)
		if lastID != "" && !idLess(lastID, id) {
			t.Fatalf("ids not increasing: %s then %s", lastID, id)
		}
		lastID = id
	}
	s.expectNone(200 * time.Millisecond)
}

// idLess compares "<ms>-<seq>" ids.
func idLess(a, b string) bool {
	am, as, _ := strings.Cut(a, "-")
	bm, bs, _ := strings.Cut(b, "-")
	ami, _ := strconv.ParseInt(am, 10, 64)
	bmi, _ := strconv.ParseInt(bm, 10, 64)
	asi, _ := strconv.ParseInt(as, 10, 64)
	bsi, _ := strconv.ParseInt(bs, 10, 64)
	return ami < bmi || ami == bmi && asi < bsi
}

func TestBatchPublish(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil, nil)
	a := n.signup(t, "Acme")
	tok := n.token(t, a, "u", []string{"x", "y"}, 0)
	s := n.openStream(t, tok, "x", "y")

	var out struct{ IDs []string }
	n.do(t, call{method: "POST", path: "/v1/events", auth: a.APIKey, body: map[string]any{"events": []map[string]any{
		{"channel": "x", "event": "one", "data": 1},
		{"channel": "y", "data": "two"},
		{"channel": "x", "data": []int{3}},
	}}}).want(t, 202).decode(t, &out)
	if len(out.IDs) != 3 {
		t.Fatalf("ids %v, want 3", out.IDs)
	}
	want := []struct{ ch, event, data string }{{"x", "one", "1"}, {"y", "message", `"two"`}, {"x", "message", "[3]"}}
	for i, w := range want {
		ev := s.next(5 * time.Second)
		m := decodeMessage(t, ev)
		if m.Channel != w.ch || m.Event != w.event || string(m.Data) != w.data || eventID(t, ev.ID) != out.IDs[i] {
			t.Errorf("event %d: %+v id %s, want %+v id %s", i, m, ev.ID, w, out.IDs[i])
		}
	}

	// One bad event refuses the whole batch: nothing is published.
	for _, bad := range []map[string]any{
		{"channel": "bad channel", "data": 1},
		{"channel": "job:1", "data": 1},
		{"channel": "x"},
		{"channel": "x", "event": "", "data": 1},
	} {
		r := n.do(t, call{method: "POST", path: "/v1/events", auth: a.APIKey, body: map[string]any{"events": []map[string]any{
			{"channel": "x", "data": "fine"}, bad,
		}}})
		if r.Status != 400 {
			t.Errorf("batch with %v: status %d, want 400", bad, r.Status)
		}
	}
	s.expectNone(300 * time.Millisecond)

	n.do(t, call{method: "POST", path: "/v1/events", auth: a.APIKey, body: `{"events":[]}`}).want(t, 400, "invalid_request")
	many := make([]map[string]any, 101)
	for i := range many {
		many[i] = map[string]any{"channel": "x", "data": i}
	}
	n.do(t, call{method: "POST", path: "/v1/events", auth: a.APIKey, body: map[string]any{"events": many}}).want(t, 400, "invalid_request")
}

func TestIdempotencyKey(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil, nil)
	a := n.signup(t, "Acme")
	s := n.openStream(t, n.token(t, a, "u", []string{"*"}, 0), "orders")

	send := func(key string) string {
		var out struct{ ID string }
		n.do(t, call{method: "POST", path: "/v1/channels/orders/events", auth: a.APIKey,
			header: map[string]string{"Idempotency-Key": key}, body: `{"data":{"n":1}}`}).want(t, 202).decode(t, &out)
		return out.ID
	}
	first := send("order-1")
	if again := send("order-1"); again != first {
		t.Errorf("retry returned %s, want the first id %s", again, first)
	}
	other := send("order-2")
	if other == first {
		t.Errorf("another key returned the same id")
	}
	if got := eventID(t, s.next(5*time.Second).ID); got != first {
		t.Errorf("first delivery %s, want %s", got, first)
	}
	if got := eventID(t, s.next(5*time.Second).ID); got != other {
		t.Errorf("second delivery %s, want %s (the retry must not publish)", got, other)
	}
	s.expectNone(300 * time.Millisecond)

	// A batch retried with its key returns the same ids.
	body := `{"events":[{"channel":"orders","data":1},{"channel":"orders","data":2}]}`
	var b1, b2 struct{ IDs []string }
	n.do(t, call{method: "POST", path: "/v1/events", auth: a.APIKey, header: map[string]string{"Idempotency-Key": "batch-1"}, body: body}).want(t, 202).decode(t, &b1)
	n.do(t, call{method: "POST", path: "/v1/events", auth: a.APIKey, header: map[string]string{"Idempotency-Key": "batch-1"}, body: body}).want(t, 202).decode(t, &b2)
	if fmt.Sprint(b1.IDs) != fmt.Sprint(b2.IDs) {
		t.Errorf("batch retry ids %v, want %v", b2.IDs, b1.IDs)
	}
	s.next(5 * time.Second)
	s.next(5 * time.Second)
	// The same key on another request is refused, not answered with the first call's ids.
	n.do(t, call{method: "POST", path: "/v1/events", auth: a.APIKey, header: map[string]string{"Idempotency-Key": "batch-1"},
		body: `{"events":[{"channel":"orders","data":3}]}`}).want(t, 422, "idempotency_mismatch")
	n.do(t, call{method: "POST", path: "/v1/channels/orders/events", auth: a.APIKey,
		header: map[string]string{"Idempotency-Key": "order-1"}, body: `{"data":{"n":2}}`}).want(t, 422, "idempotency_mismatch")
	s.expectNone(300 * time.Millisecond)

	n.do(t, call{method: "POST", path: "/v1/channels/orders/events", auth: a.APIKey,
		header: map[string]string{"Idempotency-Key": strings.Repeat("k", 201)}, body: `{"data":1}`}).want(t, 400, "invalid_request")
}

func TestTenantIsolation(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil, nil)
	a := n.signup(t, "A")
	b := n.signup(t, "B")
	sa := n.openStream(t, n.token(t, a, "u", []string{"*"}, 0), "chat")
	sb := n.openStream(t, n.token(t, b, "u", []string{"*"}, 0), "chat")

	n.publish(t, b, "chat", "for-b")
	if m := decodeMessage(t, sb.next(5*time.Second)); string(m.Data) != `"for-b"` {
		t.Fatalf("b got %s", m.Data)
	}
	sa.expectNone(300 * time.Millisecond)

	n.publish(t, a, "chat", "for-a")
	if m := decodeMessage(t, sa.next(5*time.Second)); string(m.Data) != `"for-a"` {
		t.Fatalf("a got %s", m.Data)
	}
	sb.expectNone(300 * time.Millisecond)

	// A's key sees only A's tenant.
	var ten struct{ ID string }
	n.do(t, call{method: "GET", path: "/v1/tenant", auth: a.APIKey}).want(t, 200).decode(t, &ten)
	if ten.ID != a.TenantID {
		t.Errorf("tenant %s, want %s", ten.ID, a.TenantID)
	}
	// A cannot revoke B's key.
	n.do(t, call{method: "DELETE", path: "/v1/api-keys/" + b.APIKeyID, auth: a.APIKey}).want(t, 404, "not_found")
	n.do(t, call{method: "DELETE", path: "/v1/signing-keys/" + b.SigningID, auth: a.APIKey}).want(t, 404, "not_found")
}

func TestSlowReaderEvictedWhileFastReaderGetsEverything(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil, map[string]string{
		"STREAMGATE_SESSION_BUFFER":             "8",
		"STREAMGATE_DEFAULT_PUBLISH_PER_SECOND": "100000",
		"STREAMGATE_WRITE_TIMEOUT":              "1m",
	})
	a := n.signup(t, "Acme")
	tok := n.token(t, a, "u", []string{"*"}, 0)
	fast := n.openStream(t, tok, "feed")

	// The slow reader opens the stream and then does not read: its socket buffers fill, its
	// writer blocks, its session buffer fills and publishes are dropped for it alone.
	// Its own client: the whole test, publishing 24 MB included, must fit in its deadline even
	// on a busy machine.
	slowResp, err := (&http.Client{Timeout: 5 * time.Minute}).Get(streamURL(n, tok, "feed"))
	if err != nil {
		t.Fatal(err)
	}
	defer slowResp.Body.Close()

	payload := strings.Repeat("x", 60000)
	const total = 400
	for i := range total {
		n.do(t, call{method: "POST", path: "/v1/channels/feed/events", auth: a.APIKey,
			body: fmt.Sprintf(`{"data":{"i":%d,"pad":%q}}`, i, payload)}).want(t, 202)
	}

	for i := range total {
		ev := fast.next(10 * time.Second)
		var d struct{ I int }
		if err := json.Unmarshal(decodeMessage(t, ev).Data, &d); err != nil || d.I != i {
			t.Fatalf("fast reader: event %d has i=%d (%v)", i, d.I, err)
		}
	}

	// Now the slow reader drains: some messages, a gap, then lagging, then the end.
	st := sseclient.NewStream(slowResp)
	got, sawLagging := 0, false
	for {
		ev, err := st.NextEvent()
		if err != nil {
			break
		}
		switch ev.Event {
		case "message":
			got++
		case "lagging":
			sawLagging = true
		}
	}
	if !sawLagging {
		t.Fatalf("slow reader never got lagging (got %d messages)", got)
	}
	if got >= total {
		t.Fatalf("slow reader got all %d messages; it should have been evicted", got)
	}
	// The figures are the cluster's, at most 2 s old.
	waitFor(t, 5*time.Second, "one eviction and at least 10 drops in /v1/stats", func() bool {
		var stats struct {
			Dropped int `json:"dropped_total"`
			Evicted int `json:"evicted_total"`
		}
		n.do(t, call{method: "GET", path: "/v1/stats", auth: a.APIKey}).want(t, 200).decode(t, &stats)
		return stats.Evicted == 1 && stats.Dropped >= 10
	})
}

func TestTokenExpiryClosesStream(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil, nil)
	a := n.signup(t, "Acme")
	var out struct {
		Token     string
		ExpiresAt time.Time `json:"expires_at"`
	}
	n.do(t, call{method: "POST", path: "/v1/tokens", auth: a.APIKey,
		body: map[string]any{"sub": "u", "channels": []string{"*"}, "ttl_seconds": 2}}).want(t, 201).decode(t, &out)
	s := n.openStream(t, out.Token, "c")
	// A token that expires within the warning time is warned about first.
	if ev := s.next(10 * time.Second); ev.Event != "token_expiring" {
		t.Fatalf("got %s %s, want token_expiring first", ev.Event, ev.Data)
	}
	ev := s.next(10 * time.Second)
	closedAt := time.Now()
	if ev.Event != "auth_failed" || !strings.Contains(ev.Data, "token expired") {
		t.Fatalf("got %s %s, want auth_failed token expired", ev.Event, ev.Data)
	}
	if late := closedAt.Sub(out.ExpiresAt); late > 5*time.Second {
		t.Errorf("closed %s after exp; the contract says within 5 s", late)
	}
	select {
	case err := <-s.done:
		_ = err
	case <-time.After(5 * time.Second):
		t.Fatal("stream stayed open after auth_failed")
	}
}

func TestSigningKeyDeletionClosesSessions(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil, nil)
	a := n.signup(t, "Acme")
	tok := n.token(t, a, "u", []string{"*"}, 0)
	s := n.openStream(t, tok, "c")

	// A second key keeps the tenant able to mint.
	var k2 struct{ ID, Secret string }
	n.do(t, call{method: "POST", path: "/v1/signing-keys", auth: a.APIKey}).want(t, 201).decode(t, &k2)
	n.do(t, call{method: "DELETE", path: "/v1/signing-keys/" + a.SigningID, auth: a.APIKey}).want(t, 204)

	ev := s.next(5 * time.Second)
	if ev.Event != "auth_failed" {
		t.Fatalf("got %s %s, want auth_failed", ev.Event, ev.Data)
	}
	r := n.do(t, call{method: "GET", path: "/v1/stream?channel=c&token=" + tok})
	r.want(t, 401, "unauthorized")

	var list struct {
		SigningKeys []struct{ ID string } `json:"signing_keys"`
	}
	n.do(t, call{method: "GET", path: "/v1/signing-keys", auth: a.APIKey}).want(t, 200).decode(t, &list)
	if len(list.SigningKeys) != 1 || list.SigningKeys[0].ID != k2.ID {
		t.Errorf("signing keys %+v, want only %s", list.SigningKeys, k2.ID)
	}
	// New tokens are signed with the remaining key and work.
	s2 := n.openStream(t, n.token(t, a, "u", []string{"*"}, 0), "c")
	n.publish(t, a, "c", 1)
	decodeMessage(t, s2.next(5*time.Second))
}

func TestShutdownSendsReconnectableDisconnect(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil, nil)
	a := n.signup(t, "Acme")
	s := n.openStream(t, n.token(t, a, "u", []string{"*"}, 0), "c")
	go n.Stop()
	ev := s.next(10 * time.Second)
	var d struct {
		Reason    string
		Reconnect bool
	}
	if err := json.Unmarshal([]byte(ev.Data), &d); err != nil || ev.Event != "disconnect" || !d.Reconnect {
		t.Fatalf("got %s %s, want disconnect with reconnect true", ev.Event, ev.Data)
	}
}

// A graceful stop drains in order: /readyz fails first while the node keeps serving and
// delivering (the load balancer's time to notice), then the listener closes and streams get
// disconnect with reconnect: true.
func TestShutdownDrainsInOrder(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil, map[string]string{"STREAMGATE_DRAIN_DELAY": "8s"})
	a := n.signup(t, "Acme")
	s := n.openStream(t, n.token(t, a, "u", []string{"*"}, 0), "c")
	stopped := make(chan error, 1)
	go func() { stopped <- n.Stop() }()
	waitFor(t, 5*time.Second, "/readyz to fail", func() bool {
		resp, err := testClient.Get(n.URL + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusServiceUnavailable
	})
	// Still serving: a publish is accepted and reaches the open stream.
	n.publish(t, a, "c", 1)
	if got := dataInt(t, decodeMessage(t, s.next(5*time.Second)).Data); got != 1 {
		t.Fatalf("delivered %d during the drain, want 1", got)
	}
	ev := s.next(20 * time.Second)
	var d struct{ Reconnect bool }
	if err := json.Unmarshal([]byte(ev.Data), &d); err != nil || ev.Event != "disconnect" || !d.Reconnect {
		t.Fatalf("got %s %s, want disconnect with reconnect true", ev.Event, ev.Data)
	}
	// By then the listener is closed: a reconnecting client goes elsewhere.
	c := &http.Client{Timeout: 5 * time.Second}
	if resp, err := c.Get(n.URL + "/healthz"); err == nil {
		resp.Body.Close()
		t.Fatalf("a new connection was accepted after the streams were told to go: %d", resp.StatusCode)
	}
	select {
	case <-stopped:
	case <-time.After(30 * time.Second):
		t.Fatal("the node did not stop")
	}
}

// A client that sends bytes after its stream request (EventSource never does) is closed, and
// its session leaves the node.
func TestStreamClientThatSendsIsClosed(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil, nil)
	a := n.signup(t, "Acme")
	tok := n.token(t, a, "u", []string{"*"}, 0)
	conn, err := net.DialTimeout("tcp", strings.TrimPrefix(n.URL, "http://"), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	fmt.Fprintf(conn, "GET /v1/stream?channel=c&token=%s HTTP/1.1\r\nHost: x\r\n\r\n", tok)
	br := bufio.NewReader(conn)
	var head strings.Builder
	for !strings.HasSuffix(head.String(), "event: connected\n") {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("before connected: %v (%q)", err, head.String())
		}
		head.WriteString(strings.TrimPrefix(line, "\r"))
	}
	if _, err := conn.Write([]byte("unexpected bytes from the client")); err != nil {
		t.Fatal(err)
	}
	// EOF, or a reset (the server closed with our bytes unread): either way closed; only a
	// timeout means the server kept it.
	var ne net.Error
	if _, err := io.Copy(io.Discard, br); errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the server kept the connection: %v", err)
	}
	waitFor(t, 5*time.Second, "the session to leave", func() bool {
		var st struct{ Connections int }
		n.do(t, call{method: "GET", path: "/v1/stats", auth: a.APIKey}).want(t, 200).decode(t, &st)
		return st.Connections == 0
	})
}
