package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	streamgate "github.com/streamgate/streamgate"
	"github.com/streamgate/streamgate/internal/stream"
)

// ErrNotFound means no state exists for that job or workflow (of that tenant).
var ErrNotFound = errors.New("not found")

// States reads job and workflow state as the workers left it.
type States struct {
	history *stream.History
}

// NewStates returns a reader of the states that history holds beside each reserved channel.
func NewStates(history *stream.History) *States { return &States{history: history} }

// Job returns a job's state object ({"job_id", "status", …}); ErrNotFound if none.
func (s *States) Job(ctx context.Context, tenantID, id string) (json.RawMessage, error) {
	return s.object(ctx, tenantID, streamgate.JobChannelPrefix+id, streamgate.EventJob)
}

// Workflow returns a workflow's state object; ErrNotFound if none.
func (s *States) Workflow(ctx context.Context, tenantID, id string) (json.RawMessage, error) {
	return s.object(ctx, tenantID, streamgate.WorkflowChannelPrefix+id, streamgate.EventWorkflow)
}

// object is the field of the state's event that holds the state itself.
func (s *States) object(ctx context.Context, tenantID, channel, field string) (json.RawMessage, error) {
	e, ok, err := s.history.State(ctx, tenantID, channel)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, ErrNotFound
	}
	var ev map[string]json.RawMessage
	if err := json.Unmarshal([]byte(e.Data), &ev); err != nil {
		return nil, fmt.Errorf("decode state of %s: %w", channel, err)
	}
	return ev[field], nil
}
