package cluster

import (
	"context"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/streamgate/streamgate/internal/redistest"
	"github.com/streamgate/streamgate/internal/session"
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
