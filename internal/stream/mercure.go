package stream

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"

	streamgate "github.com/streamgate/streamgate"
	"github.com/streamgate/streamgate/internal/keys"
)

// MercureChannel is the internal channel of a tenant's Mercure log: its history stream holds
// the tenant's Mercure updates (its history window applies), its pub/sub channel carries them
// live. It is not a valid channel name, so no REST publish and no native stream reaches it.
const MercureChannel = "#mercure"

// MercureEarliest is the Last-Event-ID with which a Mercure subscriber asks for every update
// the log still holds.
const MercureEarliest = "earliest"

var (
	//go:embed mercure.lua
	mercureLua     string
	mercureScripts = [2]*redis.Script{PublishingScript(mercureLua, false), PublishingScript(mercureLua, true)}
)

// PublishMercure appends an update (update, as stored, with its own id updateID) to the tenant's
// Mercure log, indexes it by that id, and publishes it live, in one script. It returns the
// update's entry id in the log.
func (p *Publisher) PublishMercure(ctx context.Context, tenantID string, w Window, updateID string, update []byte) (string, error) {
	script := mercureScripts[boolIndex(Sharded(p.rdb))]
	ks := []string{keys.Sequence(tenantID), keys.Trimmed(tenantID), keys.History(tenantID, MercureChannel), keys.MercureID(tenantID, updateID)}
	id, err := RunScript(ctx, p.rdb, script, ks, NewEpoch(), w.Events, w.Seconds,
		MercureChannel, keys.Channel(tenantID, MercureChannel), update).Text()
	if err != nil {
		return "", fmt.Errorf("publish a Mercure update of tenant %s: %w", tenantID, err)
	}
	return id, nil
}

// MercurePosition finds where a Mercure subscriber's Last-Event-ID stands in the tenant's log:
// the entry to replay after, or "" when nothing is to be replayed. found is false when the id
// is not (or no longer) in the log; MercureEarliest is always found, and replays the whole log.
func (h *History) MercurePosition(ctx context.Context, tenantID, lastEventID string) (after string, found bool, err error) {
	log := keys.History(tenantID, MercureChannel)
	if lastEventID == MercureEarliest {
		first, err := h.rdb.XRangeN(ctx, log, "-", "+", 1).Result()
		if err != nil {
			return "", false, fmt.Errorf("read the Mercure log of tenant %s: %w", tenantID, err)
		}
		if len(first) == 0 {
			return "", true, nil
		}
		return before(first[0].ID), true, nil
	}
	entry, err := h.rdb.Get(ctx, keys.MercureID(tenantID, lastEventID)).Result()
	if errors.Is(err, redis.Nil) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("look up a Mercure update of tenant %s: %w", tenantID, err)
	}
	still, err := h.rdb.XRangeN(ctx, log, entry, entry, 1).Result()
	if err != nil {
		return "", false, fmt.Errorf("read the Mercure log of tenant %s: %w", tenantID, err)
	}
	if len(still) == 0 {
		return "", false, nil // trimmed since
	}
	return entry, true, nil
}

// before returns an id just below id ("<ms>-<seq>") that no entry of the tenant can have: a
// replay after it starts at id, and no trimmed entry lies between them.
func before(id string) string {
	ms, seq, ok := ParseID(id)
	if !ok || seq == 0 {
		return "0-0"
	}
	return strconv.FormatUint(ms, 10) + "-" + strconv.FormatUint(seq-1, 10)
}

// encodeMercure is the frame of a Mercure log entry as the hub hands it on: not SSE yet, its
// Body is the update as stored, which the node's Mercure index matches and encodes once.
func encodeMercure(id string, seq uint64, data string) *streamgate.Frame {
	return &streamgate.Frame{ID: id, Seq: seq, Channel: MercureChannel, Body: []byte(data), Message: true}
}

// MercureLast returns the newest update in the tenant's Mercure log, as stored; ok is false
// when the log is empty.
func (h *History) MercureLast(ctx context.Context, tenantID string) (stored string, ok bool, err error) {
	last, err := h.rdb.XRevRangeN(ctx, keys.History(tenantID, MercureChannel), "+", "-", 1).Result()
	if err != nil {
		return "", false, fmt.Errorf("read the Mercure log of tenant %s: %w", tenantID, err)
	}
	if len(last) == 0 {
		return "", false, nil
	}
	stored, _ = last[0].Values["d"].(string)
	return stored, true, nil
}
