package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// hook is one webhook request a test endpoint received.
type hook struct {
	id, timestamp, signature string
	body                     []byte
}

// hookPayload is the body of a delivery.
type hookPayload struct {
	ID        string          `json:"id"`
	Type      string          `json:"type"`
	CreatedAt time.Time       `json:"created_at"`
	Data      json.RawMessage `json:"data"`
}

// hookReceiver is a tenant's endpoint in a test.
func hookReceiver(t *testing.T) (*httptest.Server, chan hook) {
	t.Helper()
	got := make(chan hook, 100)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		got <- hook{id: r.Header.Get("webhook-id"), timestamp: r.Header.Get("webhook-timestamp"),
			signature: r.Header.Get("webhook-signature"), body: body}
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(srv.Close)
	return srv, got
}

// verifyHook checks a delivery's signature as a tenant would, with crypto/hmac and the
// Standard Webhooks recipe, and decodes its body.
func verifyHook(t *testing.T, secret string, h hook) hookPayload {
	t.Helper()
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		t.Fatalf("secret %q: %v", secret, err)
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(h.id + "." + h.timestamp + "." + string(h.body)))
	want := "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
	if !hmac.Equal([]byte(h.signature), []byte(want)) {
		t.Fatalf("webhook-signature %q does not verify (want %q)", h.signature, want)
	}
	var p hookPayload
	if err := json.Unmarshal(h.body, &p); err != nil {
		t.Fatalf("body %s: %v", h.body, err)
	}
	if p.ID != h.id {
		t.Fatalf("body id %q, webhook-id %q", p.ID, h.id)
	}
	return p
}

// nextHook waits for the next delivery of type typ, failing on a delivery of another type.
func nextHook(t *testing.T, got chan hook, secret, typ string) hookPayload {
	t.Helper()
	select {
	case h := <-got:
		p := verifyHook(t, secret, h)
		if p.Type != typ {
			t.Fatalf("got a %s delivery (%s), want %s", p.Type, p.Data, typ)
		}
		return p
	case <-time.After(20 * time.Second):
		t.Fatalf("no %s delivery within 20s", typ)
		return hookPayload{}
	}
}

