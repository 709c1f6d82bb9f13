package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/streamgate/streamgate/internal/keys"
	"github.com/streamgate/streamgate/internal/tenant"
)

// rateTenant signs up a tenant with a publish_per_second of limit.
func (s *testServer) rateTenant(t testing.TB, limit int) account {
	t.Helper()
	a := s.signup(t, "Limited")
	if _, err := s.tenants.Update(t.Context(), a.TenantID, tenant.LimitsPatch{PublishPerSecond: &limit}, nil); err != nil {
		t.Fatal(err)
	}
	return a
}

// fillWindow makes the tenant's publish_per_second window hold count, for a minute: the window
// then cannot roll over within the test, as a one-second window would between two requests.
func (s *testServer) fillWindow(t testing.TB, tenantID string, count int) {
	t.Helper()
	if err := s.rdb.Set(t.Context(), keys.RateLimitPublishFull(tenantID), count, time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
}

func publishCall(a account, body, idem string) call {
	c := call{method: "POST", path: "/v1/channels/chat.x/events", auth: a.APIKey, body: body}
	if idem != "" {
		c.header = http.Header{"Idempotency-Key": {idem}}
	}
	return c
}

// wantRate fails unless r carries the X-RateLimit-* headers of limit and remaining, with a reset
// within the minute that fillWindow gives the window.
func wantRate(t testing.TB, r reply, limit, remaining int) {
	t.Helper()
	if got := r.Header.Get("X-RateLimit-Limit"); got != strconv.Itoa(limit) {
		t.Errorf("X-RateLimit-Limit %q, want %d", got, limit)
	}
	if got := r.Header.Get("X-RateLimit-Remaining"); got != strconv.Itoa(remaining) {
		t.Errorf("X-RateLimit-Remaining %q, want %d", got, remaining)
	}
	reset, err := strconv.ParseInt(r.Header.Get("X-RateLimit-Reset"), 10, 64)
	if now := time.Now().Unix(); err != nil || reset < now || reset > now+61 {
		t.Errorf("X-RateLimit-Reset %q, want within the minute from %d", r.Header.Get("X-RateLimit-Reset"), now)
	}
}

// TestPublishOverRate: past publish_per_second, a publish, a batch and a job update are refused
// with the contract's 429, Retry-After and the X-RateLimit-* headers, and store nothing; the
// publish script and the job route count the same window.
func TestPublishOverRate(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, nil)
	a := s.rateTenant(t, 2)

	ok := s.do(t, publishCall(a, `{"data":1}`, "")).want(t, http.StatusAccepted)
	if body := string(ok.Body); !strings.HasPrefix(body, `{"id":"`) || !strings.HasSuffix(body, "\"}\n") {
		t.Errorf("202 body %q, want {\"id\":\"…\"} and a newline", body)
	}
	if ok.Header.Get("X-RateLimit-Limit") != "2" || ok.Header.Get("X-RateLimit-Remaining") != "1" {
		t.Errorf("a publish within the rate: headers %v", ok.Header)
	}

	s.fillWindow(t, a.TenantID, 2)
	_, before := s.published(t, a.TenantID, "chat.x")
	over := s.do(t, publishCall(a, `{"data":2}`, "")).want(t, http.StatusTooManyRequests, CodeRateLimited)
	wantRate(t, over, 2, 0)
	if retry, err := strconv.Atoi(over.Header.Get("Retry-After")); err != nil || retry < 1 || retry > 62 {
		t.Errorf("Retry-After %q, want 1 to 62 s", over.Header.Get("Retry-After"))
	}
	if msg := errorShape(t, over.Body).Message; !strings.Contains(msg, "publish_per_second (2 per second); retry in") {
		t.Errorf("message %q", msg)
	}
	batch := s.do(t, call{method: "POST", path: "/v1/events", auth: a.APIKey, body: `{"events":[{"channel":"chat.x","data":3}]}`})
	batch.want(t, http.StatusTooManyRequests, CodeRateLimited)
	wantRate(t, batch, 2, 0)
	if entries, total := s.published(t, a.TenantID, "chat.x"); entries != 1 || total != before {
		t.Errorf("%d events in history, %d published (before the refusals: 1, %d): a refused publish stored something", entries, total, before)
	}
	job := s.do(t, call{method: "PUT", path: "/v1/jobs/j1", auth: a.APIKey, body: `{"status":"running"}`})
	job.want(t, http.StatusTooManyRequests, CodeRateLimited)
	if n, err := s.rdb.Get(t.Context(), keys.RateLimitPublishFull(a.TenantID)).Int(); err != nil || n != 5 {
		t.Errorf("window count %d (%v), want 5: refused publishes and updates count", n, err)
	}
}

