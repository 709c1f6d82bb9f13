package jobs

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"golang.org/x/sync/errgroup"

	streamgate "github.com/streamgate/streamgate"
	"github.com/streamgate/streamgate/internal/keys"
	"github.com/streamgate/streamgate/internal/stream"
)

var (
	//go:embed trim.lua
	trimLua    string
	trimScript = redis.NewScript(trimLua)
	//go:embed skip.lua
	skipLua    string
	skipScript = redis.NewScript(skipLua)
	//go:embed predecessor.lua
	predecessorLua    string
	predecessorScript = redis.NewScript(predecessorLua)
	//go:embed apply.lua
	applyLua string
	// applyScripts publish through the stream package's library, for a single Redis and for a
	// cluster.
	applyScripts = [2]*redis.Script{stream.PublishingScript(applyLua, false), stream.PublishingScript(applyLua, true)}
)

// DefaultGroup is the consumer group workers join unless told otherwise.
const DefaultGroup = "workers"

// WorkerConfig tunes a worker; zero fields take the defaults.
type WorkerConfig struct {
	Group    string // consumer group, DefaultGroup
	Consumer string // this worker's name in the group; unique per process
	// ClaimIdle is how long an entry may sit unacknowledged with another (presumably dead)
	// worker before this one takes it over. Default 30 s.
	ClaimIdle time.Duration
	// Retention is how long a finished job's or workflow's state is kept. Default 7 days.
	Retention time.Duration
	// MaxWait is how long an update waits for a predecessor before it may be applied without
	// it, and it is applied without it only once that predecessor can never come (deleted from
	// the stream, or dead-lettered). A predecessor pending with a worker, even a dead one whose
	// entries are claimed only after ClaimIdle, is waited for whatever the two durations are.
	// Default 1 minute.
	MaxWait time.Duration
	// MaxDeliveries is how many failed deliveries move an entry to the dead-letter stream.
	// Default 5.
	MaxDeliveries int64
	Batch         int64         // entries per read, 64
	Block         time.Duration // longest wait in one read, 2 s (never 0: shutdown must not hang)
	// Tracer traces the handling of each update as a span "apply update" that continues the
	// trace of the request that accepted it. Nil traces nothing.
	Tracer trace.TracerProvider
	// Notify hears of each job and workflow that reached a terminal state (webhooks). Nil
	// tells no one.
	Notify Notifier
}

// Notifier hears of jobs and workflows that finished: kind is "job" or "workflow", state the
// final state as GET /v1/jobs/{id} or GET /v1/workflows/{id} shows it. An error leaves the
// update unacknowledged: it is taken again later and the finish reported again.
type Notifier interface {
	Finished(ctx context.Context, tenantID, kind string, state json.RawMessage) error
}

func (c WorkerConfig) withDefaults() WorkerConfig {
	if c.Group == "" {
		c.Group = DefaultGroup
	}
	if c.Tracer == nil {
		c.Tracer = noop.NewTracerProvider()
	}
	if c.Consumer == "" {
		c.Consumer = streamgate.NewID("worker-")
	}
	if c.ClaimIdle <= 0 {
		c.ClaimIdle = 30 * time.Second
	}
	if c.Retention <= 0 {
		c.Retention = DefaultRetention
	}
	if c.MaxWait <= 0 {
		c.MaxWait = time.Minute
	}
	if c.MaxDeliveries <= 0 {
		c.MaxDeliveries = 5
	}
	if c.Batch <= 0 {
		c.Batch = 64
	}
	if c.Block <= 0 {
		c.Block = 2 * time.Second
	}
	return c
}

// WorkerStats are a worker's counters since it started.
type WorkerStats struct {
	Applied      uint64 // updates applied and published
	Ignored      uint64 // updates to a finished job, consumed without a change
	Duplicates   uint64 // entries delivered again after they were applied
	Retried      uint64 // times an update waited for its predecessor
	DeadLettered uint64 // entries moved to the dead-letter stream
	Lost         uint64 // entries trimmed from the stream before any worker applied them
}

// Worker consumes the update stream in a consumer group, applies each update to its job's or
// workflow's state and publishes the new state, then acknowledges it.
type Worker struct {
	rdb    redis.UniversalClient
	apply  *redis.Script
	cfg    WorkerConfig
	log    *slog.Logger
	tracer trace.Tracer

	applied, ignored, duplicates, retried, deadLettered, lost atomic.Uint64
}

