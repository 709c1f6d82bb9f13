package stream

import (
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/streamgate/streamgate/internal/keys"
	"github.com/streamgate/streamgate/internal/ratelimit"
	"github.com/streamgate/streamgate/internal/redistest"
)

// TestPublishCountsRate: a publish counts its events against the rate in its own script, as
// the rate limiter's Take would; over the rate it publishes nothing and still counts.
func TestPublishCountsRate(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Client()
	p := NewPublisher(rdb)
	w := Window{Events: 100, Seconds: 60}
	rate := ratelimit.Rate{Limit: 3, Period: time.Hour}
	ev := func(n int) []Event {
		out := make([]Event, n)
		for i := range out {
			out[i] = Event{Channel: "c", Event: "e", Data: json.RawMessage(`1`)}
		}
		return out
	}

	res, err := p.Publish(t.Context(), "tn_a", w, rate, ev(2), "")
	if err != nil || res.Rate.Limit != 3 || res.Rate.Remaining != 1 || res.Rate.Reached {
		t.Fatalf("first publish: %+v, %v; want 1 remaining of 3", res, err)
	}
	if until := time.Until(res.Rate.Reset); until < 59*time.Minute || until > time.Hour {
		t.Errorf("reset in %s, want the hour's window", until)
	}
	res, err = p.Publish(t.Context(), "tn_a", w, rate, ev(2), "k1")
	if !errors.Is(err, ErrRateLimited) || !res.Rate.Reached || res.Rate.Remaining != 0 || len(res.IDs) != 0 {
		t.Fatalf("over the rate: %+v, %v; want ErrRateLimited, reached", res, err)
	}
	if n, _ := p.Published(t.Context(), "tn_a"); n != 2 {
		t.Errorf("published %d events, want 2: a refused publish stores nothing", n)
	}
	if n := rdb.XLen(t.Context(), keys.History("tn_a", "c")).Val(); n != 2 {
		t.Errorf("history holds %d events, want 2", n)
	}
	if count, err := rdb.Get(t.Context(), keys.RateLimitPublishFull("tn_a")).Int(); err != nil || count != 4 {
		t.Errorf("count %d (%v), want 4: a refused publish counts", count, err)
	}
	// The refused Idempotency-Key was not remembered: once there is room, it publishes.
	if _, err := rdb.Del(t.Context(), keys.RateLimitPublishFull("tn_a")).Result(); err != nil {
		t.Fatal(err)
	}
	if res, err := p.Publish(t.Context(), "tn_a", w, rate, ev(2), "k1"); err != nil || res.Duplicate {
		t.Errorf("the refused key, with room again: %+v, %v; want published", res, err)
	}

	// Without a rate nothing is counted, and another tenant has a count of its own.
	if res, err := p.Publish(t.Context(), "tn_b", w, ratelimit.Rate{}, ev(5), ""); err != nil || res.Rate != (ratelimit.Result{}) {
		t.Errorf("without a rate: %+v, %v", res, err)
	}
	if n := rdb.Exists(t.Context(), keys.RateLimitPublishFull("tn_b")).Val(); n != 0 {
		t.Errorf("a publish without a rate left a count")
	}
}

// TestPublishRepeatIsNotCounted: a repeat of an Idempotency-Key publishes nothing, so it is
// neither counted nor refused, even when the window is full; a key reused with other events is
// refused without counting.
func TestPublishRepeatIsNotCounted(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Client()
	p := NewPublisher(rdb)
	w := Window{Events: 100, Seconds: 60}
	rate := ratelimit.Rate{Limit: 1, Period: time.Hour}
	ev := []Event{{Channel: "c", Event: "e", Data: json.RawMessage(`1`)}}
	count := func() int {
		t.Helper()
		n, _ := rdb.Get(t.Context(), keys.RateLimitPublishFull("tn_a")).Int()
		return n
	}

	first, err := p.Publish(t.Context(), "tn_a", w, rate, ev, "k1")
	if err != nil || first.Rate.Remaining != 0 || first.Rate.Reached {
		t.Fatalf("first: %+v, %v", first, err)
	}
	again, err := p.Publish(t.Context(), "tn_a", w, rate, ev, "k1")
	if err != nil || !again.Duplicate || again.IDs[0] != first.IDs[0] {
		t.Fatalf("repeat with the window at its limit: %+v, %v; want the first ids", again, err)
	}
	if again.Rate.Limit != 1 || again.Rate.Remaining != 0 || again.Rate.Reset.IsZero() {
		t.Errorf("repeat: rate %+v, want the window as it stands", again.Rate)
	}
	if n := count(); n != 1 {
		t.Errorf("count %d after a repeat, want 1", n)
	}
	if _, err := p.Publish(t.Context(), "tn_a", w, rate, ev, "k2"); !errors.Is(err, ErrRateLimited) {
		t.Fatalf("a new key over the rate: %v, want ErrRateLimited", err)
	}
	// Over the rate now (a count of 2), the repeat still gets its ids.
	if again, err := p.Publish(t.Context(), "tn_a", w, rate, ev, "k1"); err != nil || !again.Duplicate {
		t.Errorf("repeat over the rate: %+v, %v; want the duplicate, not a refusal", again, err)
	}
	other := []Event{{Channel: "c", Event: "e", Data: json.RawMessage(`2`)}}
	if _, err := p.Publish(t.Context(), "tn_a", w, rate, other, "k1"); !errors.Is(err, ErrIdempotencyMismatch) {
		t.Errorf("reuse with other events: %v, want a mismatch", err)
	}
	if n := count(); n != 2 {
		t.Errorf("count %d, want 2: repeats and mismatches are not counted", n)
	}
}

