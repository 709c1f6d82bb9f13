// Package jobs carries job and workflow progress: the update stream the api appends accepted
// updates to (one partition per job's hash), the worker that applies them in order to each job's
// state and publishes the new state on job:<id> or workflow:<id>, and the reads of that state.
package jobs

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	streamgate "github.com/streamgate/streamgate"
	"github.com/streamgate/streamgate/internal/keys"
	"github.com/streamgate/streamgate/internal/stream"
)

var (
	//go:embed append.lua
	appendLua    string
	appendScript = redis.NewScript(appendLua)
)

// DefaultRetention is how long a finished job's or workflow's state is kept unless the operator
// says otherwise (STREAMGATE_JOB_RETENTION).
const DefaultRetention = 7 * 24 * time.Hour

// Update kinds: a job, a whole workflow, or one step of a workflow.
const (
	UpdateJob      = "job"
	UpdateWorkflow = "workflow"
	UpdateStep     = "step"
)

// Update is one accepted job or workflow update on its way to a worker.
type Update struct {
	TenantID string
	Kind     string // UpdateJob, UpdateWorkflow or UpdateStep
	ID       string // the job's or workflow's id
	// Fields are the update's set fields as JSON texts (a step update carries "name").
	Fields map[string]json.RawMessage
	// Window is the tenant's history window, for publishing the new state.
	Window stream.Window
	// Trace is the W3C traceparent of the span that accepted the update, or empty; TraceState
	// is its tracestate. The worker continues that trace.
	Trace      string
	TraceState string
	// IdempotencyKey, when set, makes a repeat of this update to the same job or workflow
	// within the history window a no-op (see Append).
	IdempotencyKey string
}

// target is what the update's sequence is counted on: a step belongs to its workflow.
func (u Update) target() string {
	if u.Kind == UpdateJob {
		return UpdateJob
	}
	return UpdateWorkflow
}

// Channel is the reserved channel the update's state is published on.
func (u Update) Channel() string {
	if u.Kind == UpdateJob {
		return streamgate.JobChannelPrefix + u.ID
	}
	return streamgate.WorkflowChannelPrefix + u.ID
}

// Partition picks the update stream partition of a job or workflow.
func Partition(tenantID, target, id string) int {
	return int(crc32.ChecksumIEEE([]byte(tenantID+"\x00"+target+"\x00"+id)) % keys.UpdatePartitions)
}

// Updates appends updates to the update stream.
type Updates struct {
	rdb redis.UniversalClient
	// Retention is how long a finished job's state is kept; counters outlive it.
	Retention time.Duration
	// MaxLen caps each partition: beyond it Append refuses with ErrBacklogFull, so an accepted
	// update is never trimmed away before a worker applied it.
	MaxLen int64
}

// NewUpdates returns an appender on rdb.
func NewUpdates(rdb redis.UniversalClient) *Updates {
	return &Updates{rdb: rdb, Retention: DefaultRetention, MaxLen: 1_000_000}
}

// Append makes an update durable in the update stream, stamped with its job's next sequence
// number. Once it returns nil, a worker will apply it.
//
// Each update is appended once: with u.IdempotencyKey, a repeat of the same update (same kind,
// id and fields) within the tenant's history window appends nothing and returns nil, and the
// key with another update returns ErrIdempotencyMismatch. Without one, a request id guards the
// Redis client's own retry of a script whose answer was lost. A key belongs to one job or
// workflow (a workflow's steps share their workflow's): other jobs may use the same key.
func (a *Updates) Append(ctx context.Context, u Update) error {
	fields, err := json.Marshal(u.Fields)
	if err != nil {
		return fmt.Errorf("encode update: %w", err)
	}
	p := Partition(u.TenantID, u.target(), u.ID)
	counterTTL := a.Retention + 30*24*time.Hour
	idemKey, remember, fingerprint := u.IdempotencyKey, time.Duration(u.Window.Seconds)*time.Second, stream.RequestIDFingerprint
	if idemKey == "" {
		idemKey, remember = stream.NewRequestID(), stream.RequestIDTTL
	} else {
		fingerprint = fingerprintOf(u)
	}
	args := []any{counterTTL.Milliseconds(), a.MaxLen, fingerprint, max(remember, time.Second).Milliseconds(),
		"tenant", u.TenantID, "kind", u.Kind, "id", u.ID, "fields", fields,
		"hist_events", u.Window.Events, "hist_secs", u.Window.Seconds,
		"accepted_at", strconv.FormatInt(time.Now().UnixMilli(), 10)}
	if u.Trace != "" {
		args = append(args, "trace", u.Trace)
		if u.TraceState != "" {
			args = append(args, "tracestate", u.TraceState)
		}
	}
	ks := []string{keys.UpdateCounter(p, u.TenantID, u.target(), u.ID), keys.Updates(p),
		keys.UpdateLast(p, u.TenantID, u.target(), u.ID), keys.UpdateIdempotency(p, u.TenantID, u.target(), u.ID, idemKey)}
	reply, err := stream.RunScript(ctx, a.rdb, appendScript, ks, args...).StringSlice()
	if err != nil && strings.HasPrefix(err.Error(), "FULL") {
		return fmt.Errorf("%s: %w", strings.TrimPrefix(err.Error(), "FULL "), ErrBacklogFull)
	}
	if err != nil {
		return fmt.Errorf("append %s update for %s: %w", u.Kind, u.ID, err)
	}
	if len(reply) > 0 && reply[0] == "mismatch" {
		return fmt.Errorf("the Idempotency-Key was used with a different update: %w", ErrIdempotencyMismatch)
	}
	return nil
}

// fingerprintOf identifies an update (kind, id, fields), so that an Idempotency-Key reused for
// another update is told apart from a retry.
func fingerprintOf(u Update) string {
	names := make([]string, 0, len(u.Fields))
	for k := range u.Fields {
		names = append(names, k)
	}
	sort.Strings(names)
	f := stream.NewFingerprint().Add([]byte(u.Kind)).Add([]byte(u.ID))
	for _, k := range names {
		f.Add([]byte(k)).Add(u.Fields[k])
	}
	return f.String()
}

// ErrIdempotencyMismatch means an Idempotency-Key came back with another update than its first
// use, to the same job or workflow: stream's, which a publish returns too.
var ErrIdempotencyMismatch = stream.ErrIdempotencyMismatch

// ErrBacklogFull means a partition of the update stream holds MaxLen entries that workers have
// not finished: the update is refused (nothing is stored), to be retried once they catch up.
var ErrBacklogFull = errors.New("update backlog full")