// NewWorker returns a worker on rdb.
func NewWorker(rdb redis.UniversalClient, cfg WorkerConfig, log *slog.Logger) *Worker {
	cfg = cfg.withDefaults()
	apply := applyScripts[0]
	if stream.Sharded(rdb) {
		apply = applyScripts[1]
	}
	return &Worker{rdb: rdb, apply: apply, cfg: cfg, log: log.With("consumer", cfg.Consumer),
		tracer: cfg.Tracer.Tracer("github.com/streamgate/streamgate/internal/jobs")}
}

// Stats returns the worker's counters.
func (w *Worker) Stats() WorkerStats {
	return WorkerStats{Applied: w.applied.Load(), Ignored: w.ignored.Load(), Duplicates: w.duplicates.Load(),
		Retried: w.retried.Load(), DeadLettered: w.deadLettered.Load(), Lost: w.lost.Load()}
}

// Run consumes every partition until ctx ends. Then it stops reading, finishes the entries it
// holds, and returns; an entry it could not finish stays pending for another worker.
func (w *Worker) Run(ctx context.Context) error {
	g := new(errgroup.Group)
	for p := range keys.UpdatePartitions {
		g.Go(func() error { return w.partition(ctx, p) })
	}
	return g.Wait()
}

// held is an entry this worker has read and not yet acknowledged: waiting for its predecessor.
type held struct {
	msg        redis.XMessage
	deliveries int64
	applied    int64     // the job's last applied sequence number when it last had to wait
	since      time.Time // when it first had to wait here
	next       time.Time
	tries      int
}

