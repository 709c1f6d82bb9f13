package cluster

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamgate/streamgate/internal/keys"
	"github.com/streamgate/streamgate/internal/ratelimit"
	"github.com/streamgate/streamgate/internal/stream"
)

// Refusals of Admit.
var (
	// ErrRateLimited means the connect went over the tenant's connect rate: Admitted.Rate says
	// when the window starts again.
	ErrRateLimited = errors.New("over the connect rate")
	// ErrAtCapacity means the tenant holds max_connections streams: Admitted.Total says how many.
	ErrAtCapacity = errors.New("at max_connections")
)

var (
	//go:embed admit.lua
	admitLua string

	admitScript = redis.NewScript(ratelimit.Lua + leaseLua + recordLua + stream.SnapshotLua + admitLua)
)

// Admission is what a stream costs in Redis when it opens, in one round trip: the tenant's
// connect rate, one of its max_connections (the node's lease share, see Leases), the session's
// record, and the tenant's position the stream starts from. Every key is the tenant's, so the
// script runs on one shard of a Redis Cluster.
type Admission struct {
	leases  *Leases
	history *stream.History
}

// NewAdmission returns the admission of streams on the node whose leases are l.
func NewAdmission(l *Leases, h *stream.History) *Admission {
	return &Admission{leases: l, history: h}
}

// Release gives back one of tenantID's connections that Admit took (Leases.Release).
func (a *Admission) Release(tenantID string) { a.leases.Release(tenantID) }

// Admit is one stream to admit.
type Admit struct {
	TenantID  string
	SessionID string
	// Rate is the tenant's connect rate; a zero Limit counts nothing.
	Rate ratelimit.Rate
	// Max is the tenant's max_connections; 0 takes no connection (the stream took over one
	// this node already holds).
	Max int
	// Record, when set, is saved if its Version is still the one in Redis (0: a new session).
	Record *SessionRecord
	TTL    time.Duration
	// Position is what to read of the tenant's history.
	Position *stream.SnapshotQuery
}

// Admitted is what Admit counted, took and read.
type Admitted struct {
	// Rate is the connect rate's standing after this connect, when one was counted.
	Rate ratelimit.Result
	// Leased is set when a connection was taken: give it back with Release.
	Leased bool
	// Total is the tenant's open connections over the cluster (after this one, when leased).
	Total    int
	Snapshot stream.Snapshot
	// Version is the saved record's new version.
	Version int64
}

// Admit counts, takes, saves and reads what a counts for, atomically. It fails with
// ErrRateLimited or ErrAtCapacity (nothing taken or saved; the rate counted, as every refused
// connect is), ErrRecordChanged when the record moved on since it was read (nothing counted),
// or another error when Redis cannot answer. What succeeds must be given back when the stream
// ends: the connection (Release) and the record.
func (a *Admission) Admit(ctx context.Context, ad Admit) (Admitted, error) {
	l := a.leases
	// A renewal writing absolute counts must not run between the script taking a
	// connection and this node counting it.
	l.renew.RLock()
	defer l.renew.RUnlock()

	save, version, channels, sub, connectedAt := "", "0", []byte("[]"), "", ""
	if r := ad.Record; r != nil {
		save, version = "save", strconv.FormatInt(r.Version, 10)
		channels, _ = json.Marshal(r.Channels)
		sub, connectedAt = r.Sub, r.ConnectedAt.UTC().Format(time.RFC3339Nano)
	}
	pk, pa := ad.Position.Keys(), ad.Position.Args()
	ks := make([]string, 0, 3+len(pk))
	ks = append(ks, keys.RateLimitStreamTenantFull(ad.TenantID), keys.Connections(ad.TenantID), keys.Session(ad.TenantID, ad.SessionID))
	ks = append(ks, pk...)
	args := make([]any, 0, 12+len(pa))
	args = append(args, 1, ad.Rate.Limit, ad.Rate.Period.Milliseconds(),
		l.nodeID, l.ttl.Milliseconds(), ad.Max,
		save, version, ad.TTL.Milliseconds(), channels, sub, connectedAt)
	args = append(args, pa...)

	reply, err := stream.RunScript(ctx, l.rdb, admitScript, ks, args...).Slice()
	if err != nil {
		return Admitted{}, fmt.Errorf("admit a stream of tenant %s: %w", ad.TenantID, err)
	}
	if len(reply) < 3 {
		return Admitted{}, fmt.Errorf("admit a stream of tenant %s: unexpected reply %v", ad.TenantID, reply)
	}
	var out Admitted
	if ad.Rate.Limit > 0 {
		count, _ := reply[1].(int64)
		pttl, _ := reply[2].(int64)
		out.Rate = ratelimit.ResultOf(ad.Rate, count, pttl, time.Now())
	}
	switch status, _ := reply[0].(string); {
	case status == "rate":
		return out, ErrRateLimited
	case status == "full" && len(reply) == 4:
		total, _ := reply[3].(int64)
		out.Total = int(total)
		return out, ErrAtCapacity
	case status == "changed":
		return out, ErrRecordChanged
	case status != "ok" || len(reply) != 6:
		return Admitted{}, fmt.Errorf("admit a stream of tenant %s: unexpected reply %v", ad.TenantID, reply)
	}
	total, _ := reply[3].(int64)
	out.Total = int(total)
	if ad.Max > 0 {
		out.Leased = true
		l.add(ad.TenantID, 1)
	}
	out.Version, _ = reply[5].(int64)
	if out.Snapshot, err = a.history.ReadSnapshot(ad.Position, reply[4]); err != nil {
		return out, err // the caller gives back the connection it now holds
	}
	return out, nil
}
