package telemetry

import (
	"cmp"
	"context"
	"slices"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	streamgate "github.com/streamgate/streamgate"
	"github.com/streamgate/streamgate/internal/jobs"
	"github.com/streamgate/streamgate/internal/session"
	"github.com/streamgate/streamgate/internal/stream"
)

// The instruments' names. The Prometheus exporter writes dots as underscores, adds _total to
// counters and the unit to the rest: streamgate.delivered is streamgate_delivered_total,
// streamgate.publish_to_delivery is streamgate_publish_to_delivery_seconds.
const (
	MetricConnections       = "streamgate.connections"
	MetricSubscriptions     = "streamgate.subscriptions"
	MetricNodeConnections   = "streamgate.node.connections"
	MetricNodeSubscriptions = "streamgate.node.subscriptions"
	MetricPublished         = "streamgate.published"
	MetricDelivered         = "streamgate.delivered"
	MetricDropped           = "streamgate.dropped"
	MetricEvicted           = "streamgate.evicted"
	MetricPublishToDelivery = "streamgate.publish_to_delivery"
	MetricRequestDuration   = "http.server.request.duration"
	MetricWorkerApplied     = "streamgate.worker.applied"
	MetricWorkerIgnored     = "streamgate.worker.ignored"
	MetricWorkerDuplicates  = "streamgate.worker.duplicates"
	MetricWorkerRetried     = "streamgate.worker.retried"
	MetricWorkerDead        = "streamgate.worker.dead_lettered"
	MetricWorkerLost        = "streamgate.worker.lost"
	MetricUpdatesPending    = "streamgate.updates.pending"
	MetricUpdatesLag        = "streamgate.updates.lag"
	MetricUpdatesDead       = "streamgate.updates.dead_letters"
	MetricRedisErrors       = "streamgate.redis.errors"
	MetricPubSubBreaks      = "streamgate.pubsub.breaks"
	MetricPubSubReconnects  = "streamgate.pubsub.reconnects"
	MetricPubSubSlotMoves   = "streamgate.pubsub.slot_moves"
	MetricPubSubShardConns  = "streamgate.pubsub.shard_connections"
)

// LatencyBuckets are the histogram boundaries, in seconds, of latencies from a millisecond to
// half a minute.
var LatencyBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}

// Meter returns Streamgate's meter of mp.
func Meter(mp metric.MeterProvider) metric.Meter { return mp.Meter(ScopeName) }

// OtherTenants is the tenant label of the series that sums every tenant outside the top N.
const OtherTenants = "other"

// ObserveSessions reports, on every collection, the node's open connections and subscriptions
// (node totals, present from start and 0 when idle) and, per tenant, connections,
// subscriptions and delivered, dropped and evicted counts since start, as stats tells them.
// Per-tenant series are bounded: the topN tenants by connections get their own label, the rest
// are summed under tenant="other" (whose counters restart when a tenant enters or leaves the
// top, which rate() treats as a counter reset).
func ObserveSessions(m metric.Meter, stats func() session.NodeStats, topN int) error {
	nodeConns, err := m.Int64ObservableGauge(MetricNodeConnections, metric.WithUnit("{connection}"),
		metric.WithDescription("Open end-user streams on this node, all tenants."))
	if err != nil {
		return err
	}
	nodeSubs, err := m.Int64ObservableGauge(MetricNodeSubscriptions, metric.WithUnit("{subscription}"),
		metric.WithDescription("Channel subscriptions of the open streams on this node, all tenants."))
	if err != nil {
		return err
	}
	conns, err := m.Int64ObservableGauge(MetricConnections, metric.WithUnit("{connection}"),
		metric.WithDescription("Open end-user streams on this node, per tenant (top tenants, then other)."))
	if err != nil {
		return err
	}
	subs, err := m.Int64ObservableGauge(MetricSubscriptions, metric.WithUnit("{subscription}"),
		metric.WithDescription("Channel subscriptions of the open streams on this node, per tenant."))
	if err != nil {
		return err
	}
	delivered, err := m.Int64ObservableCounter(MetricDelivered, metric.WithUnit("{message}"),
		metric.WithDescription("Messages written to end-user streams by this node."))
	if err != nil {
		return err
	}
	dropped, err := m.Int64ObservableCounter(MetricDropped, metric.WithUnit("{message}"),
		metric.WithDescription("Messages dropped because a session's buffer was full."))
	if err != nil {
		return err
	}
	evicted, err := m.Int64ObservableCounter(MetricEvicted, metric.WithUnit("{session}"),
		metric.WithDescription("Sessions closed for reading too slowly (lagging)."))
	if err != nil {
		return err
	}
	_, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		st := stats()
		o.ObserveInt64(nodeConns, int64(st.Connections))
		o.ObserveInt64(nodeSubs, int64(st.Subscriptions))
		for id, t := range TopTenants(st.Tenants, topN) {
			attrs := metric.WithAttributeSet(attribute.NewSet(attribute.String("tenant", id)))
			o.ObserveInt64(conns, int64(t.Connections), attrs)
			o.ObserveInt64(subs, int64(t.Subscriptions), attrs)
			o.ObserveInt64(delivered, int64(t.Delivered), attrs)
			o.ObserveInt64(dropped, int64(t.Dropped), attrs)
			o.ObserveInt64(evicted, int64(t.Evicted), attrs)
		}
		return nil
	}, nodeConns, nodeSubs, conns, subs, delivered, dropped, evicted)
	return err
}

