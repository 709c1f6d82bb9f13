package cluster

import (
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/streamgate/streamgate/internal/keys"
	"github.com/streamgate/streamgate/internal/ratelimit"
	"github.com/streamgate/streamgate/internal/redistest"
	"github.com/streamgate/streamgate/internal/stream"
)

// A stream's admission counts the connect, takes a connection, saves the record and reads the
// position; a refused one takes and saves nothing.
func TestAdmissionTakesNothingWhenItRefuses(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Client()
	ctx := testCtx(t)
	leases := NewLeases(rdb, "node-a", slog.New(slog.DiscardHandler))
	history := stream.NewHistory(rdb)
	a := NewAdmission(leases, history)
	w := stream.Window{Events: 100, Seconds: 3600}
	pub := stream.NewPublisher(rdb)
	if _, err := pub.Publish(ctx, "tn_a", w, ratelimit.Rate{}, []stream.Event{{Channel: "x", Event: "e", Data: []byte(`1`)}}, ""); err != nil {
		t.Fatal(err)
	}
	rate := ratelimit.Rate{Limit: 3, Period: time.Minute}
	admit := func(id string, max int, version int64) (Admitted, error) {
		t.Helper()
		rec := &SessionRecord{ID: id, TenantID: "tn_a", Sub: "u", NodeID: "node-a", ConnectedAt: time.Now(), Channels: []string{"x"}, Version: version}
		return a.Admit(ctx, Admit{TenantID: "tn_a", SessionID: id, Rate: rate, Max: max, Record: rec, TTL: time.Hour,
			Position: stream.NewSnapshotQuery("tn_a", []string{"x"}, "", w, false)})
	}
	records := NewRecords(rdb)
	connections := func() string {
		t.Helper()
		return rdb.HGet(ctx, keys.Connections("tn_a"), "node-a").Val()
	}

	got, err := admit("ses_1", 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	want, err := history.Snapshot(ctx, "tn_a", []string{"x"}, "", w, false)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Leased || got.Total != 1 || got.Version != 1 || got.Snapshot.LastID != want.LastID || got.Snapshot.Epoch != want.Epoch || want.Seq != 1 {
		t.Fatalf("admitted %+v, want a connection (1 open), record version 1, position %+v", got, want)
	}
	if got.Rate.Remaining != 2 || got.Rate.Reached {
		t.Errorf("rate after the first connect: %+v, want 2 remaining", got.Rate)
	}
	if rec, err := records.Load(ctx, "tn_a", "ses_1"); err != nil || rec.NodeID != "node-a" || rec.Sub != "u" {
		t.Errorf("record after admission: %+v, %v", rec, err)
	}

	// At max_connections: the connect counts against the rate, nothing else is written.
	before := connections()
	got, err = admit("ses_2", 1, 0)
	if !errors.Is(err, ErrAtCapacity) || got.Total != 1 || got.Leased {
		t.Fatalf("at the cap: %+v, %v; want ErrAtCapacity with 1 open", got, err)
	}
	if _, err := records.Load(ctx, "tn_a", "ses_2"); !errors.Is(err, ErrSessionNotFound) {
		t.Errorf("a refused stream's record was saved (%v)", err)
	}
	if after := connections(); after != before {
		t.Errorf("connections %q after a refusal, %q before", after, before)
	}

	// A record that moved on since it was read: nothing counted, nothing taken.
	if _, err := admit("ses_1", 2, 7); !errors.Is(err, ErrRecordChanged) {
		t.Fatalf("stale version: %v, want ErrRecordChanged", err)
	}
	if n := rdb.Get(ctx, keys.RateLimitStreamTenantFull("tn_a")).Val(); n != "2" {
		t.Errorf("rate counter %q after a stale record, want 2 (not counted)", n)
	}

	// Over the rate: refused, nothing taken or saved; the refusal counts, as ulule's does.
	if _, err := admit("ses_3", 5, 0); err != nil {
		t.Fatal(err)
	}
	before = connections()
	got, err = admit("ses_4", 5, 0)
	if !errors.Is(err, ErrRateLimited) || !got.Rate.Reached || got.Rate.Remaining != 0 || got.Leased {
		t.Fatalf("over the rate: %+v, %v; want ErrRateLimited", got, err)
	}
	if until := time.Until(got.Rate.Reset); until <= 0 || until > time.Minute+time.Second {
		t.Errorf("rate resets in %s, want within the minute", until)
	}
	if _, err := records.Load(ctx, "tn_a", "ses_4"); !errors.Is(err, ErrSessionNotFound) {
		t.Errorf("a rate-limited stream's record was saved (%v)", err)
	}
	if after := connections(); after != before {
		t.Errorf("connections %q after a rate refusal, %q before", after, before)
	}
	if ttl := rdb.PTTL(ctx, keys.RateLimitStreamTenantFull("tn_a")).Val(); ttl <= 0 {
		t.Errorf("the rate counter has no window (PTTL %s)", ttl)
	}
}
