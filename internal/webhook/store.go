package webhook

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/redis/go-redis/v9"

	streamgate "github.com/streamgate/streamgate"
	"github.com/streamgate/streamgate/internal/keys"
	"github.com/streamgate/streamgate/internal/urlguard"
)

var (
	//go:embed queue.lua
	queueLua string
	//go:embed enqueue.lua
	enqueueLua string
	//go:embed acquire.lua
	acquireLua string
	//go:embed release.lua
	releaseLua string
	//go:embed outcome.lua
	outcomeLua string
	//go:embed create.lua
	createLua string

	enqueueScript = redis.NewScript(queueLua + enqueueLua)
	acquireScript = redis.NewScript(queueLua + acquireLua)
	releaseScript = redis.NewScript(queueLua + releaseLua)
	outcomeScript = redis.NewScript(outcomeLua)
	createScript  = redis.NewScript(createLua)
)

// Store keeps a tenant's endpoints, their secrets (encrypted) and their delivery history in
// Redis, and queues test deliveries. It serves the REST routes and the Dispatcher.
type Store struct {
	rdb    redis.UniversalClient
	seal   *sealer
	guard  urlguard.Guard
	events *Events
	now    func() time.Time
	// concurrency is written into the schedule when a test delivery is queued; it must be the
	// dispatchers' EndpointConcurrency.
	concurrency int
}

// NewStore returns the endpoint store on rdb. secretKey (32 bytes, STREAMGATE_SECRET_KEY)
// encrypts the endpoints' secrets; guard decides which URLs an endpoint may have; events, when
// not nil, forgets what it knew of a tenant's endpoints when they change, so that this process
// emits for a new endpoint at once.
func NewStore(rdb redis.UniversalClient, secretKey []byte, guard urlguard.Guard, events *Events) (*Store, error) {
	seal, err := newSealer(secretKey)
	if err != nil {
		return nil, err
	}
	return &Store{rdb: rdb, seal: seal, guard: guard, events: events, now: time.Now, concurrency: DefaultEndpointConcurrency}, nil
}

// record is an endpoint as stored: the endpoint and its secrets, encrypted. A rotation keeps
// the previous secret until OldUntil. A disabled endpoint keeps why (DisabledByTenant, or
// DisabledFailing, which outcome.lua writes).
type record struct {
	Endpoint
	Secret         string     `json:"secret_enc"`
	OldSecret      string     `json:"old_secret_enc,omitempty"`
	OldUntil       *time.Time `json:"old_secret_until,omitempty"`
	DisabledReason string     `json:"disabled_reason,omitempty"`
}

func decodeRecord(id string, raw string) (record, error) {
	var r record
	if err := json.Unmarshal([]byte(raw), &r); err != nil {
		return record{}, fmt.Errorf("decode webhook %s: %w", id, err)
	}
	if r.Events == nil {
		r.Events = []string{}
	}
	return r, nil
}

// Input is what a tenant gives for a new endpoint.
type Input struct {
	URL         string
	Events      []string
	Description string
}

// Patch changes an endpoint; nil fields keep their value.
type Patch struct {
	URL         *string
	Events      *[]string
	Description *string
	Disabled    *bool
}

// Create adds an endpoint and returns it with its secret, which is never shown again. It
// returns ErrInvalid (a bad or refused URL, an unknown event type) or ErrLimitExceeded (the
// tenant has MaxEndpoints already); nothing is stored then.
func (s *Store) Create(ctx context.Context, tenantID string, in Input) (Endpoint, string, error) {
	u, err := s.checkURL(ctx, in.URL)
	if err != nil {
		return Endpoint{}, "", err
	}
	events, err := checkEvents(in.Events)
	if err != nil {
		return Endpoint{}, "", err
	}
	if err := checkDescription(in.Description); err != nil {
		return Endpoint{}, "", err
	}
	ep := Endpoint{ID: streamgate.NewID("wh_"), URL: u, Events: events, Description: in.Description, CreatedAt: s.now().UTC()}
	secret := newSecret()
	enc, err := s.seal.seal(tenantID, ep.ID, []byte(secret))
	if err != nil {
		return Endpoint{}, "", err
	}
	raw, _ := json.Marshal(record{Endpoint: ep, Secret: enc})
	ok, err := createScript.Run(ctx, s.rdb, []string{keys.Webhooks(tenantID)}, ep.ID, raw, MaxEndpoints).Int()
	if err != nil {
		return Endpoint{}, "", fmt.Errorf("create webhook: %w", err)
	}
	if ok == 0 {
		return Endpoint{}, "", fmt.Errorf("a tenant may have at most %d webhooks: %w", MaxEndpoints, ErrLimitExceeded)
	}
	s.changed(tenantID)
	return ep, secret, nil
}

