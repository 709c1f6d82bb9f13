package stream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"

	streamgate "github.com/streamgate/streamgate"
	"github.com/streamgate/streamgate/internal/keys"
)

// Message is one published event as a history read returns it.
type Message struct {
	ID          string
	Event       string
	Data        json.RawMessage
	PublishedAt string
}

// Page is a part of one channel's history window, oldest first.
type Page struct {
	Messages []Message
	// Truncated is set when events after the requested position are gone: it lies before the
	// history window, or belongs to an earlier epoch of the tenant's log.
	Truncated bool
}

// Page reads at most limit events of channel after the event id after ("" for the start of the
// window). epoch is the tenant epoch the position was taken in, or "" when unknown (a bare event
// id). A position of another epoch, or beyond the tenant's newest event (its counter started
// again), is truncated and the page starts at the beginning of the window. The position, the
// trim marks and the events are read in one transaction, so that Truncated is exact.
func (h *History) Page(ctx context.Context, tenantID, channel, epoch, after string, limit int, w Window) (Page, error) {
	var (
		pos     *redis.SliceCmd
		trimmed *redis.SliceCmd
		exists  *redis.IntCmd
		rng     *redis.XMessageSliceCmd
	)
	log := keys.History(tenantID, channel)
	start := "-"
	if after != "" {
		start = "(" + after
	}
	_, err := h.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSetNX(ctx, keys.Sequence(tenantID), "epoch", NewEpoch())
		pos = p.HMGet(ctx, keys.Sequence(tenantID), "epoch", "seq")
		if after != "" {
			trimmed = p.HMGet(ctx, keys.Trimmed(tenantID), channel)
			exists = p.Exists(ctx, log)
		}
		rng = p.XRangeN(ctx, log, start, "+", int64(limit))
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return Page{}, fmt.Errorf("read history of tenant %s: %w", tenantID, err)
	}
	if after == "" {
		return Page{Messages: messages(rng.Val())}, nil
	}
	vals := pos.Val()
	current := str(vals[0])
	seq, _ := strconv.ParseUint(str(vals[1]), 10, 64)
	_, afterSeq, _ := ParseID(after)
	if (epoch != "" && epoch != current) || afterSeq > seq {
		// Ids of an earlier epoch say nothing about this one: start at the window's beginning.
		msgs, err := h.rdb.XRangeN(ctx, log, "-", "+", int64(limit)).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return Page{}, fmt.Errorf("read history of tenant %s: %w", tenantID, err)
		}
		return Page{Messages: messages(msgs), Truncated: true}, nil
	}
	return Page{
		Messages:  messages(rng.Val()),
		Truncated: h.gap(after, w, seq, trimmed.Val(), []any{exists.Val()}),
	}, nil
}

// messages decodes the published events among history entries.
func messages(msgs []redis.XMessage) []Message {
	out := make([]Message, 0, len(msgs))
	for _, m := range msgs {
		if kind, _ := m.Values["k"].(string); kind != streamgate.EventMessage {
			continue
		}
		raw, _ := m.Values["d"].(string)
		var d messageData
		if json.Unmarshal([]byte(raw), &d) != nil {
			continue
		}
		out = append(out, Message{ID: m.ID, Event: d.Event, Data: d.Data, PublishedAt: d.PublishedAt})
	}
	return out
}