// TestPublishRepeatNotRefused: a publish repeated with its Idempotency-Key publishes nothing, so
// the rate neither counts nor refuses it, even with the window full; a new publish is refused.
func TestPublishRepeatNotRefused(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, nil)
	a := s.rateTenant(t, 1)
	first := s.do(t, publishCall(a, `{"data":1}`, "k1")).want(t, http.StatusAccepted)

	s.fillWindow(t, a.TenantID, 5)
	again := s.do(t, publishCall(a, `{"data":1}`, "k1")).want(t, http.StatusAccepted)
	if string(again.Body) != string(first.Body) {
		t.Errorf("repeat answered %s, want the first answer %s", again.Body, first.Body)
	}
	wantRate(t, again, 1, 0)
	s.do(t, publishCall(a, `{"data":1}`, "k2")).want(t, http.StatusTooManyRequests, CodeRateLimited)
	s.do(t, publishCall(a, `{"data":2}`, "k1")).want(t, http.StatusUnprocessableEntity, CodeIdempotencyMismatch)
	if n, err := s.rdb.Get(t.Context(), keys.RateLimitPublishFull(a.TenantID)).Int(); err != nil || n != 6 {
		t.Errorf("window count %d (%v), want 6: only the new publish counted", n, err)
	}
	if _, total := s.published(t, a.TenantID, "chat.x"); total != 1 {
		t.Errorf("%d published, want 1", total)
	}
}

// TestPublishRateExact: concurrent publishes within one window pass exactly as many as the rate
// has room for.
func TestPublishRateExact(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, nil)
	a := s.rateTenant(t, 51)
	s.fillWindow(t, a.TenantID, 1) // room for 50, for a minute
	var mu sync.Mutex
	statuses := map[int]int{}
	var wg sync.WaitGroup
	for i := range 100 {
		wg.Go(func() {
			// Not s.do: it fails the test with FailNow, which only the test's goroutine may call.
			ctx, cancel := context.WithTimeout(t.Context(), callTimeout)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.URL+"/v1/channels/chat.x/events", strings.NewReader(`{"data":`+strconv.Itoa(i)+`}`))
			req.Header.Set("Authorization", "Bearer "+a.APIKey)
			req.Header.Set("Content-Type", "application/json")
			resp, err := s.client.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			mu.Lock()
			statuses[resp.StatusCode]++
			mu.Unlock()
		})
	}
	wg.Wait()
	if statuses[http.StatusAccepted] != 50 || statuses[http.StatusTooManyRequests] != 50 {
		t.Errorf("statuses %v, want 50 accepted and 50 refused", statuses)
	}
	if entries, total := s.published(t, a.TenantID, "chat.x"); entries != 50 || total != 50 {
		t.Errorf("%d events in history, %d published; want 50", entries, total)
	}
}

// compact must agree with json.Compact: an event keeps its data's bytes only where Compact would
// have returned them unchanged.
func TestCompact(t *testing.T) {
	t.Parallel()
	for _, v := range []string{
		`1`, `"a b"`, `{"a":1,"b":[1,2,{"c":"d e"}]}`, `{"a": 1}`, "[1,\n2]", "{\"a\":\t1}", ` 1`, `1 `,
		`"quote \" inside, then a space"`, `"backslash \\"`, `["\\", " "]`, `["\\"," "]`, `"\u0020"`, `{"k":"v"}` + "\r",
	} {
		var b bytes.Buffer
		if err := json.Compact(&b, []byte(v)); err != nil {
			t.Fatalf("%q: %v", v, err)
		}
		if got, want := compact([]byte(v)), b.String() == v; got != want {
			t.Errorf("compact(%q) = %v, want %v", v, got, want)
		}
	}
}
