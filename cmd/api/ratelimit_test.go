package main

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/streamgate/streamgate/internal/sseclient"
)

// wantRateHeaders fails unless r carries the X-RateLimit-* headers with limit and remaining,
// and a reset time that is not in the past nor beyond window from now.
func wantRateHeaders(t testing.TB, r reply, limit, remaining int, window time.Duration) {
	t.Helper()
	if got := r.Header.Get("X-RateLimit-Limit"); got != strconv.Itoa(limit) {
		t.Errorf("X-RateLimit-Limit %q, want %d", got, limit)
	}
	if got := r.Header.Get("X-RateLimit-Remaining"); got != strconv.Itoa(remaining) {
		t.Errorf("X-RateLimit-Remaining %q, want %d", got, remaining)
	}
	reset, err := strconv.ParseInt(r.Header.Get("X-RateLimit-Reset"), 10, 64)
	now := time.Now().Unix()
	if err != nil || reset < now-1 || reset > now+int64(window/time.Second)+1 {
		t.Errorf("X-RateLimit-Reset %q, want a Unix time within %s from now (%d)", r.Header.Get("X-RateLimit-Reset"), window, now)
	}
}

// wantRateLimited fails unless r is the contract's 429 with a Retry-After of 1 to max seconds,
// and returns the Retry-After.
func wantRateLimited(t testing.TB, r reply, max int) int {
	t.Helper()
	r.want(t, http.StatusTooManyRequests, "rate_limited")
	retry, err := strconv.Atoi(r.Header.Get("Retry-After"))
	if err != nil || retry < 1 || retry > max {
		t.Fatalf("Retry-After %q, want 1 to %d seconds", r.Header.Get("Retry-After"), max)
	}
	return retry
}

func batchOf(n int, channel string) map[string]any {
	events := make([]map[string]any, n)
	for i := range events {
		events[i] = map[string]any{"channel": channel, "data": i}
	}
	return map[string]any{"events": events}
}

// TestPublishRateLimit: publishing counts against the tenant's publish_per_second, a batch
// counting each of its events; the refusal is the contract's 429 with Retry-After and the
// X-RateLimit-* headers, and Retry-After is honest.
func TestPublishRateLimit(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil, map[string]string{"STREAMGATE_DEFAULT_PUBLISH_PER_SECOND": "5"})
	a := n.signup(t, "Acme")
	other := n.signup(t, "Other")
	pub := call{method: "POST", path: "/v1/channels/chat.x/events", auth: a.APIKey, body: map[string]any{"data": 1}}

	// The one-second window may roll over between two requests; then the pair is tried again.
	var refused reply
	for attempt := 0; ; attempt++ {
		if attempt == 5 {
			t.Fatalf("a publish right after a batch of 5 was never refused")
		}
		batch := n.do(t, call{method: "POST", path: "/v1/events", auth: a.APIKey, body: batchOf(5, "chat.x")})
		if batch.Status == http.StatusTooManyRequests {
			time.Sleep(time.Duration(wantRateLimited(t, batch, 2)) * time.Second)
			continue
		}
		batch.want(t, http.StatusAccepted)
		wantRateHeaders(t, batch, 5, 0, time.Second)
		refused = n.do(t, pub)
		if refused.Status == http.StatusAccepted {
			continue // a new second began between the two
		}
		break
	}
	retry := wantRateLimited(t, refused, 2)
	wantRateHeaders(t, refused, 5, 0, time.Second)
	if msg := refused.Body; !strings.Contains(string(msg), "publish_per_second") {
		t.Errorf("message %s does not name publish_per_second", msg)
	}
	// Another tenant has its own count.
	n.do(t, call{method: "POST", path: "/v1/channels/chat.x/events", auth: other.APIKey, body: map[string]any{"data": 1}}).want(t, http.StatusAccepted)

	time.Sleep(time.Duration(retry) * time.Second)
	ok := n.do(t, pub).want(t, http.StatusAccepted)
	wantRateHeaders(t, ok, 5, 4, time.Second)

	// A batch larger than the whole rate can never pass; it says so.
	big := n.do(t, call{method: "POST", path: "/v1/events", auth: a.APIKey, body: batchOf(6, "chat.x")})
	wantRateLimited(t, big, 2)
	if !strings.Contains(string(big.Body), "at once") {
		t.Errorf("a batch over the whole rate: message %s, want it to say the batch is too large", big.Body)
	}
}

