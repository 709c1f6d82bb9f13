// Package cluster makes one node's figures the cluster's: every node reports its sessions and
// counters into Redis on a heartbeat, and any node reads the live nodes' reports back. A node
// whose heartbeat expires stops counting.
package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamgate/streamgate/internal/keys"
	"github.com/streamgate/streamgate/internal/session"
)

// Timing of the heartbeat: a report is at most Interval old, and a node that stops reporting
// leaves the figures after TTL.
const (
	Interval = time.Second
	TTL      = 5 * time.Second
)

// NodeReport is one node's heartbeat.
type NodeReport struct {
	ID            string                  `json:"id"`
	StartedAt     time.Time               `json:"started_at"`
	LastSeen      time.Time               `json:"last_seen"`
	Connections   int                     `json:"connections"`
	Subscriptions int                     `json:"subscriptions"`
	Tenants       map[string]TenantReport `json:"tenants,omitempty"`
}

// TenantReport is a tenant's live usage on one node.
type TenantReport struct {
	Connections   int `json:"c"`
	Subscriptions int `json:"s"`
}

// Counters are a tenant's running totals, kept in Redis so that they survive node restarts.
type Counters struct {
	Delivered uint64 `json:"delivered_total"`
	Dropped   uint64 `json:"dropped_total"`
	Evicted   uint64 `json:"evicted_total"`
}

// Heartbeat reports this node's figures every Interval.
type Heartbeat struct {
	rdb     redis.UniversalClient
	nodeID  string
	started time.Time
	stats   func() session.NodeStats
	log     *slog.Logger

	last map[string]session.TenantStats // counters at the previous report, for deltas
}

// NewHeartbeat returns the heartbeat of node nodeID, reading its figures from stats.
func NewHeartbeat(rdb redis.UniversalClient, nodeID string, stats func() session.NodeStats, log *slog.Logger) *Heartbeat {
	return &Heartbeat{rdb: rdb, nodeID: nodeID, started: time.Now().UTC(), stats: stats, log: log,
		last: make(map[string]session.TenantStats)}
}

// Run reports until ctx ends, then withdraws the node's report so it stops counting at once.
func (h *Heartbeat) Run(ctx context.Context) error {
	t := time.NewTicker(Interval)
	defer t.Stop()
	failing := false
	for {
		err := h.report(ctx)
		if ctx.Err() != nil {
			break
		}
		if err != nil && !failing {
			h.log.Warn("heartbeat", "err", err)
		}
		failing = err != nil
		select {
		case <-ctx.Done():
		case <-t.C:
			continue
		}
		break
	}
	wctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	h.report(wctx) // the last counters
	_, err := h.rdb.Pipelined(wctx, func(p redis.Pipeliner) error {
		p.Del(wctx, keys.NodeReport(h.nodeID))
		p.ZRem(wctx, keys.Nodes(), h.nodeID)
		return nil
	})
	if err != nil {
		h.log.Debug("withdraw heartbeat", "err", err)
	}
	return nil
}

func (h *Heartbeat) report(ctx context.Context) error {
	st := h.stats()
	now := time.Now().UTC()
	rep := NodeReport{ID: h.nodeID, StartedAt: h.started, LastSeen: now,
		Connections: st.Connections, Subscriptions: st.Subscriptions, Tenants: make(map[string]TenantReport, len(st.Tenants))}
	for id, ts := range st.Tenants {
		if ts.Connections > 0 || ts.Subscriptions > 0 {
			rep.Tenants[id] = TenantReport{Connections: ts.Connections, Subscriptions: ts.Subscriptions}
		}
	}
	raw, err := json.Marshal(rep)
	if err != nil {
		return err
	}
	_, err = h.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, keys.NodeReport(h.nodeID), raw, TTL)
		p.ZAdd(ctx, keys.Nodes(), redis.Z{Score: float64(now.UnixMilli()), Member: h.nodeID})
		p.ZRemRangeByScore(ctx, keys.Nodes(), "-inf", strconv.FormatInt(now.Add(-TTL).UnixMilli(), 10))
		for id, ts := range st.Tenants {
			prev := h.last[id]
			for _, f := range []struct {
				field    string
				now, was uint64
			}{{"delivered", ts.Delivered, prev.Delivered}, {"dropped", ts.Dropped, prev.Dropped}, {"evicted", ts.Evicted, prev.Evicted}} {
				if f.now > f.was {
					p.HIncrBy(ctx, keys.Counters(id), f.field, int64(f.now-f.was))
				}
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("report node %s: %w", h.nodeID, err)
	}
	// Only what reached Redis is remembered as reported, so a failed beat is retried whole.
	for id, ts := range st.Tenants {
		h.last[id] = ts
	}
	return nil
}