func (w *Worker) partition(ctx context.Context, p int) error {
	stream := keys.Updates(p)
	// Work in flight finishes even when ctx ends: acknowledged means applied.
	work := context.WithoutCancel(ctx)
	var waiting []held
	nextClaim := time.Time{}
	backoff := 100 * time.Millisecond
	w.ensureGroup(work, stream)
	for {
		if ctx.Err() != nil {
			w.retryDue(work, p, waiting, true)
			return nil
		}
		waiting = w.retryDue(work, p, waiting, false)
		if time.Now().After(nextClaim) {
			waiting = append(waiting, w.claim(work, p, waiting)...)
			nextClaim = time.Now().Add(w.claimInterval())
			w.trim(work, stream)
		}
		block := w.cfg.Block
		if len(waiting) > 0 {
			block = 50 * time.Millisecond
		}
		res, err := w.rdb.XReadGroup(work, &redis.XReadGroupArgs{
			Group: w.cfg.Group, Consumer: w.cfg.Consumer, Streams: []string{stream, ">"},
			Count: w.cfg.Batch, Block: block,
		}).Result()
		switch {
		case errors.Is(err, redis.Nil):
			continue
		case err != nil && strings.HasPrefix(err.Error(), "NOGROUP"):
			w.ensureGroup(work, stream)
			continue
		case err != nil:
			w.log.Warn("read updates", "partition", p, "err", err)
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
			}
			backoff = min(backoff*2, 5*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		for _, s := range res {
			for _, m := range s.Messages {
				if h, wait := w.process(work, p, m, 1, false); wait {
					waiting = append(waiting, h)
				}
			}
		}
	}
}

// trim removes from a partition what every consumer group has acknowledged; entries still
// pending or unread stay, whatever their number.
func (w *Worker) trim(ctx context.Context, stream string) {
	if err := trimScript.Run(ctx, w.rdb, []string{stream}).Err(); err != nil && !errors.Is(err, redis.Nil) {
		w.log.Warn("trim the update stream", "stream", stream, "err", err)
	}
}

func (w *Worker) claimInterval() time.Duration {
	return max(w.cfg.ClaimIdle/2, 50*time.Millisecond)
}

// ensureGroup creates the consumer group from the start of the stream, so that nothing
// accepted before the first worker started is skipped.
func (w *Worker) ensureGroup(ctx context.Context, stream string) {
	err := w.rdb.XGroupCreateMkStream(ctx, stream, w.cfg.Group, "0").Err()
	if err != nil && !strings.HasPrefix(err.Error(), "BUSYGROUP") {
		w.log.Warn("create consumer group", "stream", stream, "err", err)
	}
}

// retryDue runs the waiting entries whose time has come (all of them when draining) and
// returns those still waiting.
func (w *Worker) retryDue(ctx context.Context, p int, waiting []held, drain bool) []held {
	now := time.Now()
	kept := waiting[:0]
	for _, h := range waiting {
		if !drain && now.Before(h.next) {
			kept = append(kept, h)
			continue
		}
		w.retried.Add(1)
		force := w.mayForce(ctx, p, h, now)
		if again, wait := w.process(ctx, p, h.msg, h.deliveries, force); wait && !drain {
			again.since, again.tries = h.since, h.tries+1
			again.next = now.Add(min(time.Duration(again.tries)*20*time.Millisecond, time.Second))
			kept = append(kept, again)
		}
	}
	clear(waiting[len(kept):])
	return kept
}

// mayForce reports whether a held update may be applied without its missing predecessor. Only
// an update that has itself waited MaxWait goes ahead without it (an old backlog alone never
// reorders a job), and only when no predecessor can come any more: one still pending in the
// group, with a live worker or with a dead one until its entries are claimed, is waited for.
// Going ahead of it would apply the two out of order, and the late one would be dropped as a
// duplicate.
func (w *Worker) mayForce(ctx context.Context, p int, h held, now time.Time) bool {
	waited := now.Sub(h.since)
	if waited <= w.cfg.MaxWait {
		return false
	}
	prev, _ := h.msg.Values["prev"].(string)
	if prev != "" {
		res, err := predecessorScript.Run(ctx, w.rdb, []string{keys.Updates(p)}, w.cfg.Group, prev, h.applied).Text()
		if err != nil {
			w.log.WarnContext(ctx, "look for a missing predecessor", "partition", p, "entry", h.msg.ID, "err", err)
			return false // asked again at the next retry
		}
		switch res {
		case "pending":
			return false
		case "gone":
			w.log.WarnContext(ctx, "update goes ahead of a predecessor that can never come (deleted or dead-lettered)",
				"partition", p, "entry", h.msg.ID, "waited", waited.String())
			return true
		}
	}
	// Without prev links (entries of an earlier version), only time tells: by twice ClaimIdle,
	// a dead worker's entries have been claimed and applied.
	if waited <= 2*w.cfg.ClaimIdle {
		return false
	}
	w.log.WarnContext(ctx, "update goes ahead of a predecessor that did not come", "partition", p, "entry", h.msg.ID, "waited", waited.String())
	return true
}

// claim takes over entries idle longer than ClaimIdle from other (dead) consumers, counts the
// ones that were trimmed away meanwhile, and processes the rest. An entry this worker already
// holds (it waited that long for its predecessor) stays held and is not processed twice.
func (w *Worker) claim(ctx context.Context, p int, holding []held) []held {
	stream := keys.Updates(p)
	var waiting []held
	mine := make(map[string]bool, len(holding))
	for _, h := range holding {
		mine[h.msg.ID] = true
	}
	start := "0-0"
	for range 100 { // bounded: at most 100 pages of 100 per round
		raw, err := w.rdb.Do(ctx, "XAUTOCLAIM", stream, w.cfg.Group, w.cfg.Consumer,
			w.cfg.ClaimIdle.Milliseconds(), start, "COUNT", 100).Slice()
		if err != nil {
			if !strings.HasPrefix(err.Error(), "NOGROUP") {
				w.log.Warn("claim idle updates", "partition", p, "err", err)
			}
			return waiting
		}
		next, msgs, deleted := parseAutoClaim(raw)
		if len(deleted) > 0 {
			w.lost.Add(uint64(len(deleted)))
			w.log.Error("updates lost: trimmed from the stream before they were applied", "partition", p, "count", len(deleted))
		}
		counts := w.deliveries(ctx, stream, msgs)
		for _, m := range msgs {
			if mine[m.ID] {
				continue
			}
			if h, wait := w.process(ctx, p, m, counts[m.ID], false); wait {
				waiting = append(waiting, h)
			}
		}
		if next == "0-0" || next == "" {
			break
		}
		start = next
	}
	return waiting
}

// deliveries reads how many times each claimed entry has been delivered.
func (w *Worker) deliveries(ctx context.Context, stream string, msgs []redis.XMessage) map[string]int64 {
	out := make(map[string]int64, len(msgs))
	if len(msgs) == 0 {
		return out
	}
	ids := make([]string, len(msgs))
	for i, m := range msgs {
		ids[i] = m.ID
	}
	sort.Slice(ids, func(i, j int) bool { return idLess(ids[i], ids[j]) })
	pend, err := w.rdb.XPendingExt(ctx, &redis.XPendingExtArgs{
		Stream: stream, Group: w.cfg.Group, Start: ids[0], End: ids[len(ids)-1],
		Count: int64(len(ids)) + 100, Consumer: w.cfg.Consumer,
	}).Result()
	if err != nil {
		w.log.Warn("read delivery counts", "err", err)
	}
	for _, pe := range pend {
		out[pe.ID] = pe.RetryCount
	}
	for _, id := range ids {
		if out[id] == 0 {
			out[id] = 1
		}
	}
	return out
}

// entry is an update as stored in the stream.
type entry struct {
	tenantID, kind, id string
	seq                int64
	fields             map[string]json.RawMessage
	window             stream.Window
}

func decodeEntry(m redis.XMessage) (entry, error) {
	str := func(k string) string { s, _ := m.Values[k].(string); return s }
	e := entry{tenantID: str("tenant"), kind: str("kind"), id: str("id")}
	var err error
	if e.seq, err = strconv.ParseInt(str("seq"), 10, 64); err != nil || e.seq < 1 {
		return e, errors.New("no sequence number")
	}
	if e.tenantID == "" || !streamgate.ValidID(e.id) {
		return e, errors.New("no tenant or a bad id")
	}
	if e.kind != UpdateJob && e.kind != UpdateWorkflow && e.kind != UpdateStep {
		return e, fmt.Errorf("unknown kind %q", e.kind)
	}
	if err := json.Unmarshal([]byte(str("fields")), &e.fields); err != nil || len(e.fields) == 0 {
		return e, errors.New("no update fields")
	}
	e.window.Events, _ = strconv.Atoi(str("hist_events"))
	e.window.Seconds, _ = strconv.Atoi(str("hist_secs"))
	if e.window.Events < 1 || e.window.Seconds < 1 {
		return e, errors.New("no history window")
	}
	return e, nil
}

func (e entry) update() Update { return Update{TenantID: e.tenantID, Kind: e.kind, ID: e.id} }

func (e entry) stateKey() string {
	if e.kind == UpdateJob {
		return keys.JobState(e.tenantID, e.id)
	}
	return keys.WorkflowState(e.tenantID, e.id)
}

// process applies one entry. It returns wait when the entry must wait for its predecessor;
// otherwise the entry is acknowledged, or left pending after a failure, or dead-lettered after
// MaxDeliveries failures.
//
// It is traced as "apply update", a child of the span that accepted the update (its context is
// in the entry), so that one trace runs from the request through here to the publish, which is
// the apply script's Redis call.
func (w *Worker) process(ctx context.Context, p int, m redis.XMessage, deliveries int64, force bool) (_ held, wait bool) {
	ctx, span := w.startSpan(ctx, p, m, deliveries)
	defer func() {
		span.SetAttributes(attribute.Bool("streamgate.update.wait", wait))
		span.End()
	}()
	e, err := decodeEntry(m)
	if err != nil {
		w.fail(ctx, p, m, deliveries, e, fmt.Errorf("malformed entry: %w", err))
		return held{}, false
	}
	if span.IsRecording() {
		span.SetAttributes(attribute.String("streamgate.tenant", e.tenantID), attribute.String("streamgate.update.kind", e.kind),
			attribute.String("streamgate.update.target", e.id), attribute.Int64("streamgate.update.seq", e.seq))
	}
	u := e.update()
	channel := u.Channel()
	args := []any{e.kind, e.id, e.seq, boolArg(force), time.Now().UTC().Format(time.RFC3339Nano), channel,
		keys.Channel(e.tenantID, channel), stream.NewEpoch(), e.window.Events, e.window.Seconds, w.cfg.Retention.Milliseconds()}
	names := make([]string, 0, len(e.fields))
	for k := range e.fields {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		args = append(args, k, string(e.fields[k]))
	}
	ks := []string{e.stateKey(), keys.Sequence(e.tenantID), keys.Trimmed(e.tenantID), keys.History(e.tenantID, channel)}
	res, err := stream.RunScript(ctx, w.rdb, w.apply, ks, args...).StringSlice()
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, "apply failed")
		var rerr redis.Error
		if errors.As(err, &rerr) && strings.Contains(err.Error(), "script") {
			w.fail(ctx, p, m, deliveries, e, fmt.Errorf("apply: %w", err))
		} else {
			w.log.WarnContext(ctx, "apply update", "partition", p, "entry", m.ID, "err", err) // Redis trouble: retried by a claim
		}
		return held{}, false
	}
	span.SetAttributes(attribute.String("streamgate.update.result", res[0]))
	switch res[0] {
	case "wait":
		applied, _ := strconv.ParseInt(res[1], 10, 64)
		return held{msg: m, deliveries: deliveries, applied: applied, since: time.Now()}, true
	case "applied":
		w.applied.Add(1)
	case "ignored":
		w.ignored.Add(1)
	case "dup":
		w.duplicates.Add(1)
	}
	if len(res) == 3 && res[2] != "" {
		if err := w.finished(ctx, e, res[2]); err != nil {
			// Unacknowledged, the entry is claimed again and the finish reported again.
			w.log.WarnContext(ctx, "report finished "+e.kind, "partition", p, "entry", m.ID, "err", err)
			return held{}, false
		}
	}
	w.ack(ctx, p, m.ID)
	return held{}, false
}