// TestSignupRateLimitPerClient: signup is limited per client address; the operator's admin
// token is not; X-Forwarded-For from an untrusted peer changes nothing (none is trusted by
// default).
func TestSignupRateLimitPerClient(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil, map[string]string{"STREAMGATE_RATE_SIGNUP": "3-M"})
	for i := range 3 {
		r := n.do(t, call{method: "POST", path: "/v1/tenants", body: map[string]string{"name": fmt.Sprint("T", i)}}).want(t, http.StatusCreated)
		wantRateHeaders(t, r, 3, 2-i, time.Minute)
	}
	over := n.do(t, call{method: "POST", path: "/v1/tenants", body: map[string]string{"name": "T3"}})
	wantRateLimited(t, over, 61)
	wantRateHeaders(t, over, 3, 0, time.Minute)

	spoofed := n.do(t, call{method: "POST", path: "/v1/tenants", body: map[string]string{"name": "T4"},
		header: map[string]string{"X-Forwarded-For": "203.0.113.7", "X-Real-IP": "203.0.113.8"}})
	wantRateLimited(t, spoofed, 61)

	n.do(t, call{method: "POST", path: "/v1/tenants", auth: testAdminToken, body: map[string]string{"name": "ByOperator"}}).want(t, http.StatusCreated)
}

// TestTrustedProxies: with the proxy's address trusted, X-Forwarded-For names the client, for
// gin routes and for the stream handler alike; an IPv6 client counts by its /64.
func TestTrustedProxies(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil, map[string]string{
		"STREAMGATE_RATE_SIGNUP":     "1-M",
		"STREAMGATE_RATE_STREAM_IP":  "1-M",
		"STREAMGATE_TRUSTED_PROXIES": "10.0.0.0/8, 127.0.0.1/32",
	})
	signup := func(client string) reply {
		return n.do(t, call{method: "POST", path: "/v1/tenants", body: map[string]string{"name": "T"},
			header: map[string]string{"X-Forwarded-For": client}})
	}
	signup("203.0.113.1").want(t, http.StatusCreated)
	wantRateLimited(t, signup("203.0.113.1"), 61)
	// The rightmost untrusted address is the client: the first hop cannot forge past our proxy.
	wantRateLimited(t, signup("198.51.100.9, 203.0.113.1"), 61)
	signup("203.0.113.2").want(t, http.StatusCreated)
	signup("203.0.113.3, 10.1.2.3").want(t, http.StatusCreated) // through a second, trusted proxy
	signup("2001:db8:1:2::1").want(t, http.StatusCreated)
	wantRateLimited(t, signup("2001:db8:1:2::ffff"), 61) // same /64
	signup("2001:db8:1:3::1").want(t, http.StatusCreated)

	a := n.signup(t, "Acme")
	tok := n.token(t, a, "u", []string{"*"}, 0)
	connect := func(client string) *http.Response {
		t.Helper()
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		st, resp, err := sseclient.Connect(ctx, testClient, streamURL(n, tok, "chat.x"), http.Header{"X-Forwarded-For": {client}})
		if err != nil {
			t.Fatal(err)
		}
		if st != nil {
			t.Cleanup(func() { st.Close() })
		} else {
			t.Cleanup(func() { resp.Body.Close() })
		}
		return resp
	}
	if r := connect("203.0.113.1"); r.StatusCode != http.StatusOK {
		t.Fatalf("first stream of a client: %d", r.StatusCode)
	}
	if r := connect("203.0.113.1"); r.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("second stream of a client within the minute: %d, want 429", r.StatusCode)
	}
	if r := connect("203.0.113.2"); r.StatusCode != http.StatusOK {
		t.Fatalf("first stream of another client: %d", r.StatusCode)
	}
}

