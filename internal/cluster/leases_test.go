package cluster

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/streamgate/streamgate/internal/keys"
	"github.com/streamgate/streamgate/internal/redistest"
	"github.com/streamgate/streamgate/internal/stream"
)

// acquire takes one of tenantID's connections for l's node as a stream's admission does.
func acquire(ctx context.Context, l *Leases, tenantID string, max int) (ok bool, total int, err error) {
	got, err := NewAdmission(l, stream.NewHistory(l.rdb)).Admit(ctx, Admit{TenantID: tenantID, SessionID: "ses_lease", Max: max,
		Position: stream.NewSnapshotQuery(tenantID, nil, "", stream.Window{}, false)})
	if errors.Is(err, ErrAtCapacity) {
		return false, got.Total, nil
	}
	return got.Leased, got.Total, err
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// Nodes racing for the last connections of a tenant never take more than the cap between them.
func TestLeasesHoldTheCapUnderRacingNodes(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Client()
	ctx := testCtx(t)
	nodes := []*Leases{
		NewLeases(rdb, "node-a", slog.New(slog.DiscardHandler)),
		NewLeases(rdb, "node-b", slog.New(slog.DiscardHandler)),
		NewLeases(rdb, "node-c", slog.New(slog.DiscardHandler)),
	}
	const max = 7
	held := make([]atomic.Int64, len(nodes)) // connections each node took
	var wg sync.WaitGroup
	for i, l := range nodes {
		for range 10 {
			wg.Go(func() {
				ok, _, err := acquire(ctx, l, "tn_a", max)
				if err != nil {
					t.Error(err)
				}
				if ok {
					held[i].Add(1)
				}
			})
		}
	}
	wg.Wait()
	taken, holder := int64(0), 0
	for i := range held {
		taken += held[i].Load()
		if held[i].Load() > 0 {
			holder = i // the last node that took one: another than nodes[0] where it can
		}
	}
	if taken != max {
		t.Fatalf("%d connections taken, want exactly %d", taken, max)
	}
	if ok, total, _ := acquire(ctx, nodes[0], "tn_a", max); ok || total != max {
		t.Fatalf("at the cap: ok=%v total=%d", ok, total)
	}
	// A node that took one gives it back (which nodes won the race varies; the first may have
	// won all of them).
	nodes[holder].Release("tn_a")
	if ok, _, _ := acquire(ctx, nodes[0], "tn_a", max); !ok {
		t.Fatal("a released connection could not be taken again")
	}
	// Other tenants have their own count.
	if ok, _, _ := acquire(ctx, nodes[0], "tn_b", 1); !ok {
		t.Fatal("another tenant was refused")
	}
}

// A node that dies stops counting when its lease ends; a live node's renewals keep it counting
// and heal a lost release.
func TestLeasesOfADeadNodeExpire(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	rdb := srv.Client()
	ctx := testCtx(t)
	live := NewLeases(rdb, "node-live", slog.New(slog.DiscardHandler))
	dead := NewLeases(rdb, "node-dead", slog.New(slog.DiscardHandler))
	live.ttl, dead.ttl = 300*time.Millisecond, 300*time.Millisecond
	for _, l := range []*Leases{live, dead} {
		if ok, _, err := acquire(ctx, l, "tn_a", 2); !ok || err != nil {
			t.Fatalf("acquire: %v %v", ok, err)
		}
	}
	if ok, _, _ := acquire(ctx, live, "tn_a", 2); ok {
		t.Fatal("a third connection was taken with a cap of 2")
	}
	// A release Redis never saw: the live node's renewal writes its true count.
	live.add("tn_a", -1)
	live.add("tn_a", 1)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := live.Renew(ctx); err != nil {
			t.Fatal(err)
		}
		ok, total, err := acquire(ctx, live, "tn_a", 2)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			if total != 2 {
				t.Fatalf("after the dead node's lease ended, total %d, want 2", total)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the dead node's connection still counts")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// A Redis that forgot its scripts (a restart) is renewed all the same.
	if err := rdb.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if err := live.Renew(ctx); err != nil {
		t.Fatalf("renew after SCRIPT FLUSH: %v", err)
	}
	// The live node's count survives past several lease times while it renews.
	for range 4 {
		time.Sleep(150 * time.Millisecond)
		if err := live.Renew(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if ok, _, _ := acquire(ctx, live, "tn_a", 2); ok {
		t.Fatal("a renewed lease stopped counting")
	}
	// Back to zero: the node's field is gone.
	live.Release("tn_a")
	live.Release("tn_a")
	if err := live.Renew(ctx); err != nil {
		t.Fatal(err)
	}
	if n, err := rdb.HLen(ctx, keys.Connections("tn_a")).Result(); err != nil || n != 0 {
		t.Fatalf("fields left: %d %v", n, err)
	}
}