// List returns the tenant's endpoints, oldest first.
func (s *Store) List(ctx context.Context, tenantID string) ([]Endpoint, error) {
	recs, err := s.records(ctx, tenantID)
	if err != nil {
		return nil, err
	}
	out := make([]Endpoint, len(recs))
	for i, r := range recs {
		out[i] = r.Endpoint
	}
	return out, nil
}

// records reads the tenant's endpoints as stored, oldest first.
func (s *Store) records(ctx context.Context, tenantID string) ([]record, error) {
	return readRecords(ctx, s.rdb, tenantID)
}

func readRecords(ctx context.Context, rdb redis.UniversalClient, tenantID string) ([]record, error) {
	all, err := rdb.HGetAll(ctx, keys.Webhooks(tenantID)).Result()
	if err != nil {
		return nil, fmt.Errorf("load webhooks of %s: %w", tenantID, err)
	}
	out := make([]record, 0, len(all))
	for id, raw := range all {
		r, err := decodeRecord(id, raw)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b record) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, nil
}

// record reads one endpoint as stored; ErrNotFound if the tenant has no such endpoint.
func (s *Store) record(ctx context.Context, tenantID, id string) (record, error) {
	raw, err := s.rdb.HGet(ctx, keys.Webhooks(tenantID), id).Result()
	if errors.Is(err, redis.Nil) {
		return record{}, fmt.Errorf("no webhook %s: %w", truncate(id), ErrNotFound)
	}
	if err != nil {
		return record{}, fmt.Errorf("load webhook %s: %w", id, err)
	}
	return decodeRecord(id, raw)
}

// Get returns one endpoint; ErrNotFound if the tenant has none with that id.
func (s *Store) Get(ctx context.Context, tenantID, id string) (Endpoint, error) {
	r, err := s.record(ctx, tenantID, id)
	return r.Endpoint, err
}

// Update applies p to an endpoint and returns it. A new URL is checked as at creation;
// disabling drops what was queued for the endpoint; enabling it again resets its run of dead
// deliveries. It returns ErrNotFound or ErrInvalid; nothing changes then.
func (s *Store) Update(ctx context.Context, tenantID, id string, p Patch) (Endpoint, error) {
	var newURL string
	if p.URL != nil {
		u, err := s.checkURL(ctx, *p.URL)
		if err != nil {
			return Endpoint{}, err
		}
		newURL = u
	}
	var events []string
	if p.Events != nil {
		var err error
		if events, err = checkEvents(*p.Events); err != nil {
			return Endpoint{}, err
		}
	}
	if p.Description != nil {
		if err := checkDescription(*p.Description); err != nil {
			return Endpoint{}, err
		}
	}
	var out record
	var disabledNow bool
	err := s.change(ctx, tenantID, id, func(r *record, tx redis.Pipeliner) {
		if p.URL != nil {
			r.URL = newURL
		}
		if p.Events != nil {
			r.Events = events
		}
		if p.Description != nil {
			r.Description = *p.Description
		}
		if p.Disabled != nil {
			if r.Disabled && !*p.Disabled {
				tx.HDel(ctx, keys.WebhookDeadStreaks(tenantID), id)
			}
			disabledNow = !r.Disabled && *p.Disabled
			if disabledNow {
				r.DisabledReason = DisabledByTenant
			} else if !*p.Disabled {
				r.DisabledReason = ""
			}
			r.Disabled = *p.Disabled
		}
		out = *r
	})
	if err != nil {
		return Endpoint{}, err
	}
	if disabledNow {
		if err := dropQueue(ctx, s.rdb, tenantID, id); err != nil {
			return Endpoint{}, err
		}
	}
	return out.Endpoint, nil
}

// RotateSecret gives an endpoint a new secret and returns it. Deliveries carry signatures by
// both the old and the new secret for SecretRotationGrace. ErrNotFound for an unknown endpoint.
func (s *Store) RotateSecret(ctx context.Context, tenantID, id string) (string, error) {
	secret := newSecret()
	enc, err := s.seal.seal(tenantID, id, []byte(secret))
	if err != nil {
		return "", err
	}
	until := s.now().UTC().Add(SecretRotationGrace)
	err = s.change(ctx, tenantID, id, func(r *record, _ redis.Pipeliner) {
		r.OldSecret, r.OldUntil, r.Secret = r.Secret, &until, enc
	})
	if err != nil {
		return "", err
	}
	return secret, nil
}

