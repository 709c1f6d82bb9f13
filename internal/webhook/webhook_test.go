package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamgate/streamgate/internal/keys"
	"github.com/streamgate/streamgate/internal/urlguard"
)

// A delivery is the contract's body, signed the Standard Webhooks way, and its attempt is in the
// endpoint's history.
func TestDeliveryIsSignedAndRecorded(t *testing.T) {
	t.Parallel()
	f := newFixture(t, open)
	rcv := newReceiver(t)
	ep, secret := f.create(t, "tn_a", rcv.srv.URL+"/hook", EventJobFinished)
	f.dispatch(t, DispatcherConfig{})

	f.emit(t, "tn_a", EventSessionEvicted, map[string]string{"session_id": "ses_1"}) // not wanted
	job := json.RawMessage(`{"job_id":"j1","status":"succeeded","progress":100,"message":null,"output":{"n":1},"error":null,"updated_at":"2030-01-01T00:00:00Z"}`)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := f.events.Finished(ctx, "tn_a", "job", job); err != nil {
		t.Fatal(err)
	}

	req := rcv.next(t, 10*time.Second)
	if verified(t, secret, req) != 1 {
		t.Fatalf("signature %q does not verify", req.Signature)
	}
	if req.ContentType != "application/json" {
		t.Errorf("Content-Type %q", req.ContentType)
	}
	ts, err := strconv.ParseInt(req.Timestamp, 10, 64)
	if err != nil || time.Since(time.Unix(ts, 0)).Abs() > time.Minute {
		t.Errorf("webhook-timestamp %q is not the Unix time of the attempt", req.Timestamp)
	}
	p := decodePayload(t, req)
	if p.Type != EventJobFinished || !strings.HasPrefix(p.ID, "evt_") || p.ID != req.ID || p.CreatedAt.IsZero() {
		t.Errorf("payload %+v, webhook-id %q", p, req.ID)
	}
	var data struct {
		Job json.RawMessage `json:"job"`
	}
	if err := json.Unmarshal(p.Data, &data); err != nil || string(data.Job) != string(job) {
		t.Errorf("data %s, want {\"job\": %s}", p.Data, job)
	}
	rcv.expectNone(t, 200*time.Millisecond) // the unwanted type was not sent

	waitFor(t, 5*time.Second, "the attempt in the history", func() bool {
		rows := f.attempts(t, "tn_a", ep.ID)
		return len(rows) == 1 && rows[0].Status == StatusSucceeded
	})
	row := f.attempts(t, "tn_a", ep.ID)[0]
	if row.Attempt != 1 || row.EventType != EventJobFinished || !strings.HasPrefix(row.ID, "dlv_") ||
		row.ResponseStatus == nil || *row.ResponseStatus != http.StatusNoContent || row.Error != nil || row.NextAttemptAt != nil {
		t.Errorf("history row %+v", row)
	}
}