// A tenant creates an endpoint; a worker delivers, signed, what happens: a channel occupied, a
// job finished, a session evicted and the channel vacated, and a test event.
func TestWebhooksEndToEnd(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil, map[string]string{"STREAMGATE_ALLOW_PRIVATE_URLS": "true"})
	startWorker(t, n.Redis, "w1", "STREAMGATE_SECRET_KEY="+testSecretKey, "STREAMGATE_ALLOW_PRIVATE_URLS=true")
	a := n.signup(t, "Hooks")
	srv, got := hookReceiver(t)

	var created struct {
		Webhook struct {
			ID          string    `json:"id"`
			URL         string    `json:"url"`
			Events      []string  `json:"events"`
			Description string    `json:"description"`
			CreatedAt   time.Time `json:"created_at"`
			Disabled    bool      `json:"disabled"`
		} `json:"webhook"`
		Secret string `json:"secret"`
	}
	n.do(t, call{method: "POST", path: "/v1/webhooks", auth: a.APIKey, body: map[string]any{
		"url": srv.URL + "/hooks", "description": "backend",
		"events": []string{"channel.occupied", "channel.vacated", "job.finished", "session.evicted"},
	}}).want(t, 201).decode(t, &created)
	wh := created.Webhook
	if !strings.HasPrefix(wh.ID, "wh_") || wh.URL != srv.URL+"/hooks" || len(wh.Events) != 4 || wh.Description != "backend" ||
		wh.CreatedAt.IsZero() || wh.Disabled || !strings.HasPrefix(created.Secret, "whsec_") {
		t.Fatalf("created %+v", created)
	}
	list := n.do(t, call{method: "GET", path: "/v1/webhooks", auth: a.APIKey}).want(t, 200)
	if strings.Contains(string(list.Body), "secret") || !strings.Contains(string(list.Body), wh.ID) {
		t.Fatalf("list %s", list.Body)
	}

	s := n.openStream(t, n.token(t, a, "user-1", []string{"room"}, 0), "room")
	p := nextHook(t, got, created.Secret, "channel.occupied")
	if string(p.Data) != `{"channel":"room"}` {
		t.Errorf("channel.occupied data %s", p.Data)
	}

	n.do(t, call{method: "PUT", path: "/v1/jobs/export-1", auth: a.APIKey, body: map[string]any{
		"status": "succeeded", "progress": 100, "output": map[string]string{"file": "a.csv"}}}).want(t, 202)
	p = nextHook(t, got, created.Secret, "job.finished")
	var finished struct {
		Job json.RawMessage `json:"job"`
	}
	if err := json.Unmarshal(p.Data, &finished); err != nil {
		t.Fatal(err)
	}
	state := n.do(t, call{method: "GET", path: "/v1/jobs/export-1", auth: a.APIKey}).want(t, 200)
	var fromHook, fromGet any
	_ = json.Unmarshal(finished.Job, &fromHook)
	_ = json.Unmarshal(state.Body, &fromGet)
	if b1, b2 := mustMarshal(fromHook), mustMarshal(fromGet); b1 != b2 {
		t.Errorf("job.finished carries %s, GET /v1/jobs says %s", b1, b2)
	}

	n.do(t, call{method: "DELETE", path: "/admin/api/sessions/" + s.connected.SessionID, auth: testAdminToken}).want(t, 204)
	seen := map[string]json.RawMessage{}
	for range 2 {
		select {
		case h := <-got:
			p := verifyHook(t, created.Secret, h)
			seen[p.Type] = p.Data
		case <-time.After(20 * time.Second):
			t.Fatalf("after the eviction got only %v", seen)
		}
	}
	var evicted struct {
		SessionID string `json:"session_id"`
		Sub       string `json:"sub"`
		Reason    string `json:"reason"`
	}
	if err := json.Unmarshal(seen["session.evicted"], &evicted); err != nil || evicted.SessionID != s.connected.SessionID ||
		evicted.Sub != "user-1" || evicted.Reason == "" {
		t.Errorf("session.evicted data %s", seen["session.evicted"])
	}
	if string(seen["channel.vacated"]) != `{"channel":"room"}` {
		t.Errorf("channel.vacated data %s", seen["channel.vacated"])
	}

	var test struct {
		DeliveryID string `json:"delivery_id"`
	}
	n.do(t, call{method: "POST", path: "/v1/webhooks/" + wh.ID + "/test", auth: a.APIKey}).want(t, 202).decode(t, &test)
	p = nextHook(t, got, created.Secret, "webhook.test")
	if string(p.Data) != `{"webhook_id":"`+wh.ID+`"}` {
		t.Errorf("webhook.test data %s", p.Data)
	}
	var history struct {
		Deliveries []struct {
			ID             string     `json:"id"`
			EventType      string     `json:"event_type"`
			Attempt        int        `json:"attempt"`
			Status         string     `json:"status"`
			ResponseStatus *int       `json:"response_status"`
			Error          *string    `json:"error"`
			CreatedAt      time.Time  `json:"created_at"`
			NextAttemptAt  *time.Time `json:"next_attempt_at"`
		} `json:"deliveries"`
	}
	waitFor(t, 10*time.Second, "the test delivery in the history", func() bool {
		n.do(t, call{method: "GET", path: "/v1/webhooks/" + wh.ID + "/deliveries", auth: a.APIKey}).want(t, 200).decode(t, &history)
		return len(history.Deliveries) == 5 && history.Deliveries[0].ID == test.DeliveryID && history.Deliveries[0].Status == "succeeded"
	})
	for _, d := range history.Deliveries {
		if d.Status != "succeeded" || d.Attempt != 1 || d.ResponseStatus == nil || *d.ResponseStatus != 200 || d.Error != nil {
			t.Errorf("history row %+v", d)
		}
	}
}

