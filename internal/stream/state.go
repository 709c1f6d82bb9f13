package stream

import (
	"context"
	"fmt"
	"strings"

	streamgate "github.com/streamgate/streamgate"
	"github.com/streamgate/streamgate/internal/keys"
)

// A reserved channel (job:<id>, workflow:<id>) keeps its current state beside its history: the
// job worker's apply script writes the state hash together with the event that announces it
// (fields "event" and "eid"), and publishes that event. A subscriber receives it first, read in
// the same transaction as the stream's position (History.Snapshot), or on its own (State).

// State returns the last state published on a job: or workflow: channel, as the event a
// subscriber receives. ok is false for other channels and for ones without state yet.
func (h *History) State(ctx context.Context, tenantID, channel string) (Entry, bool, error) {
	key, _ := stateKey(tenantID, channel)
	if key == "" {
		return Entry{}, false, nil
	}
	vals, err := h.rdb.HMGet(ctx, key, "event", "eid").Result()
	if err != nil {
		return Entry{}, false, fmt.Errorf("read state of %s: %w", channel, err)
	}
	e, ok := stateEntry(channel, vals)
	return e, ok, nil
}

// stateEntry turns the state hash's event and eid fields into the entry subscribers receive.
func stateEntry(channel string, vals []any) (Entry, bool) {
	event, _ := vals[0].(string)
	eid, _ := vals[1].(string)
	_, seq, ok := ParseID(eid)
	if event == "" || !ok {
		return Entry{}, false
	}
	_, kind := stateKey("", channel)
	return Entry{ID: eid, Seq: seq, Channel: channel, Kind: kind, Data: event}, true
}

func stateKey(tenantID, channel string) (key, kind string) {
	if id, ok := strings.CutPrefix(channel, streamgate.JobChannelPrefix); ok {
		return keys.JobState(tenantID, id), streamgate.EventJob
	}
	if id, ok := strings.CutPrefix(channel, streamgate.WorkflowChannelPrefix); ok {
		return keys.WorkflowState(tenantID, id), streamgate.EventWorkflow
	}
	return "", ""
}
