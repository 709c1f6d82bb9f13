package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamgate/streamgate/internal/keys"
	"github.com/streamgate/streamgate/internal/redistest"
	"github.com/streamgate/streamgate/internal/stream"
)

// A full partition refuses an update instead of trimming one that no worker applied yet; the
// worker trims what was acknowledged and keeps what is pending.
func TestUpdateStreamNeverLosesAnAcceptedUpdate(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Client()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	up := NewUpdates(rdb)
	up.MaxLen = 3
	w := stream.Window{Events: 10, Seconds: 60}
	put := func(id string) error {
		return up.Append(ctx, Update{TenantID: "tn_a", Kind: UpdateJob, ID: id, Fields: map[string]json.RawMessage{"status": json.RawMessage(`"running"`)}, Window: w})
	}
	p := Partition("tn_a", "job", "j")
	// Every update of job "j" lands in the same partition.
	for range 3 {
		if err := put("j"); err != nil {
			t.Fatal(err)
		}
	}
	if err := put("j"); !errors.Is(err, ErrBacklogFull) {
		t.Fatalf("a fourth update on a partition of 3: %v, want ErrBacklogFull", err)
	}
	if n := rdb.XLen(ctx, keys.Updates(p)).Val(); n != 3 {
		t.Fatalf("partition holds %d entries, want the 3 accepted", n)
	}

	// Two entries applied and acknowledged, the third read and left pending (its worker
	// died), and a fourth accepted once there was room but not read yet.
	grp := DefaultGroup
	if err := rdb.XGroupCreateMkStream(ctx, keys.Updates(p), grp, "0").Err(); err != nil {
		t.Fatal(err)
	}
	read, err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: grp, Consumer: "c", Streams: []string{keys.Updates(p), ">"}, Count: 3}).Result()
	if err != nil || len(read[0].Messages) != 3 {
		t.Fatalf("read %v %v", read, err)
	}
	msgs := read[0].Messages
	if err := rdb.XAck(ctx, keys.Updates(p), grp, msgs[0].ID, msgs[1].ID).Err(); err != nil {
		t.Fatal(err)
	}
	if err := trimScript.Run(ctx, rdb, []string{keys.Updates(p)}).Err(); err != nil {
		t.Fatal(err)
	}
	if err := put("j"); err != nil {
		t.Fatalf("after the trim made room: %v", err)
	}
	if err := trimScript.Run(ctx, rdb, []string{keys.Updates(p)}).Err(); err != nil {
		t.Fatal(err)
	}
	entries := rdb.XRange(ctx, keys.Updates(p), "-", "+").Val()
	if len(entries) != 2 || entries[0].ID != msgs[2].ID {
		t.Fatalf("after the trims the stream holds %v, want the pending %s and the unread one", entries, msgs[2].ID)
	}
}