// TestStreamConnectRateLimits: stream connects are limited per client address and per tenant,
// refused with the contract's 429 before the stream starts; a stream that opens carries the
// X-RateLimit-* headers.
func TestStreamConnectRateLimits(t *testing.T) {
	t.Parallel()
	t.Run("per client", func(t *testing.T) {
		n := startNode(t, nil, map[string]string{"STREAMGATE_RATE_STREAM_IP": "2-M"})
		a := n.signup(t, "Acme")
		tok := n.token(t, a, "u", []string{"*"}, 0)
		first := n.openStream(t, tok, "chat.x")
		if got := first.stream.Response.Header.Get("X-RateLimit-Remaining"); got != "1" {
			t.Errorf("first stream: X-RateLimit-Remaining %q, want 1", got)
		}
		n.openStream(t, tok, "chat.x")
		over := n.do(t, call{method: "GET", path: "/v1/stream?channel=chat.x&token=" + tok})
		wantRateLimited(t, over, 61)
		wantRateHeaders(t, over, 2, 0, time.Minute)
		// Each node counts the rate per client address on its own (no Redis round trip):
		// another node of the cluster lets the same client in.
		other := startNode(t, n.Redis, map[string]string{"STREAMGATE_RATE_STREAM_IP": "2-M"})
		other.openStream(t, tok, "chat.x")
	})
	t.Run("per tenant", func(t *testing.T) {
		n := startNode(t, nil, map[string]string{"STREAMGATE_RATE_STREAM_TENANT": "2-M"})
		a, b := n.signup(t, "Acme"), n.signup(t, "Beta")
		ta, tb := n.token(t, a, "u", []string{"*"}, 0), n.token(t, b, "u", []string{"*"}, 0)
		first := n.openStream(t, ta, "chat.x")
		if got := first.stream.Response.Header.Get("X-RateLimit-Remaining"); got != "1" {
			t.Errorf("first stream: X-RateLimit-Remaining %q, want 1", got)
		}
		n.openStream(t, ta, "chat.y")
		over := n.do(t, call{method: "GET", path: "/v1/stream?channel=chat.x&token=" + ta})
		wantRateLimited(t, over, 61)
		wantRateHeaders(t, over, 2, 0, time.Minute)
		if !strings.Contains(string(over.Body), "tenant") {
			t.Errorf("message %s does not say it is the tenant's limit", over.Body)
		}
		n.openStream(t, tb, "chat.x") // another tenant is not affected
	})
}

// TestTokenRateLimit: minting tokens is limited per tenant.
func TestTokenRateLimit(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil, map[string]string{"STREAMGATE_RATE_TOKENS": "2-M"})
	a, b := n.signup(t, "Acme"), n.signup(t, "Beta")
	n.token(t, a, "u", nil, 0)
	n.token(t, a, "u", nil, 0)
	over := n.do(t, call{method: "POST", path: "/v1/tokens", auth: a.APIKey, body: map[string]any{"sub": "u"}})
	wantRateLimited(t, over, 61)
	wantRateHeaders(t, over, 2, 0, time.Minute)
	n.token(t, b, "u", nil, 0)
}

// TestRateLimiterWithoutRedis: when Redis cannot count, a limited route answers 503
// unavailable: not 429, not 500, not a panic, and never lets the request through uncounted.
// When Redis returns (empty, without the limiter's scripts), limits work again.
func TestRateLimiterWithoutRedis(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil, nil)
	signup := func() reply {
		return n.do(t, call{method: "POST", path: "/v1/tenants", body: map[string]string{"name": "T"}})
	}

	n.Redis.Stop() // before the limiter ever talked to Redis
	signup().want(t, http.StatusServiceUnavailable, "unavailable")

	n.Redis.Restart()
	n.waitReady()
	a := n.signup(t, "Acme")
	n.publish(t, a, "chat.x", 1)

	n.Redis.Stop()
	signup().want(t, http.StatusServiceUnavailable, "unavailable")
	n.do(t, call{method: "POST", path: "/v1/channels/chat.x/events", auth: a.APIKey, body: map[string]any{"data": 2}}).
		want(t, http.StatusServiceUnavailable, "unavailable")
	n.do(t, call{method: "GET", path: "/healthz"}).want(t, http.StatusOK)
	if logs := n.logs.String(); !strings.Contains(logs, "rate limiter unavailable") {
		t.Errorf("no log line says the rate limiter could not reach Redis")
	} else if strings.Contains(logs, "panic serving request") {
		t.Errorf("the node panicked:\n%s", logs)
	}

	n.Redis.Restart() // a fresh Redis has lost the limiter's scripts
	n.waitReady()
	signup().want(t, http.StatusCreated)
}
