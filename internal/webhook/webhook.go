// Package webhook tells a tenant's backend what happened without it holding a stream: endpoints
// per tenant (a URL, the event types it wants, a signing secret shown once), the intake of
// events (Events.Emit appends them to a partitioned Redis Stream), and the Dispatcher that
// workers run to deliver them, signed the Standard Webhooks way, with retries, per-endpoint
// concurrency bounds, dead deliveries kept for a week and endpoints that keep failing disabled.
//
// The way an event goes:
//
//	Emit ──XADD──▶ events stream of the tenant's partition ──XREADGROUP──▶ a worker's router
//	  router: one delivery per endpoint that wants the event ──▶ the endpoint's queue (due time)
//	  scheduler: endpoints with a due delivery and a free slot ──▶ sender: POST, then done,
//	  retry later, or dead
//
// An endpoint, not a delivery, is what the schedulers take turns on: each endpoint has at most
// EndpointConcurrency deliveries in flight across all workers, so an endpoint that answers
// slowly holds a few senders and never the queue of anyone else.
package webhook

import (
	"errors"
	"hash/crc32"
	"time"

	"github.com/streamgate/streamgate/internal/keys"
)

// Event types of the public contract. Presence join and leave are sent by whatever tracks
// presence, through Events.PresenceJoin and Events.PresenceLeave.
const (
	EventChannelOccupied  = "channel.occupied"  // data {"channel"}: a channel's first subscriber, cluster-wide
	EventChannelVacated   = "channel.vacated"   // data {"channel"}: its last subscriber left
	EventPresenceJoin     = "presence.join"     // data {"channel","sub","info"}
	EventPresenceLeave    = "presence.leave"    // data {"channel","sub","info"}
	EventJobFinished      = "job.finished"      // data {"job": <as GET /v1/jobs/{id}>}
	EventWorkflowFinished = "workflow.finished" // data {"workflow": <as GET /v1/workflows/{id}>}
	EventSessionEvicted   = "session.evicted"   // data {"session_id","sub","reason"}
	EventTest             = "webhook.test"      // data {"webhook_id"}
)

// EventTypes are the types an endpoint may ask for, in the contract's order.
var EventTypes = []string{
	EventChannelOccupied, EventChannelVacated, EventPresenceJoin, EventPresenceLeave,
	EventJobFinished, EventWorkflowFinished, EventSessionEvicted, EventTest,
}

// Limits of the contract and of what one endpoint may hold in Redis.
const (
	// MaxEndpoints is how many endpoints a tenant may have.
	MaxEndpoints = 20
	// MaxDescription bounds an endpoint's description, in characters.
	MaxDescription = 500
	// HistoryRows is how many attempts an endpoint's delivery history keeps.
	HistoryRows = 100
	// DeadRetention is how long a dead delivery is kept.
	DeadRetention = 7 * 24 * time.Hour
	// MaxDead bounds the dead deliveries kept per endpoint; the oldest go first.
	MaxDead = 1000
	// MaxQueued bounds the deliveries waiting for one endpoint. A delivery beyond it is dead at
	// once (not attempted): an endpoint that far behind is not going to catch up.
	MaxQueued = 10000
	// DisableAfter is how many dead deliveries in a row disable an endpoint.
	DisableAfter = 100
	// Timeout is how long an endpoint has to answer an attempt.
	Timeout = 10 * time.Second
	// SecretRotationGrace is how long deliveries are signed with the old secret as well after
	// a rotation.
	SecretRotationGrace = 24 * time.Hour
)

// Schedule is the contract's delays before each retry: after the first attempt fails the next
// comes about 5 s later, and so on; after the last retry fails the delivery is dead. Each delay
// gets ±10 % jitter.
var Schedule = []time.Duration{
	5 * time.Second, 30 * time.Second, 2 * time.Minute, 10 * time.Minute, 30 * time.Minute,
	time.Hour, 3 * time.Hour, 6 * time.Hour, 12 * time.Hour,
}

// Sentinel errors; the HTTP edge maps each to one status and code.
var (
	ErrNotFound      = errors.New("webhook not found")
	ErrInvalid       = errors.New("invalid request")
	ErrLimitExceeded = errors.New("limit exceeded")
)

// Endpoint is one URL a tenant receives events at. Its secrets never leave the package except
// once, when created or rotated.
type Endpoint struct {
	ID          string    `json:"id"`
	URL         string    `json:"url"`
	Events      []string  `json:"events"`
	Description string    `json:"description"`
	CreatedAt   time.Time `json:"created_at"`
	Disabled    bool      `json:"disabled"`
}

// Wants reports whether the endpoint takes events of type t.
func (e Endpoint) Wants(t string) bool {
	for _, x := range e.Events {
		if x == t {
			return true
		}
	}
	return false
}

// Delivery statuses in the history.
const (
	StatusPending   = "pending"
	StatusSucceeded = "succeeded"
	StatusFailed    = "failed"
	StatusDead      = "dead"
)

// Attempt is one row of an endpoint's delivery history: an attempt made (succeeded, failed with
// a retry to come at NextAttemptAt, or dead), or a first attempt still to be made (pending).
type Attempt struct {
	ID             string     `json:"id"`
	EventType      string     `json:"event_type"`
	Attempt        int        `json:"attempt"`
	Status         string     `json:"status"`
	ResponseStatus *int       `json:"response_status"`
	Error          *string    `json:"error"`
	CreatedAt      time.Time  `json:"created_at"`
	NextAttemptAt  *time.Time `json:"next_attempt_at"`
}

// partition is where a tenant's deliveries go.
func partition(tenantID string) int {
	return int(crc32.ChecksumIEEE([]byte(tenantID)) % keys.WebhookPartitions)
}

// member names an endpoint in its partition's due set.
func member(tenantID, webhookID string) string { return tenantID + "/" + webhookID }
