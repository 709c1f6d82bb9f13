package webhook

import (
	"context"
	"crypto/sha256"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	streamgate "github.com/streamgate/streamgate"
	"github.com/streamgate/streamgate/internal/keys"
)

// MaxPendingEvents bounds each partition's stream of emitted events (approximately): events
// wait there only until a worker fans them out, so it fills up only when no worker runs, and
// then the oldest go.
const MaxPendingEvents = 100_000

// interestTTL is how long a process trusts what it read of a tenant's endpoints before
// emitting: an endpoint created or enabled on another node gets events from at most this long
// after.
const interestTTL = time.Second

// Events is where things that happen become webhook events: Emit appends an event to its
// tenant's partition of the event stream, when (and only when) an enabled endpoint of the
// tenant wants its type. It is cheap for tenants without webhooks: one lookup a second, cached.
// Its methods are safe for concurrent use, and a nil *Events emits nothing.
type Events struct {
	rdb redis.UniversalClient
	log *slog.Logger
	now func() time.Time

	mu       sync.Mutex
	interest map[string]interest // tenant → the event types its enabled endpoints want
}

type interest struct {
	types   map[string]bool
	expires time.Time
}

// NewEvents returns the event intake on rdb.
func NewEvents(rdb redis.UniversalClient, log *slog.Logger) *Events {
	return &Events{rdb: rdb, log: log, now: time.Now, interest: make(map[string]interest)}
}

// Emit queues an event of type eventType with data (encoded as JSON) for the tenant's
// endpoints that want it. It returns an error only when Redis could not take the event.
func (e *Events) Emit(ctx context.Context, tenantID, eventType string, data any) error {
	if e == nil {
		return nil
	}
	wants, err := e.wants(ctx, tenantID, eventType)
	if err != nil || !wants {
		return err
	}
	raw, err := json.Marshal(data)
	if err != nil {
		return fmt.Errorf("encode %s event: %w", eventType, err)
	}
	err = e.rdb.XAdd(ctx, &redis.XAddArgs{
		Stream: keys.WebhookEvents(partition(tenantID)), MaxLen: MaxPendingEvents, Approx: true,
		Values: []any{"tenant", tenantID, "type", eventType, "evt", streamgate.NewID("evt_"),
			"at", e.now().UTC().Format(time.RFC3339Nano), "data", raw},
	}).Err()
	if err != nil {
		return fmt.Errorf("emit %s event: %w", eventType, err)
	}
	return nil
}

// Finished emits job.finished or workflow.finished (kind "job" or "workflow") with the final
// state, as GET /v1/jobs/{id} or GET /v1/workflows/{id} shows it.
func (e *Events) Finished(ctx context.Context, tenantID, kind string, state json.RawMessage) error {
	switch kind {
	case "job":
		return e.Emit(ctx, tenantID, EventJobFinished, struct {
			Job json.RawMessage `json:"job"`
		}{state})
	case "workflow":
		return e.Emit(ctx, tenantID, EventWorkflowFinished, struct {
			Workflow json.RawMessage `json:"workflow"`
		}{state})
	}
	return fmt.Errorf("finished: unknown kind %q", kind)
}

// SessionEvicted emits session.evicted: a session was closed for lagging, a failed
// authentication or by the operator, for reason.
func (e *Events) SessionEvicted(ctx context.Context, tenantID, sessionID, sub, reason string) error {
	return e.Emit(ctx, tenantID, EventSessionEvicted, struct {
		SessionID string `json:"session_id"`
		Sub       string `json:"sub"`
		Reason    string `json:"reason"`
	}{sessionID, sub, reason})
}

// PresenceJoin emits presence.join: a user's first session joined a presence channel. info is
// the token's info claim, or nil.
func (e *Events) PresenceJoin(ctx context.Context, tenantID, channel, sub string, info json.RawMessage) error {
	return e.Emit(ctx, tenantID, EventPresenceJoin, presenceData(channel, sub, info))
}

// PresenceLeave emits presence.leave: a user's last session left a presence channel.
func (e *Events) PresenceLeave(ctx context.Context, tenantID, channel, sub string, info json.RawMessage) error {
	return e.Emit(ctx, tenantID, EventPresenceLeave, presenceData(channel, sub, info))
}

type presence struct {
	Channel string          `json:"channel"`
	Sub     string          `json:"sub"`
	Info    json.RawMessage `json:"info"`
}

func presenceData(channel, sub string, info json.RawMessage) presence {
	if len(info) == 0 {
		info = json.RawMessage("null")
	}
	return presence{channel, sub, info}
}

// channelEvent emits channel.occupied or channel.vacated.
func (e *Events) channelEvent(ctx context.Context, tenantID, eventType, channel string) error {
	return e.Emit(ctx, tenantID, eventType, struct {
		Channel string `json:"channel"`
	}{channel})
}

// wants reports whether an enabled endpoint of the tenant takes eventType, from what this
// process read at most interestTTL ago.
func (e *Events) wants(ctx context.Context, tenantID, eventType string) (bool, error) {
	now := e.now()
	e.mu.Lock()
	in, ok := e.interest[tenantID]
	e.mu.Unlock()
	if ok && now.Before(in.expires) {
		return in.types[eventType], nil
	}
	recs, err := readRecords(ctx, e.rdb, tenantID)
	if err != nil {
		return false, err
	}
	in = interest{types: make(map[string]bool), expires: now.Add(interestTTL)}
	for _, r := range recs {
		if r.Disabled {
			continue
		}
		for _, t := range r.Events {
			in.types[t] = true
		}
	}
	e.mu.Lock()
	if len(e.interest) >= 100_000 {
		clear(e.interest) // bounded: a burst of lookups, never unbounded memory
	}
	e.interest[tenantID] = in
	e.mu.Unlock()
	return in.types[eventType], nil
}

