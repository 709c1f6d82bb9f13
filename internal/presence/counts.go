package presence

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/streamgate/streamgate/internal/keys"
)

// Totals is a tenant's presence now.
type Totals struct {
	// Channels is how many channels have members.
	Channels int64
	// Members is how many members those channels have, summed: a user on two channels counts
	// twice.
	Members int64
}

// Totals returns the presence totals of each tenant, in one round trip per Redis shard.
func (t *Tracker) Totals(ctx context.Context, tenantIDs ...string) (map[string]Totals, error) {
	channels := make([]*redis.IntCmd, len(tenantIDs))
	members := make([]*redis.StringCmd, len(tenantIDs))
	_, _ = t.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range tenantIDs {
			channels[i] = p.ZCard(ctx, keys.PresenceChannels(id))
			members[i] = p.Get(ctx, keys.PresenceCount(id))
		}
		return nil
	})
	out := make(map[string]Totals, len(tenantIDs))
	for i, id := range tenantIDs {
		c, err := channels[i].Result()
		if err != nil {
			return nil, fmt.Errorf("count presence: %w", err)
		}
		m, err := count(members[i])
		if err != nil {
			return nil, fmt.Errorf("count presence: %w", err)
		}
		out[id] = Totals{Channels: c, Members: m}
	}
	return out, nil
}

// ChannelCount is how many members one channel has now.
type ChannelCount struct {
	Channel string
	Members int64
}

// Busiest is a tenant's channels with the most members now.
type Busiest struct {
	Totals
	// Channels are the busiest channels, most members first, then by name.
	Channels []ChannelCount
}

// Busiest returns the tenant's totals and its limit channels with the most members, read
// together (one shard, one transaction).
func (t *Tracker) Busiest(ctx context.Context, tenantID string, limit int) (Busiest, error) {
	var (
		top     *redis.ZSliceCmd
		card    *redis.IntCmd
		members *redis.StringCmd
	)
	_, _ = t.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		top = p.ZRangeWithScores(ctx, keys.PresenceChannels(tenantID), 0, int64(limit)-1)
		card = p.ZCard(ctx, keys.PresenceChannels(tenantID))
		members = p.Get(ctx, keys.PresenceCount(tenantID))
		return nil
	})
	n, err := count(members)
	if err == nil {
		err = errors.Join(top.Err(), card.Err())
	}
	if err != nil {
		return Busiest{}, fmt.Errorf("read the busiest presence channels: %w", err)
	}
	out := Busiest{Totals: Totals{Channels: card.Val(), Members: n}, Channels: make([]ChannelCount, 0, len(top.Val()))}
	for _, z := range top.Val() {
		ch, _ := z.Member.(string)
		out.Channels = append(out.Channels, ChannelCount{Channel: ch, Members: int64(-z.Score)})
	}
	return out, nil
}

// count reads a counter that is missing when it is zero.
func count(c *redis.StringCmd) (int64, error) {
	n, err := c.Int64()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	return n, err
}