// finished tells the notifier of a job or workflow that reached a terminal state; event is the
// state event the apply script published ({"channel", "job"|"workflow": …}).
func (w *Worker) finished(ctx context.Context, e entry, event string) error {
	if w.cfg.Notify == nil {
		return nil
	}
	kind := UpdateJob
	if e.kind != UpdateJob {
		kind = UpdateWorkflow
	}
	var ev map[string]json.RawMessage
	if err := json.Unmarshal([]byte(event), &ev); err != nil || len(ev[kind]) == 0 {
		return fmt.Errorf("decode the final state of %s %s", kind, e.id)
	}
	return w.cfg.Notify.Finished(ctx, e.tenantID, kind, ev[kind])
}

// startSpan starts the span of handling entry m, continuing the trace whose context the entry
// carries (fields "trace" and "tracestate", W3C format), or a new trace.
func (w *Worker) startSpan(ctx context.Context, p int, m redis.XMessage, deliveries int64) (context.Context, trace.Span) {
	carrier := propagation.MapCarrier{}
	if tp, _ := m.Values["trace"].(string); tp != "" {
		carrier.Set("traceparent", tp)
		if ts, _ := m.Values["tracestate"].(string); ts != "" {
			carrier.Set("tracestate", ts)
		}
		ctx = propagation.TraceContext{}.Extract(ctx, carrier)
	}
	ctx, span := w.tracer.Start(ctx, "apply update", trace.WithSpanKind(trace.SpanKindConsumer))
	if span.IsRecording() { // spare the attributes when nothing records them
		span.SetAttributes(
			attribute.String("messaging.system", "redis"),
			attribute.String("messaging.operation.type", "process"),
			attribute.String("messaging.destination.name", keys.Updates(p)),
			attribute.String("messaging.consumer.group.name", w.cfg.Group),
			attribute.String("messaging.message.id", m.ID),
			attribute.Int64("messaging.message.delivery_count", deliveries),
		)
	}
	return ctx, span
}