// change reads an endpoint, lets edit change it (and queue more commands of the tenant's slot)
// and writes it back in one transaction, trying again when something else changed it
// meanwhile.
func (s *Store) change(ctx context.Context, tenantID, id string, edit func(r *record, tx redis.Pipeliner)) error {
	key := keys.Webhooks(tenantID)
	for range 5 {
		err := s.rdb.Watch(ctx, func(tx *redis.Tx) error {
			raw, err := tx.HGet(ctx, key, id).Result()
			if errors.Is(err, redis.Nil) {
				return fmt.Errorf("no webhook %s: %w", truncate(id), ErrNotFound)
			}
			if err != nil {
				return fmt.Errorf("load webhook %s: %w", id, err)
			}
			r, err := decodeRecord(id, raw)
			if err != nil {
				return err
			}
			_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
				edit(&r, p)
				out, _ := json.Marshal(r)
				p.HSet(ctx, key, id, out)
				return nil
			})
			return err
		}, key)
		if errors.Is(err, redis.TxFailedErr) {
			continue
		}
		if err == nil {
			s.changed(tenantID)
		}
		return err
	}
	return fmt.Errorf("update webhook %s: changed concurrently too often, try again", id)
}

// Delete removes an endpoint, its history, its dead deliveries and whatever was queued for
// it. ErrNotFound for an unknown endpoint.
func (s *Store) Delete(ctx context.Context, tenantID, id string) error {
	var del *redis.IntCmd
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		del = p.HDel(ctx, keys.Webhooks(tenantID), id)
		p.HDel(ctx, keys.WebhookDeadStreaks(tenantID), id)
		p.Del(ctx, keys.WebhookAttempts(tenantID, id), keys.WebhookAttemptIndex(tenantID, id),
			keys.WebhookDead(tenantID, id), keys.WebhookDeadIndex(tenantID, id))
		return nil
	})
	if err != nil {
		return fmt.Errorf("delete webhook %s: %w", id, err)
	}
	if del.Val() == 0 {
		return fmt.Errorf("no webhook %s: %w", truncate(id), ErrNotFound)
	}
	s.changed(tenantID)
	return dropQueue(ctx, s.rdb, tenantID, id)
}

// dropQueue forgets every delivery queued for an endpoint. Sends in flight finish, and then
// find nothing to put back.
func dropQueue(ctx context.Context, rdb redis.UniversalClient, tenantID, id string) error {
	p := partition(tenantID)
	_, err := rdb.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
		pipe.Del(ctx, keys.WebhookQueue(p, tenantID, id), keys.WebhookDeliveries(p, tenantID, id), keys.WebhookInFlight(p, tenantID, id))
		pipe.ZRem(ctx, keys.WebhookDue(p), member(tenantID, id))
		return nil
	})
	if err != nil {
		return fmt.Errorf("drop deliveries of webhook %s: %w", id, err)
	}
	return nil
}

// Test queues a webhook.test event for one endpoint and returns its delivery id. A disabled
// endpoint is sent nothing: ErrInvalid. ErrNotFound for an unknown endpoint.
func (s *Store) Test(ctx context.Context, tenantID, id string) (string, error) {
	ep, err := s.Get(ctx, tenantID, id)
	if err != nil {
		return "", err
	}
	if ep.Disabled {
		return "", fmt.Errorf("webhook %s is disabled and is sent nothing: enable it first (PATCH with \"disabled\": false): %w", id, ErrInvalid)
	}
	now := s.now().UTC()
	ev := event{ID: streamgate.NewID("evt_"), TenantID: tenantID, Type: EventTest, CreatedAt: now}
	ev.Data, _ = json.Marshal(struct {
		WebhookID string `json:"webhook_id"`
	}{id})
	d := newDelivery(streamgate.NewID("dlv_"), id, ev)
	if err := enqueue(ctx, s.rdb, d, now, s.concurrency); err != nil {
		return "", err
	}
	return d.ID, nil
}

// Attempts returns an endpoint's last HistoryRows attempts, newest first. ErrNotFound for an
// unknown endpoint.
func (s *Store) Attempts(ctx context.Context, tenantID, id string) ([]Attempt, error) {
	if _, err := s.record(ctx, tenantID, id); err != nil {
		return nil, err
	}
	return s.rows(ctx, keys.WebhookAttemptIndex(tenantID, id), keys.WebhookAttempts(tenantID, id), 0)
}