// TopTenants keeps the n tenants with the most connections (ties by id) and sums the others
// under OtherTenants.
func TopTenants(tenants map[string]session.TenantStats, n int) map[string]session.TenantStats {
	if len(tenants) <= n {
		return tenants
	}
	ids := make([]string, 0, len(tenants))
	for id := range tenants {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, func(a, b string) int {
		if c := cmp.Compare(tenants[b].Connections, tenants[a].Connections); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})
	out := make(map[string]session.TenantStats, n+1)
	var other session.TenantStats
	for i, id := range ids {
		t := tenants[id]
		if i < n {
			out[id] = t
			continue
		}
		other.Connections += t.Connections
		other.Subscriptions += t.Subscriptions
		other.Delivered += t.Delivered
		other.Dropped += t.Dropped
		other.Evicted += t.Evicted
	}
	out[OtherTenants] = other
	return out
}

// ObserveWorker reports a worker's counters on every collection.
func ObserveWorker(m metric.Meter, stats func() jobs.WorkerStats) error {
	type counter struct {
		name, desc string
		value      func(jobs.WorkerStats) uint64
		inst       metric.Int64ObservableCounter
	}
	counters := []*counter{
		{name: MetricWorkerApplied, desc: "Job and workflow updates applied and published.", value: func(s jobs.WorkerStats) uint64 { return s.Applied }},
		{name: MetricWorkerIgnored, desc: "Updates to finished jobs, consumed without a change.", value: func(s jobs.WorkerStats) uint64 { return s.Ignored }},
		{name: MetricWorkerDuplicates, desc: "Entries delivered again after they were applied.", value: func(s jobs.WorkerStats) uint64 { return s.Duplicates }},
		{name: MetricWorkerRetried, desc: "Times an update waited for its predecessor and was tried again.", value: func(s jobs.WorkerStats) uint64 { return s.Retried }},
		{name: MetricWorkerDead, desc: "Entries moved to the dead-letter stream.", value: func(s jobs.WorkerStats) uint64 { return s.DeadLettered }},
		{name: MetricWorkerLost, desc: "Entries trimmed from the update stream before any worker applied them.", value: func(s jobs.WorkerStats) uint64 { return s.Lost }},
	}
	insts := make([]metric.Observable, len(counters))
	for i, c := range counters {
		var err error
		if c.inst, err = m.Int64ObservableCounter(c.name, metric.WithUnit("{update}"), metric.WithDescription(c.desc)); err != nil {
			return err
		}
		insts[i] = c.inst
	}
	_, err := m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		st := stats()
		for _, c := range counters {
			o.ObserveInt64(c.inst, int64(c.value(st)))
		}
		return nil
	}, insts...)
	return err
}

