package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamgate/streamgate/internal/keys"
	"github.com/streamgate/streamgate/internal/redistest"
	"github.com/streamgate/streamgate/internal/stream"
)

// updatesOf returns the entries of a job's partition that belong to that job.
func updatesOf(t *testing.T, rdb redis.UniversalClient, tenantID, target, id string) []redis.XMessage {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	all, err := rdb.XRange(ctx, keys.Updates(Partition(tenantID, target, id)), "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	var out []redis.XMessage
	for _, m := range all {
		if m.Values["tenant"] == tenantID && m.Values["id"] == id && (m.Values["kind"] == target || target == UpdateWorkflow && m.Values["kind"] == UpdateStep) {
			out = append(out, m)
		}
	}
	return out
}

func fields(t *testing.T, s string) map[string]json.RawMessage {
	t.Helper()
	var f map[string]json.RawMessage
	if err := json.Unmarshal([]byte(s), &f); err != nil {
		t.Fatal(err)
	}
	return f
}

// An update whose answer is lost after the append script ran is retried by the Redis client;
// the retry must not append it twice (the job would then apply it twice, after whatever came
// in between).
func TestUpdateRetriedByTheRedisClientIsAppendedOnce(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	direct := srv.Client()
	w := stream.Window{Events: 100, Seconds: 60}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	// Load the script first, so that the append below is one EVALSHA.
	if err := NewUpdates(direct).Append(ctx, Update{TenantID: "tn_warm", Kind: UpdateJob, ID: "j", Fields: fields(t, `{"progress":1}`), Window: w}); err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: redistest.LossyProxy(t, srv.Addr, "evalsha"), MaxRetries: 1, ReadTimeout: 5 * time.Second})
	t.Cleanup(func() { rdb.Close() })
	if err := NewUpdates(rdb).Append(ctx, Update{TenantID: "tn_a", Kind: UpdateJob, ID: "j", Fields: fields(t, `{"progress":50}`), Window: w}); err != nil {
		t.Fatalf("append through a lost answer: %v", err)
	}
	if got := updatesOf(t, direct, "tn_a", UpdateJob, "j"); len(got) != 1 {
		t.Fatalf("the update stream holds %d updates of the job, want 1: the retry appended it again", len(got))
	}
}

// An Idempotency-Key makes a client's retry of an update a no-op; the same key with another
// update of the same job or workflow is refused; other jobs have keys of their own.
func TestUpdateWithIdempotencyKeyIsAppendedOnce(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Client()
	up := NewUpdates(rdb)
	w := stream.Window{Events: 100, Seconds: 60}
	put := func(kind, id, f, key string) error {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		return up.Append(ctx, Update{TenantID: "tn_a", Kind: kind, ID: id, Fields: fields(t, f), Window: w, IdempotencyKey: key})
	}
	for _, tc := range []struct {
		name        string
		kind, id, f string
		key         string
		wantErr     error
		target      string
		want        int
	}{
		{"first use", UpdateJob, "j1", `{"status":"running"}`, "k1", nil, UpdateJob, 1},
		{"retry", UpdateJob, "j1", `{"status":"running"}`, "k1", nil, UpdateJob, 1},
		{"same key, other update", UpdateJob, "j1", `{"status":"failed"}`, "k1", ErrIdempotencyMismatch, UpdateJob, 1},
		{"other key", UpdateJob, "j1", `{"status":"running"}`, "k2", nil, UpdateJob, 2},
		{"no key", UpdateJob, "j1", `{"status":"running"}`, "", nil, UpdateJob, 3},
		{"same key, other job", UpdateJob, "j2", `{"status":"running"}`, "k1", nil, UpdateJob, 1},
		{"workflow", UpdateWorkflow, "w1", `{"status":"running"}`, "wk", nil, UpdateWorkflow, 1},
		{"its step with the workflow's key", UpdateStep, "w1", `{"name":"s","status":"running"}`, "wk", ErrIdempotencyMismatch, UpdateWorkflow, 1},
		{"step retried", UpdateStep, "w1", `{"name":"s","status":"running"}`, "sk", nil, UpdateWorkflow, 2},
		{"step retried again", UpdateStep, "w1", `{"name":"s","status":"running"}`, "sk", nil, UpdateWorkflow, 2},
	} {
		err := put(tc.kind, tc.id, tc.f, tc.key)
		if !errors.Is(err, tc.wantErr) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.wantErr)
		}
		if got := len(updatesOf(t, rdb, "tn_a", tc.target, tc.id)); got != tc.want {
			t.Errorf("%s: %d updates of %s in the stream, want %d", tc.name, got, tc.id, tc.want)
		}
	}
}
