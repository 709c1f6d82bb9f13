package jobs

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamgate/streamgate/internal/keys"
	"github.com/streamgate/streamgate/internal/redistest"
	"github.com/streamgate/streamgate/internal/stream"
)

// accepted is one update as the api accepted it.
type accepted struct {
	kind, id, fields string
}

// appendAll appends updates in order, as the api accepts them.
func appendAll(t *testing.T, up *Updates, tenantID string, updates []accepted) {
	t.Helper()
	for _, a := range updates {
		var f map[string]json.RawMessage
		if err := json.Unmarshal([]byte(a.fields), &f); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		err := up.Append(ctx, Update{TenantID: tenantID, Kind: a.kind, ID: a.id, Fields: f, Window: stream.Window{Events: 100, Seconds: 600}})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
	}
}

// abandon reads every unread update as consumer "dead" of group and never acknowledges them:
// what a worker leaves behind when it dies between reading updates and applying them. It
// returns how many it took.
func abandon(t *testing.T, rdb *redis.Client, group string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	n := 0
	for p := range keys.UpdatePartitions {
		if err := rdb.XGroupCreateMkStream(ctx, keys.Updates(p), group, "0").Err(); err != nil && err.Error() != "BUSYGROUP Consumer Group name already exists" {
			t.Fatal(err)
		}
		res, err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: group, Consumer: "dead",
			Streams: []string{keys.Updates(p), ">"}, Count: 1000, Block: -1}).Result()
		if err != nil && err != redis.Nil {
			t.Fatal(err)
		}
		for _, s := range res {
			n += len(s.Messages)
		}
	}
	return n
}

// jobsInOrder is what the contract says of a job's updates applied in the order accepted:
// unset fields keep their value, a new job is queued, and a finished job ignores what comes
// after. It returns the job's state after each update that changed it.
func jobsInOrder(t *testing.T, updates []accepted, id string) []map[string]any {
	t.Helper()
	state := map[string]any{"job_id": id, "status": "queued", "progress": nil, "message": nil, "output": nil, "error": nil}
	var states []map[string]any
	for _, u := range updates {
		if u.id != id {
			continue
		}
		if s := state["status"]; s == "succeeded" || s == "failed" || s == "cancelled" {
			continue
		}
		var f map[string]any
		if err := json.Unmarshal([]byte(u.fields), &f); err != nil {
			t.Fatal(err)
		}
		next := map[string]any{}
		for k, v := range state {
			next[k] = v
		}
		for k, v := range f {
			next[k] = v
		}
		state = next
		states = append(states, state)
	}
	return states
}

// published is the states a channel's subscribers were sent, in order, as its history holds
// them (the apply script appends and publishes each state in one step), without updated_at.
func published(t *testing.T, rdb *redis.Client, tenantID, channel, field string) []map[string]any {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	entries, err := rdb.XRange(ctx, keys.History(tenantID, channel), "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	for _, e := range entries {
		var ev map[string]json.RawMessage
		var state map[string]any
		if err := json.Unmarshal([]byte(fmt.Sprint(e.Values["d"])), &ev); err != nil {
			t.Fatalf("history entry %v: %v", e.Values, err)
		}
		if err := json.Unmarshal(ev[field], &state); err != nil {
			t.Fatalf("history entry %v: %v", e.Values, err)
		}
		delete(state, "updated_at")
		out = append(out, state)
	}
	return out
}