// View reads the cluster's figures, cached for a second: at most Interval+1 s old.
type View struct {
	rdb    redis.UniversalClient
	maxAge time.Duration

	// mu is held across a fetch, so that a burst of requests shares one.
	mu    sync.Mutex
	at    time.Time
	nodes []NodeReport
}

// NewView returns a reader of the cluster's figures.
func NewView(rdb redis.UniversalClient) *View {
	return &View{rdb: rdb, maxAge: time.Second}
}

// Nodes returns the reports of the live nodes, ordered by id.
func (v *View) Nodes(ctx context.Context) ([]NodeReport, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if time.Since(v.at) < v.maxAge {
		return v.nodes, nil
	}
	nodes, err := v.fetch(ctx)
	if err != nil {
		return nil, err
	}
	v.nodes, v.at = nodes, time.Now()
	return nodes, nil
}

func (v *View) fetch(ctx context.Context) ([]NodeReport, error) {
	since := strconv.FormatInt(time.Now().Add(-TTL).UnixMilli(), 10)
	ids, err := v.rdb.ZRangeByScore(ctx, keys.Nodes(), &redis.ZRangeBy{Min: since, Max: "+inf"}).Result()
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	cmds := make([]*redis.StringCmd, len(ids))
	_, err = v.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			cmds[i] = p.Get(ctx, keys.NodeReport(id))
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("read node reports: %w", err)
	}
	out := make([]NodeReport, 0, len(ids))
	for _, c := range cmds {
		raw, err := c.Bytes()
		if err != nil {
			continue // expired between the two reads: the node is gone
		}
		var r NodeReport
		if json.Unmarshal(raw, &r) == nil {
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// Alive reports whether node id has a live heartbeat.
func (v *View) Alive(ctx context.Context, id string) (bool, error) {
	nodes, err := v.Nodes(ctx)
	if err != nil {
		return false, err
	}
	for _, n := range nodes {
		if n.ID == id {
			return true, nil
		}
	}
	return false, nil
}

// TenantUsage sums a tenant's connections and subscriptions over the live nodes other than
// except (the caller's own node, whose figures it knows exactly).
func (v *View) TenantUsage(ctx context.Context, tenantID, except string) (TenantReport, error) {
	nodes, err := v.Nodes(ctx)
	if err != nil {
		return TenantReport{}, err
	}
	var sum TenantReport
	for _, n := range nodes {
		if n.ID == except {
			continue
		}
		t := n.Tenants[tenantID]
		sum.Connections += t.Connections
		sum.Subscriptions += t.Subscriptions
	}
	return sum, nil
}

// Counters reads the running totals of tenants (delivered, dropped, evicted).
func (v *View) Counters(ctx context.Context, tenantIDs ...string) (map[string]Counters, error) {
	cmds := make([]*redis.MapStringStringCmd, len(tenantIDs))
	_, err := v.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range tenantIDs {
			cmds[i] = p.HGetAll(ctx, keys.Counters(id))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read counters: %w", err)
	}
	out := make(map[string]Counters, len(tenantIDs))
	for i, id := range tenantIDs {
		m := cmds[i].Val()
		num := func(k string) uint64 { n, _ := strconv.ParseUint(m[k], 10, 64); return n }
		out[id] = Counters{Delivered: num("delivered"), Dropped: num("dropped"), Evicted: num("evicted")}
	}
	return out, nil
}