func (w *Worker) ack(ctx context.Context, p int, id string) {
	if err := w.rdb.XAck(ctx, keys.Updates(p), w.cfg.Group, id).Err(); err != nil {
		// Applying again is harmless: the entry will come back as a duplicate.
		w.log.WarnContext(ctx, "acknowledge update", "partition", p, "entry", id, "err", err)
	}
}

// fail leaves an entry that could not be applied pending, to be claimed and tried again, until
// it has failed MaxDeliveries times: then it goes to the dead-letter stream with the reason and
// is acknowledged, and its job's later updates no longer wait for it.
func (w *Worker) fail(ctx context.Context, p int, m redis.XMessage, deliveries int64, e entry, reason error) {
	if deliveries < w.cfg.MaxDeliveries {
		w.log.WarnContext(ctx, "update failed; it will be retried", "partition", p, "entry", m.ID, "deliveries", deliveries, "err", reason)
		return
	}
	values := make([]any, 0, 2*len(m.Values)+6)
	for k, v := range m.Values {
		values = append(values, "entry_"+k, v)
	}
	values = append(values, "entry_id", m.ID, "reason", reason.Error(), "deliveries", deliveries)
	// The dead letters are capped (about DeadLetterCap per partition, oldest out first): a
	// flood of poison updates must not fill Redis. Their count is a metric.
	if err := w.rdb.XAdd(ctx, &redis.XAddArgs{Stream: keys.DeadLetters(p), MaxLen: DeadLetterCap, Approx: true, Values: values}).Err(); err != nil {
		w.log.WarnContext(ctx, "dead-letter update", "partition", p, "entry", m.ID, "err", err)
		return
	}
	if e.seq > 0 && e.tenantID != "" && e.id != "" {
		if err := skipScript.Run(ctx, w.rdb, []string{e.stateKey()}, e.seq).Err(); err != nil {
			w.log.WarnContext(ctx, "skip dead-lettered update", "entry", m.ID, "err", err)
		}
	}
	w.deadLettered.Add(1)
	w.log.ErrorContext(ctx, "update dead-lettered", "partition", p, "entry", m.ID, "deliveries", deliveries, "reason", reason.Error())
	w.ack(ctx, p, m.ID)
}