// ObserveBacklog reports the update stream's pending entries (read by a worker, not yet
// acknowledged) and lag (not yet read by any worker) on every collection, as backlog tells them.
// A backlog that cannot be read within two seconds is left out of that collection.
func ObserveBacklog(m metric.Meter, backlog func(context.Context) (pending, lag int64, err error)) error {
	pending, err := m.Int64ObservableGauge(MetricUpdatesPending, metric.WithUnit("{update}"),
		metric.WithDescription("Update stream entries read by a worker and not yet acknowledged."))
	if err != nil {
		return err
	}
	lag, err := m.Int64ObservableGauge(MetricUpdatesLag, metric.WithUnit("{update}"),
		metric.WithDescription("Update stream entries no worker has read yet."))
	if err != nil {
		return err
	}
	_, err = m.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		p, l, err := backlog(ctx)
		if err != nil {
			return err
		}
		o.ObserveInt64(pending, p)
		o.ObserveInt64(lag, l)
		return nil
	}, pending, lag)
	return err
}

// ObservePubSub reports, on every collection, how often the node's pub/sub connections broke
// and came back since start, and on a Redis Cluster how many sharded connections it holds and
// how often a slot's channels followed it to another master.
func ObservePubSub(m metric.Meter, stats func() stream.HubStats) error {
	breaks, err := m.Int64ObservableCounter(MetricPubSubBreaks, metric.WithUnit("{connection}"),
		metric.WithDescription("Pub/sub connections found dead (a failed read, or a keepalive ping unanswered)."))
	if err != nil {
		return err
	}
	reconnects, err := m.Int64ObservableCounter(MetricPubSubReconnects, metric.WithUnit("{connection}"),
		metric.WithDescription("Pub/sub connections back after a break; their streams then catch up from history."))
	if err != nil {
		return err
	}
	moves, err := m.Int64ObservableCounter(MetricPubSubSlotMoves, metric.WithUnit("{slot}"),
		metric.WithDescription("Redis Cluster slots whose channels moved to another master (resharding, failover); their streams then catch up from history."))
	if err != nil {
		return err
	}
	conns, err := m.Int64ObservableGauge(MetricPubSubShardConns, metric.WithUnit("{connection}"),
		metric.WithDescription("Sharded pub/sub connections held (Redis Cluster): one per master serving a channel of the node."))
	if err != nil {
		return err
	}
	_, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		st := stats()
		o.ObserveInt64(breaks, st.Breaks)
		o.ObserveInt64(reconnects, st.Reconnects)
		o.ObserveInt64(moves, st.Moves)
		o.ObserveInt64(conns, int64(st.ShardConns))
		return nil
	}, breaks, reconnects, moves, conns)
	return err
}

// ObserveDeadLetters reports the update stream's dead letters (kept, capped) on every
// collection.
func ObserveDeadLetters(m metric.Meter, count func(context.Context) (int64, error)) error {
	dead, err := m.Int64ObservableGauge(MetricUpdatesDead, metric.WithUnit("{update}"),
		metric.WithDescription("Updates in the dead-letter streams: failed too often to apply."))
	if err != nil {
		return err
	}
	_, err = m.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		n, err := count(ctx)
		if err != nil {
			return err
		}
		o.ObserveInt64(dead, n)
		return nil
	}, dead)
	return err
}

// MeasureDelivery returns d, recording for every message it hands on how long ago it was
// published: an event id is "<ms>-<seq>" with ms the Redis clock at publish, so the latency is
// measured once per node when the message arrives from Redis, before it is queued to the
// node's sessions. The clocks of Redis and the node must agree for it to mean anything.
func MeasureDelivery(m metric.Meter, d stream.Deliverer) (stream.Deliverer, error) {
	h, err := m.Float64Histogram(MetricPublishToDelivery, metric.WithUnit("s"),
		metric.WithDescription("Time from a publish (its event id) to its arrival at this node for delivery."),
		metric.WithExplicitBucketBoundaries(LatencyBuckets...))
	if err != nil {
		return nil, err
	}
	return measured{d: d, h: h}, nil
}

type measured struct {
	d stream.Deliverer
	h metric.Float64Histogram
}

func (m measured) Broadcast(tenantID, channel string, f *streamgate.Frame) int {
	if f.Message {
		if ms, _, ok := stream.ParseID(f.ID); ok {
			m.h.Record(context.Background(), max(time.Since(time.UnixMilli(int64(ms))).Seconds(), 0))
		}
	}
	return m.d.Broadcast(tenantID, channel, f)
}
