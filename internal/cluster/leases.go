package cluster

import (
	"context"
	_ "embed"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamgate/streamgate/internal/keys"
)

// Lease timing: a node renews its shares of the tenants' connection counts every LeaseRenew,
// and a share it stops renewing (the node died) stops counting LeaseTTL after its last renewal.
const (
	LeaseTTL   = 15 * time.Second
	LeaseRenew = LeaseTTL / 3
)

var (
	//go:embed lease.lua
	leaseLua string
	//go:embed leases.lua
	leasesLua string

	leasesScript = redis.NewScript(leaseLua + leasesLua)
)

// Leases keeps the exact, cluster-wide count of each tenant's open streams behind
// max_connections. Each node holds a lease on its share of a tenant's count: a stream's
// admission (Admission.Admit) takes one connection atomically against the cap, Release gives it
// back, and Run renews the node's shares with its own exact counts, so a lost release heals at the next renewal and
// a dead node's share expires with its lease.
//
// The count is exact while Redis answers: two nodes cannot both take the last connection. It
// can run over the cap only when Redis forgets the hash (a restart without persistence) until
// every node has renewed, at most LeaseRenew later.
type Leases struct {
	rdb    redis.UniversalClient
	nodeID string
	ttl    time.Duration
	log    *slog.Logger

	// renew excludes Admit and Release (readers) while it writes absolute counts, so that a
	// renewal never overwrites a change made in Redis but not yet counted here.
	renew  sync.RWMutex
	mu     sync.Mutex
	counts map[string]int // tenant → this node's open streams; 0 until the next renewal clears it
}

// NewLeases returns the connection counts of node nodeID.
func NewLeases(rdb redis.UniversalClient, nodeID string, log *slog.Logger) *Leases {
	return &Leases{rdb: rdb, nodeID: nodeID, ttl: LeaseTTL, log: log, counts: make(map[string]int)}
}

// Release gives back a connection a stream's admission (Admission.Admit) took. When Redis cannot be reached the local count
// still drops, and the next renewal corrects Redis.
func (l *Leases) Release(tenantID string) {
	l.renew.RLock()
	defer l.renew.RUnlock()
	l.add(tenantID, -1)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := l.run(ctx, tenantID, "release", 0); err != nil {
		l.log.Warn("release a connection; the next renewal corrects it", "tenant", tenantID, "err", err)
	}
}

func (l *Leases) add(tenantID string, d int) {
	l.mu.Lock()
	l.counts[tenantID] += d
	l.mu.Unlock()
}

func (l *Leases) run(ctx context.Context, tenantID, op string, n int) ([]int64, error) {
	args := []any{op, l.nodeID, l.ttl.Milliseconds(), n}
	return leasesScript.Run(ctx, l.rdb, []string{keys.Connections(tenantID)}, args...).Int64Slice()
}

// Renew writes this node's exact count for every tenant it holds or held connections of, and
// extends the leases. Tenants whose count reached 0 are forgotten once written.
func (l *Leases) Renew(ctx context.Context) error {
	l.renew.Lock()
	defer l.renew.Unlock()
	l.mu.Lock()
	counts := make(map[string]int, len(l.counts))
	for id, n := range l.counts {
		counts[id] = n
	}
	l.mu.Unlock()
	if len(counts) == 0 {
		return nil
	}
	err := l.renewAll(ctx, counts)
	if err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT") {
		// A restarted Redis forgot the script, and a pipeline cannot fall back: load, redo.
		if err = leasesScript.Load(ctx, l.rdb).Err(); err == nil {
			err = l.renewAll(ctx, counts)
		}
	}
	if err != nil {
		return fmt.Errorf("renew connection leases of %d tenants: %w", len(counts), err)
	}
	l.mu.Lock()
	for id, n := range counts {
		if n <= 0 && l.counts[id] == n {
			delete(l.counts, id)
		}
	}
	l.mu.Unlock()
	return nil
}

// renewAll writes the counts in one pipeline of EVALSHA calls.
func (l *Leases) renewAll(ctx context.Context, counts map[string]int) error {
	_, err := l.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for id, n := range counts {
			args := []any{"renew", l.nodeID, l.ttl.Milliseconds(), n}
			leasesScript.EvalSha(ctx, p, []string{keys.Connections(id)}, args...)
		}
		return nil
	})
	return err
}

// Run renews the leases every LeaseRenew until ctx ends.
func (l *Leases) Run(ctx context.Context) error {
	t := time.NewTicker(LeaseRenew)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if err := l.Renew(ctx); err != nil && ctx.Err() == nil {
			l.log.Warn("renew connection leases", "err", err)
		}
	}
}
