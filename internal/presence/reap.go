package presence

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamgate/streamgate/internal/keys"
)

// Reaping bounds: leases looked at per round, entries taken back per script call.
const (
	reapLeases = 100
	reapBatch  = 200
)

// Reap takes back what the holders whose lease ended held (their nodes died, or moved their
// members to a new holder), and returns how many holders it cleared. Several nodes may reap at
// once: each entry is taken back by exactly one of them.
func (t *Tracker) Reap(ctx context.Context) (int, error) {
	now := strconv.FormatInt(time.Now().UnixMilli(), 10)
	ended, err := t.rdb.ZRangeByScore(ctx, keys.PresenceLeaseIndex(), &redis.ZRangeBy{Min: "-inf", Max: now, Count: reapLeases}).Result()
	if err != nil {
		return 0, fmt.Errorf("list ended presence leases: %w", err)
	}
	cleared := 0
	var errs []error
	for _, e := range ended {
		tenantID, holder, ok := strings.Cut(e, "\n")
		if !ok {
			t.rdb.ZRem(ctx, keys.PresenceLeaseIndex(), e)
			continue
		}
		done, err := t.reap(ctx, tenantID, holder)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if done {
			if err := t.rdb.ZRem(ctx, keys.PresenceLeaseIndex(), e).Err(); err != nil {
				errs = append(errs, err)
				continue
			}
			cleared++
		}
	}
	return cleared, errors.Join(errs...)
}

// reap takes back everything one holder held, a batch per script call, and reports whether it
// holds nothing more. It stops at once, false, when the lease turns out to run.
func (t *Tracker) reap(ctx context.Context, tenantID, holder string) (bool, error) {
	pn := keys.PresenceHolder(tenantID, holder)
	for range 1000 { // passes; each ends with the holder empty unless it keeps changing
		var cursor uint64
		for {
			fields, next, err := t.rdb.HScan(ctx, pn, cursor, "", reapBatch).Result()
			if err != nil {
				return false, fmt.Errorf("reap presence of %s: %w", holder, err)
			}
			if len(fields) > 0 {
				status, err := t.reapBatch(ctx, tenantID, holder, fields)
				if err != nil || status == "alive" {
					return false, err
				}
			}
			if cursor = next; cursor == 0 {
				break
			}
		}
		status, err := t.reapBatch(ctx, tenantID, holder, nil)
		if err != nil || status != "more" {
			return status == "done", err
		}
	}
	return false, nil
}

// reapBatch runs the reap script on one batch of the holder's entries (HSCAN's field, value
// pairs) and reports its status: alive, more or done.
func (t *Tracker) reapBatch(ctx context.Context, tenantID, holder string, fields []string) (string, error) {
	ks := []string{keys.PresenceLeases(tenantID), keys.PresenceHolder(tenantID, holder), keys.PresenceChannels(tenantID), keys.PresenceCount(tenantID)}
	args := []any{holder, MaxEventMembers}
	for i := 0; i+1 < len(fields); i += 2 {
		channel, sub, ok := strings.Cut(fields[i], "\n")
		if !ok {
			continue
		}
		ks = append(ks, keys.PresenceMembers(tenantID, channel), keys.PresenceOrder(tenantID, channel))
		args = append(args, channel, sub, keys.Channel(tenantID, channel))
	}
	cmds, err := t.evalAll(ctx, t.scripts.reap, 1, func(int) ([]string, []any) { return ks, args })
	if err != nil {
		return "", fmt.Errorf("reap presence of %s: %w", holder, err)
	}
	out, err := cmds[0].StringSlice()
	if err != nil || len(out) == 0 {
		return "", fmt.Errorf("reap presence of %s: %v", holder, err)
	}
	for i := 1; i+2 < len(out); i += 3 {
		t.changed(Change{TenantID: tenantID, Channel: out[i], Sub: out[i+1], Info: json.RawMessage(out[i+2])})
	}
	return out[0], nil
}

// Member is one user present on a channel.
type Member struct {
	Sub string
	// Info is the info claim of the user's most recently joined session, or JSON null.
	Info     json.RawMessage
	Sessions int
	JoinedAt time.Time
}

// List is a channel's members, oldest first (then by sub).
type List struct {
	// Count is how many members the channel has, exactly.
	Count   int
	Members []Member
	// Truncated is set when Count is more than the members listed.
	Truncated bool
}

// Read returns at most limit members of a tenant's channel.
func (t *Tracker) Read(ctx context.Context, tenantID, channel string, limit int) (List, error) {
	cmds, err := t.evalAll(ctx, t.scripts.read, 1, func(int) ([]string, []any) {
		return []string{keys.PresenceOrder(tenantID, channel), keys.PresenceMembers(tenantID, channel)}, []any{limit}
	})
	if err == nil {
		err = cmds[0].Err()
	}
	if err != nil {
		return List{}, fmt.Errorf("read presence of %s: %w", channel, err)
	}
	vals, _ := cmds[0].Slice()
	if len(vals) == 0 {
		return List{}, fmt.Errorf("read presence of %s: empty reply", channel)
	}
	count, _ := vals[0].(int64)
	l := List{Count: int(count), Members: make([]Member, 0, (len(vals)-1)/3)}
	for i := 1; i+2 < len(vals); i += 3 {
		sub, _ := vals[i].(string)
		score, _ := vals[i+1].(string)
		v, _ := vals[i+2].(string)
		ms, _ := strconv.ParseInt(score, 10, 64)
		n, info, _ := strings.Cut(v, " ")
		sessions, _ := strconv.Atoi(n)
		l.Members = append(l.Members, Member{Sub: sub, Info: json.RawMessage(info), Sessions: sessions, JoinedAt: time.UnixMilli(ms).UTC()})
	}
	l.Truncated = l.Count > len(l.Members)
	return l, nil
}
