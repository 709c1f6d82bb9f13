package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"

	"github.com/redis/go-redis/v9"

	"github.com/streamgate/streamgate/internal/keys"
)

// Why an endpoint is disabled.
const (
	// DisabledByTenant: the tenant disabled it (PATCH with "disabled": true).
	DisabledByTenant = "tenant"
	// DisabledFailing: it had DisableAfter dead deliveries in a row.
	DisabledFailing = "failing"
)

// EndpointHealth is how one endpoint fares, for the operator.
type EndpointHealth struct {
	Endpoint
	// DisabledReason says why a disabled endpoint is: DisabledByTenant or DisabledFailing. It
	// is "" while the endpoint is enabled.
	DisabledReason string
	// DeadInARow is the endpoint's current run of dead deliveries; DisableAfter of them
	// disable it.
	DeadInARow int64
	// Dead is how many of its dead deliveries are kept (those of the last DeadRetention).
	Dead int64
	// LastSuccess and LastFailure are its newest succeeded and failed (or dead) attempts
	// among the last HistoryRows, or nil.
	LastSuccess *Attempt
	LastFailure *Attempt
}

// Failure is one failed (or dead) attempt of an endpoint.
type Failure struct {
	WebhookID string
	URL       string
	Attempt
}

// Health is how a tenant's webhooks fare.
type Health struct {
	// Endpoints are the tenant's endpoints, oldest first.
	Endpoints []EndpointHealth
	// Failures are the newest failed and dead attempts over all endpoints, newest first.
	Failures []Failure
	// Dead is how many dead deliveries the endpoints keep, in all.
	Dead int64
}

// Health reads how the tenant's endpoints fare, with at most failures recent failures, from
// each endpoint's delivery history (its last HistoryRows attempts) and dead deliveries: a few
// round trips, whatever the number of endpoints.
func (s *Store) Health(ctx context.Context, tenantID string, failures int) (Health, error) {
	recs, err := s.records(ctx, tenantID)
	if err != nil {
		return Health{}, err
	}
	out := Health{Endpoints: make([]EndpointHealth, len(recs)), Failures: []Failure{}}
	if len(recs) == 0 {
		return out, nil
	}
	deadAfter := "(" + strconv.FormatInt(s.now().Add(-DeadRetention).UnixMilli(), 10)
	var streaks *redis.MapStringStringCmd
	rowIDs := make([]*redis.StringSliceCmd, len(recs))
	dead := make([]*redis.IntCmd, len(recs))
	_, _ = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		streaks = p.HGetAll(ctx, keys.WebhookDeadStreaks(tenantID))
		for i, r := range recs {
			rowIDs[i] = p.ZRevRange(ctx, keys.WebhookAttemptIndex(tenantID, r.ID), 0, HistoryRows-1)
			dead[i] = p.ZCount(ctx, keys.WebhookDeadIndex(tenantID, r.ID), deadAfter, "+inf")
		}
		return nil
	})
	if err := streaks.Err(); err != nil {
		return Health{}, fmt.Errorf("read webhook health: %w", err)
	}
	rows := make([]*redis.SliceCmd, len(recs))
	_, _ = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, r := range recs {
			if ids := rowIDs[i].Val(); len(ids) > 0 {
				rows[i] = p.HMGet(ctx, keys.WebhookAttempts(tenantID, r.ID), ids...)
			}
		}
		return nil
	})
	for i, r := range recs {
		if err := cmp(rowIDs[i].Err(), dead[i].Err()); err != nil {
			return Health{}, fmt.Errorf("read webhook health: %w", err)
		}
		h := EndpointHealth{Endpoint: r.Endpoint, Dead: dead[i].Val()}
		h.DeadInARow, _ = strconv.ParseInt(streaks.Val()[r.ID], 10, 64)
		if r.Disabled {
			h.DisabledReason = r.DisabledReason
			if h.DisabledReason == "" { // disabled before reasons were kept: a run ends only on success or on enabling
				h.DisabledReason = DisabledByTenant
				if h.DeadInARow >= DisableAfter {
					h.DisabledReason = DisabledFailing
				}
			}
		}
		out.Dead += h.Dead
		if rows[i] != nil {
			raws, err := rows[i].Result()
			if err != nil {
				return Health{}, fmt.Errorf("read webhook health: %w", err)
			}
			for _, raw := range raws { // newest first
				str, ok := raw.(string)
				if !ok {
					continue // trimmed between the two reads
				}
				var a Attempt
				if err := json.Unmarshal([]byte(str), &a); err != nil {
					return Health{}, fmt.Errorf("decode delivery history: %w", err)
				}
				switch a.Status {
				case StatusSucceeded:
					if h.LastSuccess == nil {
						h.LastSuccess = &a
					}
				case StatusFailed, StatusDead:
					if h.LastFailure == nil {
						h.LastFailure = &a
					}
					out.Failures = append(out.Failures, Failure{WebhookID: r.ID, URL: r.URL, Attempt: a})
				}
			}
		}
		out.Endpoints[i] = h
	}
	slices.SortStableFunc(out.Failures, func(a, b Failure) int { return b.CreatedAt.Compare(a.CreatedAt) })
	if len(out.Failures) > failures {
		out.Failures = out.Failures[:failures]
	}
	return out, nil
}

// DeadCounts returns how many dead deliveries each tenant's endpoints keep, in all: two round
// trips per Redis shard, whatever the number of tenants.
func (s *Store) DeadCounts(ctx context.Context, tenantIDs ...string) (map[string]int64, error) {
	ids := make([]*redis.StringSliceCmd, len(tenantIDs))
	_, _ = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, t := range tenantIDs {
			ids[i] = p.HKeys(ctx, keys.Webhooks(t))
		}
		return nil
	})
	deadAfter := "(" + strconv.FormatInt(s.now().Add(-DeadRetention).UnixMilli(), 10)
	counts := make([][]*redis.IntCmd, len(tenantIDs))
	for i := range tenantIDs {
		if err := ids[i].Err(); err != nil {
			return nil, fmt.Errorf("count dead webhook deliveries: %w", err)
		}
	}
	_, _ = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, t := range tenantIDs {
			for _, id := range ids[i].Val() {
				counts[i] = append(counts[i], p.ZCount(ctx, keys.WebhookDeadIndex(t, id), deadAfter, "+inf"))
			}
		}
		return nil
	})
	out := make(map[string]int64, len(tenantIDs))
	for i, t := range tenantIDs {
		var n int64
		for _, c := range counts[i] {
			if err := c.Err(); err != nil {
				return nil, fmt.Errorf("count dead webhook deliveries: %w", err)
			}
			n += c.Val()
		}
		out[t] = n
	}
	return out, nil
}
