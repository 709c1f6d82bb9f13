package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamgate/streamgate/internal/keys"
)

// ErrSessionNotFound means no session record exists: unknown, or older than the tenant's
// history window.
var ErrSessionNotFound = errors.New("session not found")

// SessionRecord is what must survive a reconnect to another node: who the session belongs
// to, where it streams now, and its subscriptions (including those added through the sessions
// API).
type SessionRecord struct {
	ID          string    `json:"id"`
	TenantID    string    `json:"tenant_id"`
	Sub         string    `json:"sub"`
	NodeID      string    `json:"node_id"`
	ConnectedAt time.Time `json:"connected_at"`
	Channels    []string  `json:"channels"`
}

// Records keeps session records in Redis, each with a time to live of its tenant's history
// window: a session can be resumed exactly as long as its missed events can be replayed, on any
// node, and the sessions API finds the node that holds it.
type Records struct {
	rdb redis.UniversalClient
}

// NewRecords returns a record store on rdb.
func NewRecords(rdb redis.UniversalClient) *Records { return &Records{rdb: rdb} }

// Save writes the whole record with the given time to live.
func (s *Records) Save(ctx context.Context, rec SessionRecord, ttl time.Duration) error {
	chans, _ := json.Marshal(rec.Channels)
	key := keys.Session(rec.TenantID, rec.ID)
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, key, "sub", rec.Sub, "node", rec.NodeID,
			"connected_at", rec.ConnectedAt.UTC().Format(time.RFC3339Nano), "channels", chans)
		p.PExpire(ctx, key, ttl)
		return nil
	})
	if err != nil {
		return fmt.Errorf("save session %s: %w", rec.ID, err)
	}
	return nil
}

// SetChannels replaces the record's channels (a sessions-API change).
func (s *Records) SetChannels(ctx context.Context, tenantID, id string, channels []string, ttl time.Duration) error {
	chans, _ := json.Marshal(channels)
	key := keys.Session(tenantID, id)
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, key, "channels", chans)
		p.PExpire(ctx, key, ttl)
		return nil
	})
	if err != nil {
		return fmt.Errorf("save channels of session %s: %w", id, err)
	}
	return nil
}

// Load reads a record; ErrSessionNotFound if there is none.
func (s *Records) Load(ctx context.Context, tenantID, id string) (SessionRecord, error) {
	vals, err := s.rdb.HGetAll(ctx, keys.Session(tenantID, id)).Result()
	if err != nil {
		return SessionRecord{}, fmt.Errorf("load session %s: %w", id, err)
	}
	if len(vals) == 0 || vals["sub"] == "" {
		return SessionRecord{}, ErrSessionNotFound
	}
	rec := SessionRecord{ID: id, TenantID: tenantID, Sub: vals["sub"], NodeID: vals["node"]}
	rec.ConnectedAt, _ = time.Parse(time.RFC3339Nano, vals["connected_at"])
	if err := json.Unmarshal([]byte(vals["channels"]), &rec.Channels); err != nil {
		return SessionRecord{}, fmt.Errorf("decode session %s: %w", id, err)
	}
	return rec, nil
}

// Delete removes a record, so the session cannot be resumed (an operator evicted it).
func (s *Records) Delete(ctx context.Context, tenantID, id string) error {
	if err := s.rdb.Del(ctx, keys.Session(tenantID, id)).Err(); err != nil {
		return fmt.Errorf("delete session %s: %w", id, err)
	}
	return nil
}

// Live names a session whose record a node keeps fresh.
type Live struct {
	TenantID, ID string
	TTL          time.Duration
}

// Touch extends the records of live sessions, pipelined.
func (s *Records) Touch(ctx context.Context, live []Live) error {
	if len(live) == 0 {
		return nil
	}
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, l := range live {
			p.PExpire(ctx, keys.Session(l.TenantID, l.ID), l.TTL)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("refresh session records: %w", err)
	}
	return nil
}