// A worker that dies holding updates leaves them pending until another worker claims them,
// ClaimIdle later. A live worker that took the same jobs' later updates meanwhile must wait
// for them, however much longer than MaxWait that is: going ahead applies them out of order,
// and the late ones are dropped as duplicates (a finish among them lost for good). So every
// job ends as its updates applied in the order accepted say, and its subscribers were sent
// each state in that order.
func TestOrderHoldsWhenAWorkerDiesHoldingEarlierUpdates(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Client()
	const tenantID, group = "tn_a", "workers"
	up := NewUpdates(rdb)

	// The dead worker takes each job's first updates, the live one the rest.
	first := []accepted{
		{UpdateJob, "a", `{"status":"running","message":"started"}`},
		{UpdateJob, "b", `{"status":"running"}`},
		{UpdateJob, "b", `{"status":"failed","error":"boom"}`},
		{UpdateJob, "c", `{"status":"running","progress":10}`},
		{UpdateWorkflow, "w", `{"status":"running","steps":[{"name":"fetch","status":"running"}]}`},
	}
	rest := []accepted{
		{UpdateJob, "a", `{"progress":50}`},
		{UpdateJob, "a", `{"status":"succeeded","progress":100,"output":{"rows":3}}`},
		{UpdateJob, "b", `{"status":"running","progress":90}`}, // after the failure: ignored
		{UpdateJob, "c", `{"progress":20}`},
		{UpdateJob, "c", `{"progress":30}`},
		{UpdateJob, "c", `{"status":"cancelled"}`},
		{UpdateStep, "w", `{"name":"store","status":"running"}`},
		{UpdateStep, "w", `{"name":"fetch","status":"succeeded"}`},
		{UpdateWorkflow, "w", `{"status":"succeeded"}`},
	}
	appendAll(t, up, tenantID, first)
	if n := abandon(t, rdb, group); n != len(first) {
		t.Fatalf("the dead worker took %d updates, want %d", n, len(first))
	}
	appendAll(t, up, tenantID, rest)

	// Claim idle well above the wait window, as with the defaults' one minute and a claim
	// idle over it, scaled down.
	w := NewWorker(rdb, WorkerConfig{Group: group, MaxWait: 200 * time.Millisecond, ClaimIdle: time.Second, Block: 50 * time.Millisecond},
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = w.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	deadline := time.Now().Add(30 * time.Second)
	for {
		bctx, bcancel := context.WithTimeout(t.Context(), 5*time.Second)
		pending, lag, err := Backlog(bctx, rdb, group)
		bcancel()
		if err == nil && pending == 0 && lag == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("updates still pending %d, unread %d (%v); worker %+v", pending, lag, err, w.Stats())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if s := w.Stats(); s.Lost != 0 || s.DeadLettered != 0 {
		t.Errorf("worker stats %+v: nothing was lost or dead-lettered", s)
	}

	all := append(append([]accepted(nil), first...), rest...)
	states := NewStates(stream.NewHistory(rdb))
	for _, id := range []string{"a", "b", "c"} {
		want := jobsInOrder(t, all, id)
		if got := published(t, rdb, tenantID, "job:"+id, "job"); !reflect.DeepEqual(got, want) {
			t.Errorf("job %s: subscribers were sent\n%v\nwant, in the order accepted,\n%v", id, got, want)
		}
		sctx, scancel := context.WithTimeout(t.Context(), 5*time.Second)
		raw, err := states.Job(sctx, tenantID, id)
		scancel()
		var final map[string]any
		if err == nil {
			err = json.Unmarshal(raw, &final)
		}
		delete(final, "updated_at")
		if err != nil || !reflect.DeepEqual(final, want[len(want)-1]) {
			t.Errorf("job %s: final state %v (%v), want %v", id, final, err, want[len(want)-1])
		}
	}

	type wfState struct {
		Status string `json:"status"`
		Steps  []struct {
			Name   string `json:"name"`
			Status string `json:"status"`
		} `json:"steps"`
	}
	var got []string
	for _, s := range published(t, rdb, tenantID, "workflow:w", "workflow") {
		b, _ := json.Marshal(s)
		var st wfState
		_ = json.Unmarshal(b, &st)
		got = append(got, fmt.Sprintf("%s %v", st.Status, st.Steps))
	}
	want := []string{
		"running [{fetch running}]",
		"running [{fetch running} {store running}]",
		"running [{fetch succeeded} {store running}]",
		"succeeded [{fetch succeeded} {store running}]",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("workflow w: subscribers were sent\n%q\nwant\n%q", got, want)
	}
}

// An update whose predecessor can never come (deleted from the stream) still goes ahead once it
// has waited MaxWait: a job is not stuck for good behind a lost update.
func TestUpdateGoesAheadOfAPredecessorThatCanNeverCome(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Client()
	const tenantID = "tn_a"
	up := NewUpdates(rdb)
	appendAll(t, up, tenantID, []accepted{
		{UpdateJob, "j", `{"status":"running","message":"lost"}`},
		{UpdateJob, "j", `{"progress":40}`},
		{UpdateJob, "j", `{"status":"succeeded"}`},
	})
	// The first update is gone before any worker read it: deleted by hand, say.
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	p := Partition(tenantID, UpdateJob, "j")
	entries, err := rdb.XRange(ctx, keys.Updates(p), "-", "+").Result()
	if err != nil || len(entries) != 3 {
		t.Fatalf("stream %v (%v)", entries, err)
	}
	if err := rdb.XDel(ctx, keys.Updates(p), entries[0].ID).Err(); err != nil {
		t.Fatal(err)
	}

	w := NewWorker(rdb, WorkerConfig{MaxWait: 200 * time.Millisecond, ClaimIdle: time.Second, Block: 50 * time.Millisecond},
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	wctx, wcancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = w.Run(wctx) }()
	t.Cleanup(func() { wcancel(); <-done })

	states := NewStates(stream.NewHistory(rdb))
	deadline := time.Now().Add(30 * time.Second)
	for {
		sctx, scancel := context.WithTimeout(t.Context(), 5*time.Second)
		raw, err := states.Job(sctx, tenantID, "j")
		scancel()
		var st struct {
			Status   string   `json:"status"`
			Progress *float64 `json:"progress"`
			Message  *string  `json:"message"`
		}
		if err == nil {
			_ = json.Unmarshal(raw, &st)
		}
		if st.Status == "succeeded" {
			if st.Progress == nil || *st.Progress != 40 || st.Message != nil {
				t.Errorf("final state %s, want succeeded with progress 40 and no message", raw)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the job is stuck behind its lost update: %s (%v); worker %+v", raw, err, w.Stats())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
