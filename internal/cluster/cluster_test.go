package cluster

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamgate/streamgate/internal/keys"
	"github.com/streamgate/streamgate/internal/redistest"
	"github.com/streamgate/streamgate/internal/session"
	"github.com/streamgate/streamgate/internal/stream"
)

func TestHeartbeatsMakeTheClusterFigures(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Client()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	var delivered atomic.Uint64
	stats := func(conns int) func() session.NodeStats {
		return func() session.NodeStats {
			d := delivered.Load()
			return session.NodeStats{Connections: conns, Subscriptions: 2 * conns, Tenants: map[string]session.TenantStats{
				"tn_a": {Connections: conns, Subscriptions: 2 * conns, Delivered: d},
			}}
		}
	}
	ctxA, stopA := context.WithCancel(t.Context())
	ctxB, stopB := context.WithCancel(t.Context())
	doneA, doneB := make(chan error), make(chan error)
	go func() { doneA <- NewHeartbeat(rdb, "node-a", stats(2), quiet).Run(ctxA) }()
	go func() {
		doneB <- NewHeartbeat(rdb, "node-b", func() session.NodeStats { return session.NodeStats{} }, quiet).Run(ctxB)
	}()
	defer func() { stopB(); <-doneB }()

	v := NewView(rdb)
	v.maxAge = 0 // every read goes to Redis
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitFor("both nodes", func() bool {
		n, err := v.Nodes(t.Context())
		return err == nil && len(n) == 2
	})
	u, err := v.TenantUsage(t.Context(), "tn_a", "node-b")
	if err != nil || u.Connections != 2 || u.Subscriptions != 4 {
		t.Fatalf("usage without node-b %+v %v", u, err)
	}
	if u, _ := v.TenantUsage(t.Context(), "tn_a", "node-a"); u.Connections != 0 {
		t.Fatalf("usage without node-a %+v", u)
	}

	// Counters reach Redis as deltas and survive the node.
	delivered.Store(5)
	waitFor("5 delivered", func() bool {
		c, err := v.Counters(t.Context(), "tn_a")
		return err == nil && c["tn_a"].Delivered == 5
	})
	delivered.Store(8)
	stopA()
	if err := <-doneA; err != nil {
		t.Fatal(err)
	}
	// A stopping node withdraws its report at once, after a last count.
	n, err := v.Nodes(t.Context())
	if err != nil || len(n) != 1 || n[0].ID != "node-b" {
		t.Fatalf("nodes after node-a stopped: %+v %v", n, err)
	}
	if c, _ := v.Counters(t.Context(), "tn_a"); c["tn_a"].Delivered != 8 {
		t.Fatalf("delivered %d after the last report, want 8", c["tn_a"].Delivered)
	}
	if alive, _ := v.Alive(t.Context(), "node-a"); alive {
		t.Fatal("a stopped node is alive")
	}
}

// save writes rec, at its Version, as a stream's admission does.
func save(ctx context.Context, rdb redis.UniversalClient, rec SessionRecord) error {
	a := NewAdmission(NewLeases(rdb, rec.NodeID, slog.New(slog.DiscardHandler)), stream.NewHistory(rdb))
	_, err := a.Admit(ctx, Admit{TenantID: rec.TenantID, SessionID: rec.ID, Record: &rec, TTL: time.Hour,
		Position: stream.NewSnapshotQuery(rec.TenantID, nil, "", stream.Window{}, false)})
	return err
}

// Record writes are conditional: a write made on a stale read, or from a node the session has
// left, fails with ErrRecordChanged and changes nothing.
func TestRecordWritesAreConditional(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Client()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	recs := NewRecords(rdb)
	rec := SessionRecord{ID: "ses_1", TenantID: "tn_a", Sub: "u1", NodeID: "node-a", ConnectedAt: time.Now(), Channels: []string{"a"}}
	if err := save(ctx, rdb, rec); err != nil {
		t.Fatal(err)
	}
	read, err := recs.Load(ctx, "tn_a", "ses_1")
	if err != nil || read.Version != 1 {
		t.Fatalf("after the first save: %+v %v, want version 1", read, err)
	}
	// A sessions-API change made on that read.
	if err := recs.SetChannels(ctx, "tn_a", "ses_1", Expect{Node: "node-a", Version: 1}, []string{"a", "x"}, time.Hour); err != nil {
		t.Fatal(err)
	}
	// A resume that read version 1 too, and writes after the change: refused.
	stale := read
	stale.NodeID, stale.Channels = "node-b", []string{"a"}
	if err := save(ctx, rdb, stale); !errors.Is(err, ErrRecordChanged) {
		t.Errorf("save on a stale read: %v, want ErrRecordChanged", err)
	}
	if err := recs.SetChannels(ctx, "tn_a", "ses_1", Expect{Version: 1}, []string{"b"}, time.Hour); !errors.Is(err, ErrRecordChanged) {
		t.Errorf("change on a stale read: %v, want ErrRecordChanged", err)
	}
	if err := recs.SetChannels(ctx, "tn_a", "ses_1", Expect{Node: "node-b"}, []string{"b"}, time.Hour); !errors.Is(err, ErrRecordChanged) {
		t.Errorf("change from a node the record does not name: %v, want ErrRecordChanged", err)
	}
	if err := recs.SetChannels(ctx, "tn_a", "ses_2", Expect{}, []string{"b"}, time.Hour); !errors.Is(err, ErrSessionNotFound) {
		t.Errorf("change of no record: %v, want ErrSessionNotFound", err)
	}
	if n, _ := rdb.Exists(ctx, keys.Session("tn_a", "ses_2")).Result(); n != 0 {
		t.Error("a change of no record created one")
	}
	got, err := recs.Load(ctx, "tn_a", "ses_1")
	if err != nil {
		t.Fatal(err)
	}
	if got.Version != 2 || got.NodeID != "node-a" || !slices.Equal(got.Channels, []string{"a", "x"}) {
		t.Errorf("record %+v, want version 2 on node-a with [a x]: the refused writes changed it", got)
	}
	// The resume reads again and saves on what it read.
	stale.Version = got.Version
	stale.Channels = got.Channels
	if err := save(ctx, rdb, stale); err != nil {
		t.Errorf("save on a fresh read: %v", err)
	}
}