// A test event goes to its endpoint with the delivery id the call returned, pending first.
func TestTestEvent(t *testing.T) {
	t.Parallel()
	f := newFixture(t, open)
	rcv := newReceiver(t)
	ep, secret := f.create(t, "tn_a", rcv.srv.URL, EventChannelOccupied)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	id, err := f.store.Test(ctx, "tn_a", ep.ID)
	if err != nil {
		t.Fatal(err)
	}
	rows := f.attempts(t, "tn_a", ep.ID)
	if len(rows) != 1 || rows[0].ID != id || rows[0].Status != StatusPending || rows[0].Attempt != 1 || rows[0].EventType != EventTest {
		t.Fatalf("history before any attempt: %+v, want one pending row for %s", rows, id)
	}

	f.dispatch(t, DispatcherConfig{})
	req := rcv.next(t, 10*time.Second)
	if verified(t, secret, req) != 1 {
		t.Fatal("signature does not verify")
	}
	p := decodePayload(t, req)
	if p.Type != EventTest || string(p.Data) != fmt.Sprintf(`{"webhook_id":%q}`, ep.ID) {
		t.Errorf("test payload %+v", p)
	}
	waitFor(t, 5*time.Second, "the test delivery to succeed", func() bool {
		rows := f.attempts(t, "tn_a", ep.ID)
		return len(rows) == 1 && rows[0].ID == id && rows[0].Status == StatusSucceeded
	})

	if _, err := f.store.Update(ctx, "tn_a", ep.ID, Patch{Disabled: ptr(true)}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.store.Test(ctx, "tn_a", ep.ID); !errors.Is(err, ErrInvalid) {
		t.Errorf("test of a disabled webhook: %v, want ErrInvalid", err)
	}
	if _, err := f.store.Test(ctx, "tn_a", "wh_missing"); !errors.Is(err, ErrNotFound) {
		t.Errorf("test of an unknown webhook: %v, want ErrNotFound", err)
	}
}

func ptr[T any](v T) *T { return &v }

// Failed attempts are retried on the schedule with the same webhook-id, a delivery that fails
// its last attempt is dead and kept, and enough dead deliveries in a row disable the endpoint,
// which then gets nothing; enabling it again resets the run.
func TestRetryDeadAndDisable(t *testing.T) {
	t.Parallel()
	f := newFixture(t, open)
	rcv := newReceiver(t)
	rcv.status.Store(http.StatusInternalServerError)
	ep, secret := f.create(t, "tn_a", rcv.srv.URL, EventChannelOccupied)
	f.dispatch(t, DispatcherConfig{Schedule: []time.Duration{10 * time.Millisecond, 10 * time.Millisecond}, DisableAfter: 2})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	f.emit(t, "tn_a", EventChannelOccupied, map[string]string{"channel": "one"})
	first := rcv.next(t, 10*time.Second)
	for range 2 {
		again := rcv.next(t, 10*time.Second)
		if again.ID != first.ID || string(again.Body) != string(first.Body) || verified(t, secret, again) != 1 {
			t.Fatalf("a retry differs: id %q body %s, first %q %s", again.ID, again.Body, first.ID, first.Body)
		}
	}
	waitFor(t, 10*time.Second, "the delivery to be dead", func() bool {
		dead, err := f.store.Dead(ctx, "tn_a", ep.ID, 0)
		return err == nil && len(dead) == 1
	})
	rows := f.attempts(t, "tn_a", ep.ID)
	if len(rows) != 3 {
		t.Fatalf("history %+v, want 3 attempts", rows)
	}
	for i, row := range rows { // newest first
		want := StatusFailed
		if i == 0 {
			want = StatusDead
		}
		if row.Attempt != 3-i || row.Status != want || row.ID != rows[0].ID || row.ResponseStatus == nil || *row.ResponseStatus != 500 || row.Error == nil {
			t.Errorf("row %d: %+v, want attempt %d %s with status 500", i, row, 3-i, want)
		}
		if (row.NextAttemptAt != nil) != (want == StatusFailed) {
			t.Errorf("row %d: next_attempt_at %v for a %s attempt", i, row.NextAttemptAt, row.Status)
		}
	}
	if got, _ := f.store.Get(ctx, "tn_a", ep.ID); got.Disabled {
		t.Fatal("disabled after one dead delivery; the threshold is two")
	}

	f.emit(t, "tn_a", EventChannelOccupied, map[string]string{"channel": "two"})
	for range 3 {
		rcv.next(t, 10*time.Second)
	}
	waitFor(t, 10*time.Second, "the endpoint to be disabled", func() bool {
		got, err := f.store.Get(ctx, "tn_a", ep.ID)
		return err == nil && got.Disabled
	})
	if n, _ := f.store.DeadCount(ctx, "tn_a", ep.ID); n != 2 {
		t.Errorf("dead count %d, want 2", n)
	}

	// Disabled: sent nothing, queues nothing.
	time.Sleep(2 * interestTTL) // other processes learn of it within interestTTL
	f.emit(t, "tn_a", EventChannelOccupied, map[string]string{"channel": "three"})
	rcv.expectNone(t, 300*time.Millisecond)

	// Enabled again, the run starts afresh: one more dead delivery does not disable it.
	if _, err := f.store.Update(ctx, "tn_a", ep.ID, Patch{Disabled: ptr(false)}); err != nil {
		t.Fatal(err)
	}
	f.emit(t, "tn_a", EventChannelOccupied, map[string]string{"channel": "four"})
	for range 3 {
		if p := decodePayload(t, rcv.next(t, 10*time.Second)); !strings.Contains(string(p.Data), "four") {
			t.Fatalf("got %s, want the event of channel four", p.Data)
		}
	}
	waitFor(t, 10*time.Second, "the third dead delivery", func() bool {
		n, _ := f.store.DeadCount(ctx, "tn_a", ep.ID)
		return n == 3
	})
	if got, _ := f.store.Get(ctx, "tn_a", ep.ID); got.Disabled {
		t.Error("disabled again after one dead delivery: enabling did not reset the run")
	}
}

// A success ends the run of dead deliveries.
func TestSuccessResetsDeadRun(t *testing.T) {
	t.Parallel()
	f := newFixture(t, open)
	rcv := newReceiver(t)
	rcv.status.Store(http.StatusBadGateway)
	ep, _ := f.create(t, "tn_a", rcv.srv.URL, EventChannelVacated)
	f.dispatch(t, DispatcherConfig{Schedule: []time.Duration{time.Millisecond}, DisableAfter: 2})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	deadCount := func(n int64) func() bool {
		return func() bool { got, _ := f.store.DeadCount(ctx, "tn_a", ep.ID); return got == n }
	}
	f.emit(t, "tn_a", EventChannelVacated, map[string]string{"channel": "a"})
	rcv.next(t, 10*time.Second)
	rcv.next(t, 10*time.Second)
	waitFor(t, 10*time.Second, "one dead delivery", deadCount(1))

	rcv.status.Store(http.StatusOK)
	f.emit(t, "tn_a", EventChannelVacated, map[string]string{"channel": "b"})
	rcv.next(t, 10*time.Second)
	waitFor(t, 10*time.Second, "the success in the history", func() bool {
		rows := f.attempts(t, "tn_a", ep.ID)
		return len(rows) > 0 && rows[0].Status == StatusSucceeded
	})

	rcv.status.Store(http.StatusBadGateway)
	f.emit(t, "tn_a", EventChannelVacated, map[string]string{"channel": "c"})
	rcv.next(t, 10*time.Second)
	rcv.next(t, 10*time.Second)
	waitFor(t, 10*time.Second, "a second dead delivery", deadCount(2))
	if got, _ := f.store.Get(ctx, "tn_a", ep.ID); got.Disabled {
		t.Error("disabled after two dead deliveries with a success between them")
	}
}

// One tenant's endpoint that takes 10 s per answer holds a few senders and nothing else:
// another tenant's event, emitted after the slow tenant's whole backlog, arrives while every
// one of the slow endpoint's answers is still outstanding.
func TestSlowEndpointDelaysNoOtherTenant(t *testing.T) {
	t.Parallel()
	f := newFixture(t, open)
	release := make(chan struct{})
	var entered, answered atomic.Int32
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered.Add(1)
		select {
		case <-release:
		case <-time.After(10 * time.Second):
		}
		answered.Add(1)
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(slow.Close)
	defer close(release) // before the dispatcher stops: it waits for its sends
	fast := newReceiver(t)
	f.create(t, "tn_slow", slow.URL, EventChannelOccupied)
	f.create(t, "tn_fast", fast.srv.URL, EventChannelOccupied)
	d := f.dispatch(t, DispatcherConfig{})

	for i := range 40 {
		f.emit(t, "tn_slow", EventChannelOccupied, map[string]string{"channel": fmt.Sprint("c", i)})
	}
	waitFor(t, 10*time.Second, "the slow tenant's backlog to be queued", func() bool {
		return d.Stats().Routed == 40
	})
	waitFor(t, 10*time.Second, "the slow endpoint's every slot to be taken", func() bool {
		return entered.Load() == DefaultEndpointConcurrency
	})
	f.emit(t, "tn_fast", EventChannelOccupied, map[string]string{"channel": "fast"})

	got := fast.next(t, 30*time.Second)
	if n := answered.Load(); n != 0 {
		t.Fatalf("the other tenant's event arrived only after %d of the slow endpoint's answers", n)
	}
	if p := decodePayload(t, got); !strings.Contains(string(p.Data), "fast") {
		t.Fatalf("got %s", p.Data)
	}
	if n := entered.Load(); n != DefaultEndpointConcurrency {
		t.Errorf("the slow endpoint had %d requests at once, want at most %d", n, DefaultEndpointConcurrency)
	}
}

// Several dispatchers share the work: every event arrives, once.
func TestDispatchersShareWork(t *testing.T) {
	t.Parallel()
	f := newFixture(t, open)
	rcv := newReceiver(t)
	f.create(t, "tn_a", rcv.srv.URL, EventChannelOccupied)
	f.create(t, "tn_b", rcv.srv.URL, EventChannelOccupied)
	d1 := f.dispatch(t, DispatcherConfig{Consumer: "one"})
	d2 := f.dispatch(t, DispatcherConfig{Consumer: "two"})

	const n = 30
	for i := range n {
		f.emit(t, []string{"tn_a", "tn_b"}[i%2], EventChannelOccupied, map[string]string{"channel": fmt.Sprint("c", i)})
	}
	seen := map[string]bool{}
	for range n {
		req := rcv.next(t, 10*time.Second)
		if seen[req.ID] {
			t.Fatalf("event %s delivered twice", req.ID)
		}
		seen[req.ID] = true
	}
	rcv.expectNone(t, 300*time.Millisecond)
	if s1, s2 := d1.Stats().Succeeded, d2.Stats().Succeeded; s1+s2 != n {
		t.Errorf("succeeded %d + %d, want %d", s1, s2, n)
	}
}

// After a rotation, deliveries carry a signature by each secret.
func TestRotateSecret(t *testing.T) {
	t.Parallel()
	f := newFixture(t, open)
	rcv := newReceiver(t)
	ep, old := f.create(t, "tn_a", rcv.srv.URL, EventChannelOccupied)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	fresh, err := f.store.RotateSecret(ctx, "tn_a", ep.ID)
	if err != nil || fresh == old {
		t.Fatalf("rotate: %q, %v", fresh, err)
	}
	f.dispatch(t, DispatcherConfig{})
	f.emit(t, "tn_a", EventChannelOccupied, map[string]string{"channel": "x"})
	req := rcv.next(t, 10*time.Second)
	if len(strings.Fields(req.Signature)) != 2 || verified(t, old, req) != 1 || verified(t, fresh, req) != 1 {
		t.Fatalf("signatures %q: want one by the old and one by the new secret", req.Signature)
	}
	if _, err := f.store.RotateSecret(ctx, "tn_a", "wh_nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("rotate an unknown webhook: %v", err)
	}
}

// The URL rules: public addresses only at creation and at delivery, after DNS, unless private
// addresses are allowed.
func TestURLGuard(t *testing.T) {
	t.Parallel()
	dns := newFakeDNS(t, "93.184.216.34")
	guard := urlguard.Guard{Resolver: dns.resolver()}
	f := newFixture(t, guard)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, u := range []string{"http://127.0.0.1:8080/hook", "http://localhost/hook", "http://169.254.169.254/latest",
		"http://10.0.0.1/", "ftp://example.com/", "https://user:pw@example.com/", "not a url", ""} {
		if _, _, err := f.store.Create(ctx, "tn_a", Input{URL: u, Events: []string{EventTest}}); !errors.Is(err, ErrInvalid) {
			t.Errorf("create with %q: %v, want ErrInvalid", u, err)
		}
	}
	dns.set("127.0.0.1")
	if _, _, err := f.store.Create(ctx, "tn_a", Input{URL: "http://rebind.test/hook", Events: []string{EventTest}}); !errors.Is(err, ErrInvalid) {
		t.Errorf("create with a name resolving to 127.0.0.1: %v, want ErrInvalid", err)
	}
	if eps, _ := f.store.List(ctx, "tn_a"); len(eps) != 0 {
		t.Fatalf("refused creations stored %d webhooks", len(eps))
	}

	// The name resolves to a public address at creation and to loopback at delivery.
	rcv := newReceiver(t)
	port := rcv.srv.URL[strings.LastIndex(rcv.srv.URL, ":")+1:]
	dns.set("93.184.216.34")
	ep, _ := f.create(t, "tn_a", "http://rebind.test:"+port+"/hook", EventChannelOccupied)
	if _, err := f.store.Update(ctx, "tn_a", ep.ID, Patch{URL: ptr("http://127.0.0.2/")}); !errors.Is(err, ErrInvalid) {
		t.Errorf("PATCH to a loopback URL: %v, want ErrInvalid", err)
	}
	dns.set("127.0.0.1")
	f.dispatch(t, DispatcherConfig{Schedule: []time.Duration{time.Hour}})
	f.emit(t, "tn_a", EventChannelOccupied, map[string]string{"channel": "x"})
	waitFor(t, 10*time.Second, "the refused attempt in the history", func() bool {
		rows := f.attempts(t, "tn_a", ep.ID)
		return len(rows) == 1 && rows[0].Status == StatusFailed
	})
	row := f.attempts(t, "tn_a", ep.ID)[0]
	if row.ResponseStatus != nil || row.Error == nil || !strings.Contains(*row.Error, "not public") {
		t.Errorf("refused attempt recorded as %+v", row)
	}
	rcv.expectNone(t, 100*time.Millisecond)
}

// Endpoint validation and the per-tenant cap; bad input changes nothing.
func TestEndpointRules(t *testing.T) {
	t.Parallel()
	f := newFixture(t, open)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for name, in := range map[string]Input{
		"no events":        {URL: "http://127.0.0.1/x"},
		"unknown event":    {URL: "http://127.0.0.1/x", Events: []string{"job.started"}},
		"long description": {URL: "http://127.0.0.1/x", Events: []string{EventTest}, Description: strings.Repeat("d", MaxDescription+1)},
	} {
		if _, _, err := f.store.Create(ctx, "tn_a", in); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
	ep, secret, err := f.store.Create(ctx, "tn_a", Input{URL: "http://127.0.0.1/x#frag", Events: []string{EventJobFinished, EventJobFinished, EventTest}, Description: "mine"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(ep.ID, "wh_") || ep.URL != "http://127.0.0.1/x" || strings.Join(ep.Events, ",") != "job.finished,webhook.test" || ep.Description != "mine" || ep.Disabled {
		t.Errorf("created %+v", ep)
	}
	if key, err := signingKey(secret); err != nil || len(key) != 32 {
		t.Errorf("secret %q: %v", secret, err)
	}
	raw, _ := f.rdb.HGet(ctx, keys.Webhooks("tn_a"), ep.ID).Result()
	if strings.Contains(raw, strings.TrimPrefix(secret, "whsec_")) {
		t.Error("the secret is stored in the clear")
	}

	if _, err := f.store.Update(ctx, "tn_a", ep.ID, Patch{Events: ptr([]string{})}); !errors.Is(err, ErrInvalid) {
		t.Errorf("PATCH with no events: %v", err)
	}
	got, err := f.store.Update(ctx, "tn_a", ep.ID, Patch{Description: ptr("changed"), Events: ptr([]string{EventSessionEvicted})})
	if err != nil || got.Description != "changed" || strings.Join(got.Events, ",") != EventSessionEvicted || got.URL != ep.URL {
		t.Errorf("PATCH: %+v, %v", got, err)
	}
	if _, err := f.store.Update(ctx, "tn_b", ep.ID, Patch{Description: ptr("x")}); !errors.Is(err, ErrNotFound) {
		t.Errorf("another tenant's webhook: %v, want ErrNotFound", err)
	}

	for i := 1; i < MaxEndpoints; i++ {
		f.create(t, "tn_a", "http://127.0.0.1/x", EventTest)
	}
	if _, _, err := f.store.Create(ctx, "tn_a", Input{URL: "http://127.0.0.1/x", Events: []string{EventTest}}); !errors.Is(err, ErrLimitExceeded) {
		t.Errorf("endpoint %d: %v, want ErrLimitExceeded", MaxEndpoints+1, err)
	}
	if eps, _ := f.store.List(ctx, "tn_a"); len(eps) != MaxEndpoints || eps[0].ID != ep.ID {
		t.Errorf("list: %d endpoints, first %v", len(eps), eps[0].ID)
	}
}

// Deleting an endpoint drops what was queued for it and everything it kept.
func TestDeleteDropsQueue(t *testing.T) {
	t.Parallel()
	f := newFixture(t, open)
	rcv := newReceiver(t)
	ep, _ := f.create(t, "tn_a", rcv.srv.URL, EventChannelOccupied)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for range 3 {
		if _, err := f.store.Test(ctx, "tn_a", ep.ID); err != nil {
			t.Fatal(err)
		}
	}
	p := partition("tn_a")
	if n, _ := f.rdb.ZCard(ctx, keys.WebhookQueue(p, "tn_a", ep.ID)).Result(); n != 3 {
		t.Fatalf("queued %d, want 3", n)
	}
	if err := f.store.Delete(ctx, "tn_a", ep.ID); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{keys.WebhookQueue(p, "tn_a", ep.ID), keys.WebhookDeliveries(p, "tn_a", ep.ID),
		keys.WebhookAttempts("tn_a", ep.ID), keys.WebhookAttemptIndex("tn_a", ep.ID)} {
		if n, _ := f.rdb.Exists(ctx, k).Result(); n != 0 {
			t.Errorf("%s is left after the delete", k)
		}
	}
	if n, _ := f.rdb.ZCard(ctx, keys.WebhookDue(p)).Result(); n != 0 {
		t.Error("the deleted endpoint is still scheduled")
	}
	f.dispatch(t, DispatcherConfig{})
	rcv.expectNone(t, 300*time.Millisecond)
	if err := f.store.Delete(ctx, "tn_a", ep.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("second delete: %v, want ErrNotFound", err)
	}
}

// A tenant without an endpoint for a type costs nothing: nothing is appended.
func TestEmitWithoutInterestAppendsNothing(t *testing.T) {
	t.Parallel()
	f := newFixture(t, open)
	f.create(t, "tn_a", "http://127.0.0.1/x", EventJobFinished)
	f.emit(t, "tn_a", EventChannelOccupied, map[string]string{"channel": "x"})
	f.emit(t, "tn_b", EventJobFinished, map[string]string{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for p := range keys.WebhookPartitions {
		if n, _ := f.rdb.XLen(ctx, keys.WebhookEvents(p)).Result(); n != 0 {
			t.Errorf("partition %d has %d events", p, n)
		}
	}
	var nilEvents *Events
	if err := nilEvents.Emit(ctx, "tn_a", EventJobFinished, nil); err != nil {
		t.Errorf("nil Events: %v", err)
	}
}

// streamEvents reads the events the intake appended for a tenant, in order.
func streamEvents(t testing.TB, f *fixture, tenantID string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	msgs, err := f.rdb.XRange(ctx, keys.WebhookEvents(partition(tenantID)), "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range msgs {
		if m.Values["tenant"] == tenantID {
			out = append(out, fmt.Sprintf("%s %s", m.Values["type"], m.Values["data"]))
		}
	}
	return out
}

// Occupancy is cluster-wide: a channel is occupied by its first holder on any node and vacated
// by its last; a node that dies has its channels vacated by a live one.
func TestOccupancy(t *testing.T) {
	t.Parallel()
	f := newFixture(t, open)
	f.create(t, "tn_a", "http://127.0.0.1/x", EventChannelOccupied, EventChannelVacated)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	start := func(node string) *Occupancy {
		o := NewOccupancy(f.rdb, node, f.events, quietLog())
		wg.Add(1)
		go func() { defer wg.Done(); _ = o.Run(ctx) }()
		return o
	}
	a, b := start("a"), start("b")
	want := []string{}
	expect := func(what string, events ...string) {
		t.Helper()
		want = append(want, events...)
		waitFor(t, 10*time.Second, what, func() bool { return len(streamEvents(t, f, "tn_a")) >= len(want) })
		time.Sleep(100 * time.Millisecond) // and nothing more
		if got := streamEvents(t, f, "tn_a"); strings.Join(got, "|") != strings.Join(want, "|") {
			t.Fatalf("%s: events %q, want %q", what, got, want)
		}
	}

	a.Occupied("tn_a", "room")
	expect("first holder", `channel.occupied {"channel":"room"}`)
	b.Occupied("tn_a", "room")
	holders := func(channel string, n int64) {
		t.Helper()
		waitFor(t, 10*time.Second, "the holders of "+channel, func() bool {
			got, _ := f.rdb.HLen(ctx, keys.Occupancy("tn_a", channel)).Result()
			return got == n
		})
	}
	holders("room", 2) // the two nodes report independently: b's report applied first
	a.Vacated("tn_a", "room")
	b.Occupied("tn_a", "hall")
	expect("second holder, first leaves", `channel.occupied {"channel":"hall"}`)
	b.Vacated("tn_a", "room")
	expect("last holder leaves", `channel.vacated {"channel":"room"}`)

	// A node that dies: its instance stops renewing; a live node takes it for dead after
	// HolderTTL (brought forward here) and vacates what only it held.
	dctx, die := context.WithCancel(ctx)
	c := NewOccupancy(f.rdb, "c", f.events, quietLog())
	stopped := make(chan struct{})
	go func() { defer close(stopped); _ = c.Run(dctx) }()
	c.Occupied("tn_a", "lobby")
	c.Occupied("tn_a", "hall")
	expect("a node that will die", `channel.occupied {"channel":"lobby"}`)
	die()
	<-stopped
	silent := float64(time.Now().Add(-HolderTTL - time.Second).UnixMilli())
	if err := f.rdb.ZAdd(ctx, keys.OccupancyHolders(), redis.Z{Score: silent, Member: c.instance}).Err(); err != nil {
		t.Fatal(err)
	}
	a.sweep(ctx)
	expect("the dead node's channels", `channel.vacated {"channel":"lobby"}`)

	// A node that stops gracefully vacates what it was the last to hold.
	b.Close(ctx)
	expect("a node that stops", `channel.vacated {"channel":"hall"}`)
	if n, _ := f.rdb.Exists(ctx, keys.Occupancy("tn_a", "hall"), keys.Occupancy("tn_a", "lobby"), keys.Occupancy("tn_a", "room")).Result(); n != 0 {
		t.Errorf("%d channels still have holders", n)
	}
}

// A worker told to stop gives its sends a grace period, then puts back what is still in flight,
// unattempted, and another worker delivers it.
func TestStoppingWorkerPutsDeliveriesBack(t *testing.T) {
	t.Parallel()
	f := newFixture(t, open)
	stuck := make(chan struct{})
	defer close(stuck)
	var calls atomic.Int32
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			select { // the first worker's send: never answered while it runs
			case <-stuck:
			case <-r.Context().Done():
			}
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(hang.Close)
	ep, _ := f.create(t, "tn_a", hang.URL, EventChannelOccupied)

	first := NewDispatcher(f.store, DispatcherConfig{Poll: 20 * time.Millisecond, StopGrace: 100 * time.Millisecond}, quietLog())
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { defer close(stopped); _ = first.Run(ctx) }()
	f.emit(t, "tn_a", EventChannelOccupied, map[string]string{"channel": "x"})
	waitFor(t, 10*time.Second, "the first send", func() bool { return calls.Load() == 1 })
	cancel()
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("the dispatcher did not stop after its grace period")
	}

	f.dispatch(t, DispatcherConfig{})
	waitFor(t, 10*time.Second, "the delivery by another worker", func() bool {
		rows := f.attempts(t, "tn_a", ep.ID)
		return len(rows) == 1 && rows[0].Status == StatusSucceeded
	})
	if row := f.attempts(t, "tn_a", ep.ID)[0]; row.Attempt != 1 {
		t.Errorf("the abandoned send counted as an attempt: %+v", row)
	}
}