// Backlog reports the update stream's pending entries (read, not yet acknowledged) and lag
// (not yet read) over all partitions, for the metrics.
func (w *Worker) Backlog(ctx context.Context) (pending, lag int64, err error) {
	return Backlog(ctx, w.rdb, w.cfg.Group)
}

// Backlog reports a consumer group's pending entries and lag over all partitions, in one
// pipeline (on a cluster, one per shard). Before the group exists, every entry is lag: the
// first worker reads the stream from its start.
func Backlog(ctx context.Context, rdb redis.UniversalClient, group string) (pending, lag int64, err error) {
	infos := make([]*redis.XInfoGroupsCmd, keys.UpdatePartitions)
	lens := make([]*redis.IntCmd, keys.UpdatePartitions)
	// Each command's own error is looked at below: a partition without a stream yet is no error.
	_, _ = rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for p := range keys.UpdatePartitions {
			infos[p] = pipe.XInfoGroups(ctx, keys.Updates(p))
			lens[p] = pipe.XLen(ctx, keys.Updates(p))
		}
		return nil
	})
	for p := range keys.UpdatePartitions {
		groups, gerr := infos[p].Result()
		if gerr != nil {
			if strings.Contains(gerr.Error(), "no such key") {
				continue // no update yet in that partition
			}
			return 0, 0, fmt.Errorf("inspect update stream: %w", gerr)
		}
		found := false
		for _, g := range groups {
			if g.Name == group {
				found = true
				pending += g.Pending
				lag += max(g.Lag, 0)
			}
		}
		if !found {
			n, lerr := lens[p].Result()
			if lerr != nil {
				return 0, 0, fmt.Errorf("inspect update stream: %w", lerr)
			}
			lag += n
		}
	}
	return pending, lag, nil
}

// DeadLetterCap is about how many dead letters each partition keeps.
const DeadLetterCap = 10_000

// DeadLetters counts the dead letters over all partitions, for the metrics.
func (w *Worker) DeadLetters(ctx context.Context) (int64, error) { return DeadLetters(ctx, w.rdb) }

// DeadLetters counts the dead letters over all partitions, in one pipeline.
func DeadLetters(ctx context.Context, rdb redis.UniversalClient) (int64, error) {
	lens := make([]*redis.IntCmd, keys.UpdatePartitions)
	_, err := rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for p := range keys.UpdatePartitions {
			lens[p] = pipe.XLen(ctx, keys.DeadLetters(p))
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("count dead letters: %w", err)
	}
	var n int64
	for _, l := range lens {
		n += l.Val()
	}
	return n, nil
}

func parseAutoClaim(raw []any) (next string, msgs []redis.XMessage, deleted []string) {
	if len(raw) < 2 {
		return "", nil, nil
	}
	next, _ = raw[0].(string)
	list, _ := raw[1].([]any)
	for _, item := range list {
		pair, ok := item.([]any)
		if !ok || len(pair) != 2 {
			continue
		}
		id, _ := pair[0].(string)
		kv, _ := pair[1].([]any)
		if kv == nil {
			deleted = append(deleted, id) // Redis 6.2 reports trimmed entries in place
			continue
		}
		vals := make(map[string]any, len(kv)/2)
		for i := 0; i+1 < len(kv); i += 2 {
			k, _ := kv[i].(string)
			vals[k] = kv[i+1]
		}
		msgs = append(msgs, redis.XMessage{ID: id, Values: vals})
	}
	if len(raw) > 2 {
		if del, ok := raw[2].([]any); ok {
			for _, d := range del {
				if id, ok := d.(string); ok {
					deleted = append(deleted, id)
				}
			}
		}
	}
	return next, msgs, deleted
}

func idLess(a, b string) bool {
	am, as, _ := stream.ParseID(a)
	bm, bs, _ := stream.ParseID(b)
	return am < bm || am == bm && as < bs
}

func boolArg(b bool) string {
	if b {
		return "1"
	}
	return "0"
}