// forget drops what this process knew of a tenant's endpoints.
func (e *Events) forget(tenantID string) {
	e.mu.Lock()
	delete(e.interest, tenantID)
	e.mu.Unlock()
}

// event is one emitted event, as the stream holds it.
type event struct {
	ID        string
	TenantID  string
	Type      string
	CreatedAt time.Time
	Data      json.RawMessage
}

func decodeEvent(m redis.XMessage) (event, error) {
	str := func(k string) string { s, _ := m.Values[k].(string); return s }
	ev := event{ID: str("evt"), TenantID: str("tenant"), Type: str("type"), Data: json.RawMessage(str("data"))}
	var err error
	if ev.CreatedAt, err = time.Parse(time.RFC3339Nano, str("at")); err != nil {
		return ev, errors.New("no time")
	}
	if ev.ID == "" || ev.TenantID == "" || ev.Type == "" || !json.Valid(ev.Data) {
		return ev, errors.New("missing fields")
	}
	return ev, nil
}

// body is what an endpoint receives: {"id","type","created_at","data"}.
func (ev event) body() string {
	b, _ := json.Marshal(struct {
		ID        string          `json:"id"`
		Type      string          `json:"type"`
		CreatedAt time.Time       `json:"created_at"`
		Data      json.RawMessage `json:"data"`
	}{ev.ID, ev.Type, ev.CreatedAt, ev.Data})
	return string(b)
}

// delivery is one event on its way to one endpoint, as its queue holds it.
type delivery struct {
	ID        string    `json:"id"`
	TenantID  string    `json:"tenant"`
	WebhookID string    `json:"webhook"`
	EventID   string    `json:"event"`
	Type      string    `json:"type"`
	Body      string    `json:"body"`
	QueuedAt  time.Time `json:"queued_at"`
	Attempts  int       `json:"attempts"` // attempts made so far
}

func newDelivery(id, webhookID string, ev event) delivery {
	return delivery{ID: id, TenantID: ev.TenantID, WebhookID: webhookID, EventID: ev.ID, Type: ev.Type, Body: ev.body()}
}

// deliveryID names the delivery of a stream entry to an endpoint the same way every time, so
// that an entry fanned out twice (its worker died before acknowledging it) queues nothing twice
// that is still queued.
func deliveryID(p int, entryID, webhookID string) string {
	sum := sha256.Sum256([]byte(strconv.Itoa(p) + "/" + entryID + "/" + webhookID))
	return "dlv_" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(sum[:10]))
}

// enqueue queues d for its endpoint, due now, and records it as pending in the endpoint's
// history. A queue already at MaxQueued takes nothing: d is dead at once, not attempted.
func enqueue(ctx context.Context, rdb redis.UniversalClient, d delivery, now time.Time, concurrency int) error {
	d.QueuedAt = now.UTC()
	raw, _ := json.Marshal(d)
	p := partition(d.TenantID)
	res, err := enqueueScript.Run(ctx, rdb,
		[]string{keys.WebhookDue(p), keys.WebhookQueue(p, d.TenantID, d.WebhookID),
			keys.WebhookDeliveries(p, d.TenantID, d.WebhookID), keys.WebhookInFlight(p, d.TenantID, d.WebhookID)},
		member(d.TenantID, d.WebhookID), d.ID, now.UnixMilli(), raw, MaxQueued, concurrency).Text()
	if err != nil {
		return fmt.Errorf("queue delivery to webhook %s: %w", d.WebhookID, err)
	}
	row := Attempt{ID: d.ID, EventType: d.Type, Attempt: 1, Status: StatusPending, CreatedAt: d.QueuedAt, NextAttemptAt: &d.QueuedAt}
	kind := "pending"
	switch res {
	case "dup":
		return nil
	case "full":
		msg := fmt.Sprintf("not attempted: %d deliveries were already waiting for this endpoint", MaxQueued)
		row.Status, row.Error, row.NextAttemptAt, kind = StatusDead, &msg, nil, "overflow"
	}
	_, err = recordOutcome(ctx, rdb, d, row, kind, now, DisableAfter)
	return err
}

// recordOutcome writes a history row for d and, per kind (pending, succeeded, failed, dead,
// overflow), ends or extends the endpoint's run of dead deliveries and keeps a dead one. It
// reports whether this disabled the endpoint.
func recordOutcome(ctx context.Context, rdb redis.UniversalClient, d delivery, row Attempt, kind string, now time.Time, disableAfter int) (bool, error) {
	rowJSON, _ := json.Marshal(row)
	t, w := d.TenantID, d.WebhookID
	res, err := outcomeScript.Run(ctx, rdb,
		[]string{keys.Webhooks(t), keys.WebhookAttempts(t, w), keys.WebhookAttemptIndex(t, w),
			keys.WebhookDead(t, w), keys.WebhookDeadIndex(t, w), keys.WebhookDeadStreaks(t)},
		w, d.ID+":"+strconv.Itoa(row.Attempt), rowJSON, now.UnixMilli(), HistoryRows, kind,
		d.ID, rowJSON, DeadRetention.Milliseconds(), MaxDead, disableAfter).Int64Slice()
	if err != nil {
		return false, fmt.Errorf("record delivery to webhook %s: %w", w, err)
	}
	return len(res) == 2 && res[1] == 1, nil
}
