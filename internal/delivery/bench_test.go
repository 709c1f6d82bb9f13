package delivery

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	streamgate "github.com/streamgate/streamgate"
	"github.com/streamgate/streamgate/internal/cluster"
	"github.com/streamgate/streamgate/internal/ratelimit"
	"github.com/streamgate/streamgate/internal/redistest"
	"github.com/streamgate/streamgate/internal/session"
	"github.com/streamgate/streamgate/internal/stream"
	"github.com/streamgate/streamgate/internal/tenant"
)

// commandCounter counts the round trips a client makes to Redis (a pipeline is one).
type commandCounter struct{ n atomic.Int64 }

func (c *commandCounter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c *commandCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.n.Add(1)
		return next(ctx, cmd)
	}
}

func (c *commandCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.n.Add(1)
		return next(ctx, cmds)
	}
}

// BenchmarkOpenClose is a new stream's connect and its end, on a node whose hub already
// receives the channel: what Redis is asked (redis-trips/op, counted by the client; the
// connect rate is counted as the SSE endpoint has it counted) and what the node allocates.
func BenchmarkOpenClose(b *testing.B) {
	rdb := redistest.Start(b).Client()
	trips := &commandCounter{}
	rdb.AddHook(trips)
	tn := tenant.Tenant{ID: streamgate.NewID("tn_"), Name: "Bench", Limits: tenant.DefaultLimits()}
	tn.Limits.MaxConnections = 1 << 30
	leases := cluster.NewLeases(rdb, "node-a", slog.New(slog.DiscardHandler))
	svc := New(Config{NodeID: "node-a"}, Deps{
		Registry:  session.NewRegistry("node-a", session.Config{}),
		Hub:       nopHub{},
		History:   stream.NewHistory(rdb),
		Records:   cluster.NewRecords(rdb),
		Nodes:     loneNode{},
		Admission: cluster.NewAdmission(leases, stream.NewHistory(rdb)),
		Tenants:   staticTenants{tn},
	}, slog.New(slog.DiscardHandler))
	claims := tenant.Claims{TenantID: tn.ID, KeyID: "sig_bench", Sub: "u", Channels: []string{"*"}, ExpiresAt: time.Now().Add(time.Hour)}
	req := Request{Claims: claims, Tenant: tn, Channels: []string{"chat.room"}, Rate: ratelimit.Rate{Limit: 1 << 40, Period: time.Hour}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	// Warm the script cache: EVALSHA's first NOSCRIPT and its EVAL are not the steady state.
	if st, err := svc.Open(ctx, req); err != nil {
		b.Fatal(err)
	} else {
		st.Close()
	}
	trips.n.Store(0)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		st, err := svc.Open(ctx, req)
		if err != nil {
			b.Fatal(err)
		}
		st.Close()
	}
	b.StopTimer()
	b.ReportMetric(float64(trips.n.Load())/float64(b.N), "redis-trips/op")
}