// Dead returns the endpoint's dead deliveries still kept (DeadRetention, at most the newest
// limit), newest first, each as its last attempt. ErrNotFound for an unknown endpoint.
func (s *Store) Dead(ctx context.Context, tenantID, id string, limit int) ([]Attempt, error) {
	if _, err := s.record(ctx, tenantID, id); err != nil {
		return nil, err
	}
	cutoff := s.now().Add(-DeadRetention).UnixMilli()
	return s.rows(ctx, keys.WebhookDeadIndex(tenantID, id), keys.WebhookDead(tenantID, id), cutoff, limit)
}

// rows reads the newest rows of an index (scores above after) and their hash, newest first.
func (s *Store) rows(ctx context.Context, index, hash string, after int64, limit ...int) ([]Attempt, error) {
	n := int64(HistoryRows)
	if len(limit) > 0 && limit[0] > 0 {
		n = int64(limit[0])
	}
	ids, err := s.rdb.ZRevRangeByScore(ctx, index, &redis.ZRangeBy{Min: fmt.Sprintf("(%d", after), Max: "+inf", Count: n}).Result()
	if err != nil {
		return nil, fmt.Errorf("read delivery history: %w", err)
	}
	out := make([]Attempt, 0, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	raws, err := s.rdb.HMGet(ctx, hash, ids...).Result()
	if err != nil {
		return nil, fmt.Errorf("read delivery history: %w", err)
	}
	for _, raw := range raws {
		str, ok := raw.(string)
		if !ok {
			continue // trimmed between the two reads
		}
		var a Attempt
		if err := json.Unmarshal([]byte(str), &a); err != nil {
			return nil, fmt.Errorf("decode delivery history: %w", err)
		}
		out = append(out, a)
	}
	return out, nil
}

// secrets returns the HMAC keys deliveries of r are signed with now: the current secret's, and
// the previous one's during a rotation.
func (s *Store) secrets(tenantID string, r record, now time.Time) ([][]byte, error) {
	encs := []string{r.Secret}
	if r.OldSecret != "" && r.OldUntil != nil && now.Before(*r.OldUntil) {
		encs = append(encs, r.OldSecret)
	}
	out := make([][]byte, 0, len(encs))
	for _, enc := range encs {
		plain, err := s.seal.open(tenantID, r.ID, enc)
		if err != nil {
			return nil, fmt.Errorf("secret of webhook %s: %w", r.ID, err)
		}
		key, err := signingKey(string(plain))
		if err != nil {
			return nil, fmt.Errorf("secret of webhook %s: %w", r.ID, err)
		}
		out = append(out, key)
	}
	return out, nil
}

func (s *Store) changed(tenantID string) {
	if s.events != nil {
		s.events.forget(tenantID)
	}
}

// checkURL applies the URL rules: http or https, and a public address unless private ones are
// allowed. It returns the URL to store or an ErrInvalid that says what is wrong.
func (s *Store) checkURL(ctx context.Context, raw string) (string, error) {
	if raw == "" {
		return "", fmt.Errorf("field \"url\" is required: %w", ErrInvalid)
	}
	u, err := s.guard.Check(ctx, raw)
	if errors.Is(err, urlguard.ErrForbidden) {
		why := strings.TrimSuffix(err.Error(), ": "+urlguard.ErrForbidden.Error())
		return "", fmt.Errorf("field \"url\" is refused: %s; webhooks reach public addresses only: %w", why, ErrInvalid)
	}
	if err != nil {
		return "", fmt.Errorf("field \"url\": %s: %w", err.Error(), ErrInvalid)
	}
	u.Fragment, u.RawFragment = "", "" // never sent: a fragment stays with the client
	return u.String(), nil
}

// checkEvents returns the event types without duplicates, in the order given, or ErrInvalid.
func checkEvents(in []string) ([]string, error) {
	if len(in) == 0 {
		return nil, fmt.Errorf("field \"events\" must list at least one of %s: %w", strings.Join(EventTypes, ", "), ErrInvalid)
	}
	out := make([]string, 0, len(in))
	for _, t := range in {
		if !slices.Contains(EventTypes, t) {
			return nil, fmt.Errorf("field \"events\": %q is not an event type; the types are %s: %w", truncate(t), strings.Join(EventTypes, ", "), ErrInvalid)
		}
		if !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	return out, nil
}

func checkDescription(d string) error {
	if !utf8.ValidString(d) || utf8.RuneCountInString(d) > MaxDescription {
		return fmt.Errorf("field \"description\" must be at most %d characters: %w", MaxDescription, ErrInvalid)
	}
	return nil
}

// truncate shortens what a caller sent before it goes into a message.
func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