// The routes refuse what the contract refuses, in its error shape, and change nothing then.
func TestWebhookRoutes(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil, nil)
	a := n.signup(t, "Hooks")
	b := n.signup(t, "Other")
	post := func(body any) reply {
		return n.do(t, call{method: "POST", path: "/v1/webhooks", auth: a.APIKey, body: body})
	}
	post(map[string]any{"url": "http://127.0.0.1:9/x", "events": []string{"job.finished"}}).want(t, 400, "invalid_request")
	post(map[string]any{"url": "http://localhost/x", "events": []string{"job.finished"}}).want(t, 400, "invalid_request")
	post(map[string]any{"url": "https://8.8.8.8/x", "events": []string{}}).want(t, 400, "invalid_request")
	post(map[string]any{"url": "https://8.8.8.8/x", "events": []string{"job.started"}}).want(t, 400, "invalid_request")
	post(map[string]any{"url": "https://8.8.8.8/x"}).want(t, 400, "invalid_request")
	post(map[string]any{"events": []string{"job.finished"}}).want(t, 400, "invalid_request")
	post(map[string]any{"url": "https://8.8.8.8/x", "events": []string{"job.finished"}, "disabled": true}).want(t, 400, "invalid_request")
	n.do(t, call{method: "POST", path: "/v1/webhooks", body: map[string]any{"url": "https://8.8.8.8/x", "events": []string{"job.finished"}}}).want(t, 401, "unauthorized")

	var first struct {
		Webhook struct{ ID string } `json:"webhook"`
	}
	post(map[string]any{"url": "https://8.8.8.8/x", "events": []string{"job.finished"}}).want(t, 201).decode(t, &first)
	id := first.Webhook.ID
	patch := func(auth, id string, body any) reply {
		return n.do(t, call{method: "PATCH", path: "/v1/webhooks/" + id, auth: auth, body: body})
	}
	patch(a.APIKey, id, map[string]any{}).want(t, 400, "invalid_request")
	patch(a.APIKey, id, map[string]any{"url": "http://10.1.2.3/"}).want(t, 400, "invalid_request")
	patch(a.APIKey, id, map[string]any{"events": []string{}}).want(t, 400, "invalid_request")
	patch(b.APIKey, id, map[string]any{"disabled": true}).want(t, 404, "not_found")
	patch(a.APIKey, "wh_unknown", map[string]any{"disabled": true}).want(t, 404, "not_found")
	var changed struct {
		ID       string   `json:"id"`
		URL      string   `json:"url"`
		Events   []string `json:"events"`
		Disabled bool     `json:"disabled"`
	}
	patch(a.APIKey, id, map[string]any{"disabled": true, "events": []string{"session.evicted"}}).want(t, 200).decode(t, &changed)
	if changed.ID != id || !changed.Disabled || changed.URL != "https://8.8.8.8/x" || len(changed.Events) != 1 || changed.Events[0] != "session.evicted" {
		t.Errorf("PATCH answered %+v", changed)
	}
	n.do(t, call{method: "POST", path: "/v1/webhooks/" + id + "/test", auth: a.APIKey}).want(t, 400, "invalid_request")
	n.do(t, call{method: "GET", path: "/v1/webhooks/" + id + "/deliveries?status=failed", auth: a.APIKey}).want(t, 400, "invalid_request")
	n.do(t, call{method: "GET", path: "/v1/webhooks/" + id + "/deliveries", auth: b.APIKey}).want(t, 404, "not_found")
	n.do(t, call{method: "GET", path: "/v1/webhooks/" + id + "/deliveries?status=dead", auth: a.APIKey}).want(t, 200)
	n.do(t, call{method: "POST", path: "/v1/webhooks/" + id + "/rotate-secret", auth: b.APIKey}).want(t, 404, "not_found")
	var rotated struct{ Secret string }
	n.do(t, call{method: "POST", path: "/v1/webhooks/" + id + "/rotate-secret", auth: a.APIKey}).want(t, 200).decode(t, &rotated)
	if !strings.HasPrefix(rotated.Secret, "whsec_") {
		t.Errorf("rotated secret %q", rotated.Secret)
	}

	for i := 1; i < 20; i++ {
		post(map[string]any{"url": "https://8.8.8.8/x", "events": []string{"job.finished"}}).want(t, 201)
	}
	post(map[string]any{"url": "https://8.8.8.8/x", "events": []string{"job.finished"}}).want(t, 403, "limit_exceeded")
	n.do(t, call{method: "DELETE", path: "/v1/webhooks/" + id, auth: b.APIKey}).want(t, 404, "not_found")
	n.do(t, call{method: "DELETE", path: "/v1/webhooks/" + id, auth: a.APIKey}).want(t, 204)
	n.do(t, call{method: "DELETE", path: "/v1/webhooks/" + id, auth: a.APIKey}).want(t, 404, "not_found")
	var list struct {
		Webhooks []json.RawMessage `json:"webhooks"`
	}
	n.do(t, call{method: "GET", path: "/v1/webhooks", auth: a.APIKey}).want(t, 200).decode(t, &list)
	if len(list.Webhooks) != 19 {
		t.Errorf("%d webhooks listed, want 19", len(list.Webhooks))
	}
	n.do(t, call{method: "GET", path: "/v1/webhooks", auth: b.APIKey}).want(t, 200).decode(t, &list)
	if len(list.Webhooks) != 0 {
		t.Errorf("another tenant sees %d webhooks", len(list.Webhooks))
	}
}

// In dev mode (the embedded Redis, the in-process worker) webhooks work as well.
func TestWebhooksInDevMode(t *testing.T) {
	n := bootNode(t, nil, map[string]string{"STREAMGATE_ADDR": "127.0.0.1:0", "STREAMGATE_ALLOW_PRIVATE_URLS": "true", "STREAMGATE_DEMO": "off"})
	a := n.signup(t, "Acme")
	srv, got := hookReceiver(t)
	var created struct {
		Secret string `json:"secret"`
	}
	n.do(t, call{method: "POST", path: "/v1/webhooks", auth: a.APIKey, body: map[string]any{
		"url": srv.URL, "events": []string{"job.finished", "channel.occupied"}}}).want(t, 201).decode(t, &created)
	n.openStream(t, n.token(t, a, "u", []string{"room"}, 0), "room")
	nextHook(t, got, created.Secret, "channel.occupied")
	n.do(t, call{method: "PUT", path: "/v1/jobs/j1", auth: a.APIKey, body: map[string]any{"status": "failed", "error": "disk full"}}).want(t, 202)
	p := nextHook(t, got, created.Secret, "job.finished")
	if !strings.Contains(string(p.Data), `"disk full"`) {
		t.Errorf("job.finished data %s", p.Data)
	}
}
