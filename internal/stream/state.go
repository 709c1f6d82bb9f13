package stream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"

	streamgate "github.com/streamgate/streamgate"
	"github.com/streamgate/streamgate/internal/keys"
)

// ErrStateNotFound means no state exists for that job or workflow (of that tenant).
var ErrStateNotFound = errors.New("not found")

// States reads job and workflow state as the workers left it.
type States struct {
	rdb redis.UniversalClient
}

// NewStates returns a reader on rdb.
func NewStates(rdb redis.UniversalClient) *States { return &States{rdb: rdb} }

// Current returns the last published state of a job: or workflow: channel, as the event a
// subscriber receives first. ok is false for other channels and for ones without state yet.
func (s *States) Current(ctx context.Context, tenantID, channel string) (Entry, bool, error) {
	key, _ := stateKey(tenantID, channel)
	if key == "" {
		return Entry{}, false, nil
	}
	vals, err := s.rdb.HMGet(ctx, key, "event", "eid").Result()
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

// Job returns a job's state object ({"job_id", "status", …}); ErrStateNotFound if none.
func (s *States) Job(ctx context.Context, tenantID, id string) (json.RawMessage, error) {
	return s.object(ctx, tenantID, streamgate.JobChannelPrefix+id, "job")
}

// Workflow returns a workflow's state object; ErrStateNotFound if none.
func (s *States) Workflow(ctx context.Context, tenantID, id string) (json.RawMessage, error) {
	return s.object(ctx, tenantID, streamgate.WorkflowChannelPrefix+id, "workflow")
}

func (s *States) object(ctx context.Context, tenantID, channel, field string) (json.RawMessage, error) {
	e, ok, err := s.Current(ctx, tenantID, channel)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, ErrStateNotFound
	}
	var ev map[string]json.RawMessage
	if err := json.Unmarshal([]byte(e.Data), &ev); err != nil {
		return nil, fmt.Errorf("decode state of %s: %w", channel, err)
	}
	return ev[field], nil
}

func stateKey(tenantID, channel string) (key, kind string) {
	if id, ok := strings.CutPrefix(channel, streamgate.JobChannelPrefix); ok {
		return keys.JobState(tenantID, id), KindJob
	}
	if id, ok := strings.CutPrefix(channel, streamgate.WorkflowChannelPrefix); ok {
		return keys.WorkflowState(tenantID, id), KindWorkflow
	}
	return "", ""
}
