package webhook

import (
	"context"
	"maps"
	"net/http"
	"testing"
	"time"
)

// The operator sees each endpoint's last success and failure, why a disabled one is, its dead
// deliveries, and the tenant's newest failures over all its endpoints.
func TestHealth(t *testing.T) {
	t.Parallel()
	f := newFixture(t, open)
	good, bad := newReceiver(t), newReceiver(t)
	bad.status.Store(http.StatusInternalServerError)
	ok, _ := f.create(t, "tn_a", good.srv.URL, EventChannelOccupied)
	failing, _ := f.create(t, "tn_a", bad.srv.URL+"/hooks", EventChannelOccupied)
	paused, _ := f.create(t, "tn_a", good.srv.URL+"/paused", EventChannelOccupied)
	f.create(t, "tn_b", bad.srv.URL, EventChannelOccupied)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := f.store.Update(ctx, "tn_a", paused.ID, Patch{Disabled: ptr(true)}); err != nil {
		t.Fatal(err)
	}
	health := func(tenantID string, failures int) (Health, map[string]EndpointHealth) {
		t.Helper()
		h, err := f.store.Health(ctx, tenantID, failures)
		if err != nil {
			t.Fatal(err)
		}
		byID := map[string]EndpointHealth{}
		for _, e := range h.Endpoints {
			byID[e.ID] = e
		}
		return h, byID
	}
	if h, eps := health("tn_a", 5); len(h.Endpoints) != 3 || len(h.Failures) != 0 || h.Dead != 0 ||
		eps[paused.ID].DisabledReason != DisabledByTenant || eps[ok.ID].DisabledReason != "" || eps[ok.ID].LastSuccess != nil {
		t.Fatalf("before any delivery: %+v", h)
	}

	f.dispatch(t, DispatcherConfig{Schedule: []time.Duration{time.Millisecond}, DisableAfter: 2})
	f.emit(t, "tn_a", EventChannelOccupied, map[string]string{"channel": "one"})
	f.emit(t, "tn_a", EventChannelOccupied, map[string]string{"channel": "two"})
	waitFor(t, 10*time.Second, "the failing endpoint to be disabled", func() bool {
		got, err := f.store.Get(ctx, "tn_a", failing.ID)
		return err == nil && got.Disabled
	})
	waitFor(t, 10*time.Second, "both successes", func() bool {
		rows := f.attempts(t, "tn_a", ok.ID)
		return len(rows) == 2 && rows[0].Status == StatusSucceeded && rows[1].Status == StatusSucceeded
	})

	h, eps := health("tn_a", 3)
	if e := eps[ok.ID]; e.Disabled || e.DisabledReason != "" || e.Dead != 0 || e.DeadInARow != 0 || e.LastFailure != nil ||
		e.LastSuccess == nil || e.LastSuccess.Status != StatusSucceeded || *e.LastSuccess.ResponseStatus != http.StatusNoContent {
		t.Errorf("the healthy endpoint: %+v", e)
	}
	if e := eps[failing.ID]; !e.Disabled || e.DisabledReason != DisabledFailing || e.Dead != 2 || e.DeadInARow != 2 || e.LastSuccess != nil ||
		e.LastFailure == nil || e.LastFailure.Status != StatusDead || *e.LastFailure.ResponseStatus != 500 || e.LastFailure.Error == nil {
		t.Errorf("the failing endpoint: %+v", e)
	}
	if e := eps[paused.ID]; !e.Disabled || e.DisabledReason != DisabledByTenant || e.LastSuccess != nil || e.LastFailure != nil {
		t.Errorf("the paused endpoint: %+v", e)
	}
	if h.Dead != 2 || len(h.Failures) != 3 {
		t.Fatalf("dead %d, failures %+v; want 2 dead and the 3 newest of 4 failed attempts", h.Dead, h.Failures)
	}
	for i, fl := range h.Failures {
		if fl.WebhookID != failing.ID || fl.URL != bad.srv.URL+"/hooks" || (fl.Status != StatusFailed && fl.Status != StatusDead) ||
			i > 0 && fl.CreatedAt.After(h.Failures[i-1].CreatedAt) {
			t.Errorf("failure %d: %+v", i, fl)
		}
	}

	counts, err := f.store.DeadCounts(ctx, "tn_a", "tn_b", "tn_none")
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]int64{"tn_a": 2, "tn_b": 0, "tn_none": 0}; !maps.Equal(counts, want) {
		t.Errorf("dead counts %v, want %v", counts, want)
	}

	// Enabled again, it is not disabled for any reason, and its run starts afresh; its dead
	// deliveries stay for the operator to see.
	if _, err := f.store.Update(ctx, "tn_a", failing.ID, Patch{Disabled: ptr(false)}); err != nil {
		t.Fatal(err)
	}
	if _, eps := health("tn_a", 3); eps[failing.ID].DisabledReason != "" || eps[failing.ID].DeadInARow != 0 || eps[failing.ID].Dead != 2 {
		t.Errorf("enabled again: %+v", eps[failing.ID])
	}
	if h, _ := health("tn_b", 3); len(h.Endpoints) != 1 || len(h.Failures) != 0 {
		t.Errorf("another tenant: %+v", h)
	}
}