// TestPublishRateIsExact: concurrent publishes within one window are counted in one script each,
// so exactly the rate's worth of them pass.
func TestPublishRateIsExact(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Client()
	p := NewPublisher(rdb)
	w := Window{Events: 1000, Seconds: 60}
	rate := ratelimit.Rate{Limit: 50, Period: time.Hour} // one window for the whole test
	var mu sync.Mutex
	var ok, limited int
	var wg sync.WaitGroup
	for range 100 {
		wg.Go(func() {
			_, err := p.Publish(t.Context(), "tn_a", w, rate, []Event{{Channel: "c", Event: "e", Data: json.RawMessage(`1`)}}, "")
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok++
			case errors.Is(err, ErrRateLimited):
				limited++
			default:
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if ok != 50 || limited != 50 {
		t.Errorf("%d accepted, %d refused; want exactly 50 of each", ok, limited)
	}
	if n, _ := p.Published(t.Context(), "tn_a"); n != 50 {
		t.Errorf("published %d, want 50", n)
	}
}

// TestAppendMessage: the payload written by hand is json.Marshal's, byte for byte, including
// where json.Marshal escapes.
func TestAppendMessage(t *testing.T) {
	t.Parallel()
	at := "2026-11-27T17:26:10.769878496Z"
	for _, ev := range []Event{
		{Channel: "chat.room", Event: "message", Data: json.RawMessage(`{"text":"hello, world","n":[1,2.5,null,true]}`)},
		{Channel: "a:b@c=d,e-f_g", Event: "x.y", Data: json.RawMessage(`"plain"`)},
		{Channel: "c", Event: `quote"back\slash`, Data: json.RawMessage(`1`)},
		{Channel: "c", Event: "ünïcode", Data: json.RawMessage(`{"é":"ü"}`)},
		{Channel: "c", Event: "<b>&", Data: json.RawMessage(`{"html":"<script>&amp;</script>"}`)},
		{Channel: "c", Event: "e", Data: json.RawMessage("\"line\u2028sep\u2029\"")},
		{Channel: "c", Event: "e", Data: json.RawMessage("{\n  \"spaced\": [1, 2]\n}")},
		{Channel: "c", Event: "e", Data: json.RawMessage(`{"escaped":"a\nb\"c\\d\u0001"}`)},
	} {
		want, err := json.Marshal(messageData{Channel: ev.Channel, Event: ev.Event, Data: ev.Data, PublishedAt: at})
		if err != nil {
			t.Fatal(err)
		}
		got, err := appendMessage([]byte("prefix"), ev, []byte(at))
		if err != nil || !strings.HasPrefix(string(got), "prefix") || string(got[len("prefix"):]) != string(want) {
			t.Errorf("%+v:\n got %s (%v)\nwant %s", ev, got, err, want)
		}
	}
}

// Request ids and epochs are well formed and fresh: a request id met twice would make a
// publish look like a retry of another and be dropped.
func TestNewRequestIDAndEpoch(t *testing.T) {
	t.Parallel()
	isHex := func(s string) bool {
		return strings.Trim(s, "0123456789abcdef") == ""
	}
	ids := make(map[string]bool)
	for range 100_000 {
		id := NewRequestID()
		if len(id) != 17 || id[0] != '~' || !isHex(id[1:]) {
			t.Fatalf("request id %q: want ~ and 16 hex characters", id)
		}
		if ids[id] {
			t.Fatalf("request id %q given twice", id)
		}
		ids[id] = true
	}
	epochs := make(map[string]bool)
	for range 100 {
		e := NewEpoch()
		if len(e) != epochLen || !isHex(e) {
			t.Fatalf("epoch %q: want %d hex characters", e, epochLen)
		}
		epochs[e] = true
	}
	if len(epochs) < 90 {
		t.Fatalf("100 epochs, only %d different", len(epochs))
	}
}
