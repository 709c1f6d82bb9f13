package webhook

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/errgroup"

	streamgate "github.com/streamgate/streamgate"
	"github.com/streamgate/streamgate/internal/keys"
	"github.com/streamgate/streamgate/internal/urlguard"
)

// Defaults of the dispatcher's bounds.
const (
	DefaultGroup = "webhooks"
	// DefaultEndpointConcurrency is how many deliveries one endpoint has in flight at most,
	// over all workers.
	DefaultEndpointConcurrency = 4
	// DefaultTenantConcurrency is how many deliveries of one tenant a worker sends at once, so
	// that a tenant with many slow endpoints takes a bounded share of it.
	DefaultTenantConcurrency = 16
	// DefaultMaxInFlight is how many deliveries a worker sends at once.
	DefaultMaxInFlight = 256
)

// DispatcherConfig tunes a dispatcher; zero fields take the defaults.
type DispatcherConfig struct {
	Group    string // consumer group of the event streams, DefaultGroup
	Consumer string // this worker's name in the group; unique per process
	// Timeout is how long an endpoint has to answer. Default (and the contract's) Timeout.
	Timeout time.Duration
	// Schedule is the delays between attempts; default the contract's Schedule. Tests shorten it.
	Schedule []time.Duration
	// DisableAfter is how many dead deliveries in a row disable an endpoint; default
	// DisableAfter.
	DisableAfter        int
	EndpointConcurrency int // DefaultEndpointConcurrency
	TenantConcurrency   int // DefaultTenantConcurrency
	MaxInFlight         int // DefaultMaxInFlight
	// Poll is how often an idle dispatcher looks for new events and due deliveries. Default
	// 200 ms.
	Poll time.Duration
	// ClaimIdle is how long an event may sit read but not fanned out by another (presumably
	// dead) worker before this one takes it over. Default 30 s.
	ClaimIdle time.Duration
	// StopGrace is how long sends in flight may go on once Run is told to stop; then they are
	// abandoned and their deliveries put back, unattempted, for another worker. Default 5 s,
	// within the worker's shutdown timeout.
	StopGrace time.Duration
}

func (c DispatcherConfig) withDefaults() DispatcherConfig {
	if c.Group == "" {
		c.Group = DefaultGroup
	}
	if c.Consumer == "" {
		c.Consumer = streamgate.NewID("dispatcher-")
	}
	if c.Timeout <= 0 {
		c.Timeout = Timeout
	}
	if len(c.Schedule) == 0 {
		c.Schedule = Schedule
	}
	if c.DisableAfter <= 0 {
		c.DisableAfter = DisableAfter
	}
	if c.EndpointConcurrency <= 0 {
		c.EndpointConcurrency = DefaultEndpointConcurrency
	}
	if c.TenantConcurrency <= 0 {
		c.TenantConcurrency = DefaultTenantConcurrency
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = DefaultMaxInFlight
	}
	if c.Poll <= 0 {
		c.Poll = 200 * time.Millisecond
	}
	if c.ClaimIdle <= 0 {
		c.ClaimIdle = 30 * time.Second
	}
	if c.StopGrace <= 0 {
		c.StopGrace = 5 * time.Second
	}
	return c
}

// DispatcherStats are a dispatcher's counters since it started.
type DispatcherStats struct {
	Routed    uint64 // events fanned out to endpoints
	Succeeded uint64 // attempts answered with a 2xx
	Failed    uint64 // attempts that failed and will be retried
	Dead      uint64 // deliveries that failed their last attempt
	Disabled  uint64 // endpoints this dispatcher disabled
}

// Dispatcher delivers webhook events; cmd/worker runs one, and any number of them share the
// work. Its router reads the event streams in a consumer group and queues one delivery per
// endpoint that wants each event; its scheduler takes endpoints with due deliveries, as far as
// their concurrency and the worker's bounds allow, and hands each delivery to a sender.
type Dispatcher struct {
	rdb    redis.UniversalClient
	store  *Store
	cfg    DispatcherConfig
	client *http.Client
	log    *slog.Logger
	lease  time.Duration

	wake chan struct{} // a delivery was queued or a send ended: look for due ones again
	// sends is the context of sends in flight: it outlives Run's by StopGrace.
	sends context.Context

	mu       sync.Mutex
	inFlight int
	byTenant map[string]int
	senders  sync.WaitGroup

	routed, succeeded, failed, dead, disabled atomic.Uint64
}

// NewDispatcher returns a dispatcher that reads endpoints and secrets from store and reaches
// them only through store's URL guard.
func NewDispatcher(store *Store, cfg DispatcherConfig, log *slog.Logger) *Dispatcher {
	cfg = cfg.withDefaults()
	return &Dispatcher{
		rdb: store.rdb, store: store, cfg: cfg, log: log.With("consumer", cfg.Consumer),
		client: store.guard.Client(cfg.Timeout),
		// A send ends well within its lease; only a dead worker's leases run out.
		lease: cfg.Timeout + 50*time.Second,
		wake:  make(chan struct{}, 1), byTenant: make(map[string]int),
	}
}

// Stats returns the dispatcher's counters.
func (d *Dispatcher) Stats() DispatcherStats {
	return DispatcherStats{Routed: d.routed.Load(), Succeeded: d.succeeded.Load(), Failed: d.failed.Load(),
		Dead: d.dead.Load(), Disabled: d.disabled.Load()}
}

// Run routes and sends until ctx ends; then it starts nothing new, gives the sends in flight
// StopGrace to finish, puts back the deliveries of those that did not, and returns. Run once.
func (d *Dispatcher) Run(ctx context.Context) error {
	sends, abandon := context.WithCancel(context.WithoutCancel(ctx))
	defer abandon()
	d.sends = sends
	g := new(errgroup.Group)
	g.Go(func() error { return d.route(ctx) })
	g.Go(func() error { return d.schedule(ctx) })
	err := g.Wait()
	grace := time.AfterFunc(d.cfg.StopGrace, abandon)
	defer grace.Stop()
	d.senders.Wait()
	return err
}

func (d *Dispatcher) nudge() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// sleep waits for a nudge, the poll interval or the end of ctx.
// backOff logs a failed step of a loop, waits its backoff (or until ctx ends) and doubles it,
// up to 5 s.
func (d *Dispatcher) backOff(ctx context.Context, what string, err error, backoff *time.Duration) {
	if ctx.Err() == nil {
		d.log.Warn(what, "err", err, "retry_in", backoff.String())
	}
	select {
	case <-ctx.Done():
	case <-time.After(*backoff):
	}
	*backoff = min(*backoff*2, 5*time.Second)
}

func (d *Dispatcher) sleep(ctx context.Context, t *time.Timer) {
	t.Reset(d.cfg.Poll)
	select {
	case <-ctx.Done():
	case <-d.wake:
	case <-t.C:
	}
}

// route fans out the events of every partition: it reads new ones (a non-blocking read of all
// partitions in one round trip, so that no connection is held waiting), takes over those a dead
// worker left, and acknowledges each once its deliveries are queued.
func (d *Dispatcher) route(ctx context.Context) error {
	for p := range keys.WebhookPartitions {
		d.ensureGroup(ctx, p)
	}
	t := time.NewTimer(d.cfg.Poll)
	defer t.Stop()
	nextClaim := time.Now().Add(d.cfg.ClaimIdle / 2)
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		if time.Now().After(nextClaim) {
			d.claim(ctx)
			nextClaim = time.Now().Add(max(d.cfg.ClaimIdle/2, 50*time.Millisecond))
		}
		n, err := d.readNew(ctx)
		if err != nil {
			d.backOff(ctx, "read webhook events", err, &backoff)
			continue
		}
		backoff = 100 * time.Millisecond
		if n == 0 {
			t.Reset(d.cfg.Poll)
			select {
			case <-ctx.Done():
			case <-t.C:
			}
		}
	}
	return nil
}

func (d *Dispatcher) ensureGroup(ctx context.Context, p int) {
	err := d.rdb.XGroupCreateMkStream(ctx, keys.WebhookEvents(p), d.cfg.Group, "0").Err()
	if err != nil && !strings.HasPrefix(err.Error(), "BUSYGROUP") && ctx.Err() == nil {
		d.log.Warn("create webhook consumer group", "partition", p, "err", err)
	}
}

// readNew reads and fans out a batch of new events from every partition; it returns how many.
func (d *Dispatcher) readNew(ctx context.Context) (int, error) {
	cmds := make([]*redis.XStreamSliceCmd, keys.WebhookPartitions)
	_, _ = d.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i := range keys.WebhookPartitions {
			cmds[i] = p.XReadGroup(ctx, &redis.XReadGroupArgs{
				Group: d.cfg.Group, Consumer: d.cfg.Consumer, Streams: []string{keys.WebhookEvents(i), ">"},
				Count: 100, Block: -1,
			})
		}
		return nil
	})
	n := 0
	var firstErr error
	for p, cmd := range cmds {
		res, err := cmd.Result()
		switch {
		case errors.Is(err, redis.Nil):
			continue
		case err != nil && strings.HasPrefix(err.Error(), "NOGROUP"):
			d.ensureGroup(ctx, p)
			continue
		case err != nil:
			firstErr = cmp(firstErr, err)
			continue
		}
		for _, s := range res {
			for _, m := range s.Messages {
				d.fanOut(ctx, p, m)
				n++
			}
		}
	}
	return n, firstErr
}

func cmp(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// claim takes over events another consumer read more than ClaimIdle ago and never
// acknowledged, and fans them out.
func (d *Dispatcher) claim(ctx context.Context) {
	for p := range keys.WebhookPartitions {
		msgs, _, err := d.rdb.XAutoClaim(ctx, &redis.XAutoClaimArgs{
			Stream: keys.WebhookEvents(p), Group: d.cfg.Group, Consumer: d.cfg.Consumer,
			MinIdle: d.cfg.ClaimIdle, Start: "0-0", Count: 100,
		}).Result()
		if err != nil {
			if !strings.HasPrefix(err.Error(), "NOGROUP") && ctx.Err() == nil {
				d.log.Warn("claim webhook events", "partition", p, "err", err)
			}
			continue
		}
		for _, m := range msgs {
			d.fanOut(ctx, p, m)
		}
	}
}

// fanOut queues one delivery of an event per enabled endpoint of its tenant that wants it,
// then acknowledges and deletes the entry. When Redis fails part way, the entry stays pending
// and is fanned out again later; deliveries still queued are not queued twice.
func (d *Dispatcher) fanOut(ctx context.Context, p int, m redis.XMessage) {
	stream := keys.WebhookEvents(p)
	ev, err := decodeEvent(m)
	if err != nil {
		d.log.Error("malformed webhook event dropped", "partition", p, "entry", m.ID, "err", err)
		d.ackDelete(ctx, stream, m.ID)
		return
	}
	recs, err := d.store.records(ctx, ev.TenantID)
	if err != nil {
		d.log.Warn("fan out webhook event", "tenant", ev.TenantID, "err", err)
		return
	}
	now := time.Now()
	for _, r := range recs {
		if r.Disabled || !r.Wants(ev.Type) {
			continue
		}
		del := newDelivery(deliveryID(p, m.ID, r.ID), r.ID, ev)
		if err := enqueue(ctx, d.rdb, del, now, d.cfg.EndpointConcurrency); err != nil {
			d.log.Warn("fan out webhook event", "tenant", ev.TenantID, "webhook", r.ID, "err", err)
			return
		}
	}
	d.routed.Add(1)
	d.ackDelete(ctx, stream, m.ID)
	d.nudge()
}

func (d *Dispatcher) ackDelete(ctx context.Context, stream, id string) {
	_, err := d.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.XAck(ctx, stream, d.cfg.Group, id)
		p.XDel(ctx, stream, id)
		return nil
	})
	if err != nil && ctx.Err() == nil {
		d.log.Warn("acknowledge webhook event", "entry", id, "err", err)
	}
}

// schedule starts sends while the worker has room: it reads which endpoints of every
// partition have a due delivery, and takes deliveries of each as far as the endpoint's
// concurrency, its tenant's share of this worker and the worker's own bound allow. An endpoint
// whose every slot is taken leaves the due set until a slot frees, so it costs the others
// nothing.
func (d *Dispatcher) schedule(ctx context.Context) error {
	t := time.NewTimer(d.cfg.Poll)
	defer t.Stop()
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		room := d.room()
		if room == 0 {
			d.sleep(ctx, t)
			continue
		}
		started, err := d.startDue(ctx, room)
		if err != nil {
			d.backOff(ctx, "schedule webhook deliveries", err, &backoff)
			continue
		}
		backoff = 100 * time.Millisecond
		if started == 0 {
			d.sleep(ctx, t)
		}
	}
	return nil
}

func (d *Dispatcher) room() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cfg.MaxInFlight - d.inFlight
}

// startDue starts up to room sends of due deliveries and returns how many it started.
func (d *Dispatcher) startDue(ctx context.Context, room int) (int, error) {
	now := time.Now()
	cmds := make([]*redis.StringSliceCmd, keys.WebhookPartitions)
	_, err := d.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i := range keys.WebhookPartitions {
			// Endpoints beyond room are read too: some may belong to tenants at their share.
			cmds[i] = p.ZRangeByScore(ctx, keys.WebhookDue(i), &redis.ZRangeBy{
				Min: "-inf", Max: strconv.FormatInt(now.UnixMilli(), 10), Count: int64(room + 64)})
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return 0, err
	}
	// Partitions take turns, so that none waits behind another's backlog.
	lists := make([][]string, len(cmds))
	for i, c := range cmds {
		lists[i] = c.Val()
	}
	started := 0
	for round := 0; room > 0; round++ {
		more := false
		for p, list := range lists {
			if round >= len(list) || room == 0 {
				continue
			}
			more = true
			tenantID, webhookID, ok := strings.Cut(list[round], "/")
			if !ok {
				continue
			}
			n := min(room, d.cfg.EndpointConcurrency, d.tenantRoom(tenantID))
			if n <= 0 {
				continue
			}
			dels, err := d.acquire(ctx, p, tenantID, webhookID, n, now)
			if err != nil {
				return started, err
			}
			for _, del := range dels {
				d.start(del)
			}
			started += len(dels)
			room -= len(dels)
		}
		if !more {
			break
		}
	}
	return started, nil
}

func (d *Dispatcher) tenantRoom(tenantID string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cfg.TenantConcurrency - d.byTenant[tenantID]
}

// acquire takes up to n due deliveries of one endpoint, with leases.
func (d *Dispatcher) acquire(ctx context.Context, p int, tenantID, webhookID string, n int, now time.Time) ([]delivery, error) {
	raws, err := acquireScript.Run(ctx, d.rdb,
		[]string{keys.WebhookDue(p), keys.WebhookQueue(p, tenantID, webhookID),
			keys.WebhookDeliveries(p, tenantID, webhookID), keys.WebhookInFlight(p, tenantID, webhookID)},
		member(tenantID, webhookID), now.UnixMilli(), d.lease.Milliseconds(), d.cfg.EndpointConcurrency, n).StringSlice()
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("take deliveries of webhook %s: %w", webhookID, err)
	}
	out := make([]delivery, 0, len(raws))
	for _, raw := range raws {
		var del delivery
		if err := json.Unmarshal([]byte(raw), &del); err != nil {
			d.log.Error("malformed webhook delivery", "webhook", webhookID, "err", err)
			continue
		}
		out = append(out, del)
	}
	return out, nil
}

// start sends one delivery on a goroutine of its own, counted against the worker's and the
// tenant's bounds until it ends.
func (d *Dispatcher) start(del delivery) {
	d.mu.Lock()
	d.inFlight++
	d.byTenant[del.TenantID]++
	d.mu.Unlock()
	d.senders.Add(1)
	go func() {
		defer func() {
			d.mu.Lock()
			d.inFlight--
			if d.byTenant[del.TenantID]--; d.byTenant[del.TenantID] <= 0 {
				delete(d.byTenant, del.TenantID)
			}
			d.mu.Unlock()
			d.senders.Done()
			d.nudge()
		}()
		d.send(d.sends, del)
	}()
}

// send makes one attempt of a delivery and records what came of it: done, a retry at the next
// time of the schedule, or dead after the last. An endpoint deleted or disabled meanwhile is
// sent nothing.
func (d *Dispatcher) send(ctx context.Context, del delivery) {
	log := d.log.With("tenant", del.TenantID, "webhook", del.WebhookID, "delivery", del.ID)
	rec, err := d.store.record(ctx, del.TenantID, del.WebhookID)
	if errors.Is(err, ErrNotFound) || err == nil && rec.Disabled {
		d.release(ctx, del, "done", time.Time{}, log)
		return
	}
	if err != nil {
		log.Warn("load webhook; the delivery is retried when its lease ends", "err", err)
		return
	}
	started := time.Now()
	secrets, err := d.store.secrets(del.TenantID, rec, started)
	if err != nil {
		log.Error("webhook secret unreadable; the delivery is retried when its lease ends", "err", err)
		return
	}
	status, problem := d.post(ctx, rec.URL, del, secrets, started)
	if ctx.Err() != nil {
		// Abandoned by a stopping worker: not an attempt the endpoint failed. Put back for
		// another worker; the endpoint may have received it, and gets it again.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		d.release(rctx, del, "retry", time.Now(), log)
		return
	}

	attempt := del.Attempts + 1
	row := Attempt{ID: del.ID, EventType: del.Type, Attempt: attempt, CreatedAt: started.UTC()}
	if status != 0 {
		row.ResponseStatus = &status
	}
	now := time.Now()
	var kind, outcome string
	var next time.Time
	switch {
	case problem == "":
		row.Status, kind, outcome = StatusSucceeded, "succeeded", "done"
	case attempt <= len(d.cfg.Schedule):
		next = now.Add(jitter(d.cfg.Schedule[attempt-1])).UTC()
		row.Status, row.Error, row.NextAttemptAt, kind, outcome = StatusFailed, &problem, &next, "failed", "retry"
	default:
		row.Status, row.Error, kind, outcome = StatusDead, &problem, "dead", "done"
	}
	disabled, err := recordOutcome(ctx, d.rdb, del, row, kind, now, d.cfg.DisableAfter)
	if err != nil {
		log.Warn("record webhook attempt", "err", err)
	}
	switch kind {
	case "succeeded":
		d.succeeded.Add(1)
	case "failed":
		d.failed.Add(1)
		log.Debug("webhook attempt failed", "attempt", attempt, "error", problem, "next_attempt_at", next)
	case "dead":
		d.dead.Add(1)
		log.Info("webhook delivery dead", "attempts", attempt, "error", problem)
	}
	del.Attempts = attempt
	d.release(ctx, del, outcome, next, log)
	if disabled {
		d.disabled.Add(1)
		log.Warn("webhook disabled", "dead_in_a_row", d.cfg.DisableAfter)
		if err := dropQueue(ctx, d.rdb, del.TenantID, del.WebhookID); err != nil {
			log.Warn("drop deliveries of a disabled webhook", "err", err)
		}
	}
}

// release ends a delivery's lease: done, or back in the queue for next.
func (d *Dispatcher) release(ctx context.Context, del delivery, outcome string, next time.Time, log *slog.Logger) {
	p := partition(del.TenantID)
	raw, _ := json.Marshal(del)
	err := releaseScript.Run(ctx, d.rdb,
		[]string{keys.WebhookDue(p), keys.WebhookQueue(p, del.TenantID, del.WebhookID),
			keys.WebhookDeliveries(p, del.TenantID, del.WebhookID), keys.WebhookInFlight(p, del.TenantID, del.WebhookID)},
		member(del.TenantID, del.WebhookID), del.ID, d.cfg.EndpointConcurrency, outcome, next.UnixMilli(), raw).Err()
	if err != nil {
		// The lease runs out and the delivery is attempted again: at least once.
		log.Warn("release webhook delivery", "err", err)
	}
}

// post makes one attempt: the Standard Webhooks request, signed with every secret. It returns
// the response status (0 when there was none) and, unless the answer was a 2xx, what went
// wrong, in words fit for the tenant.
func (d *Dispatcher) post(ctx context.Context, target string, del delivery, secrets [][]byte, now time.Time) (int, string) {
	ctx, cancel := context.WithTimeout(ctx, d.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, strings.NewReader(del.Body))
	if err != nil {
		return 0, "the webhook's URL cannot be requested"
	}
	ts := now.Unix()
	sigs := make([]string, len(secrets))
	for i, key := range secrets {
		sigs[i] = Sign(key, del.EventID, ts, []byte(del.Body))
	}
	h := req.Header
	h.Set("Content-Type", "application/json")
	h.Set("User-Agent", "Streamgate-Webhooks/1")
	h.Set("webhook-id", del.EventID)
	h.Set("webhook-timestamp", strconv.FormatInt(ts, 10))
	h.Set("webhook-signature", strings.Join(sigs, " "))
	resp, err := d.client.Do(req)
	if err != nil {
		return 0, describe(err, d.cfg.Timeout)
	}
	// Read a little of the answer so the connection can be reused; the rest is not ours.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return resp.StatusCode, ""
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		return resp.StatusCode, fmt.Sprintf("the endpoint answered %d; redirects are not followed", resp.StatusCode)
	default:
		return resp.StatusCode, fmt.Sprintf("the endpoint answered %d", resp.StatusCode)
	}
}

// Sign returns the Standard Webhooks signature of one attempt:
// "v1," + base64(HMAC-SHA256(key, "<id>.<timestamp>.<body>")).
func Sign(key []byte, id string, timestamp int64, body []byte) string {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + strconv.FormatInt(timestamp, 10) + "."))
	mac.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// describe turns a failed request into words for the delivery history, without internals.
func describe(err error, timeout time.Duration) string {
	var dnsErr *net.DNSError
	var uerr *url.Error
	switch {
	case errors.Is(err, urlguard.ErrForbidden):
		return "refused: the URL's host resolves to an address that is not public"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &uerr) && uerr.Timeout():
		return fmt.Sprintf("no answer within %s", timeout)
	case errors.As(err, &dnsErr):
		return "the URL's host cannot be resolved"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "the connection was closed before an answer"
	}
	if uerr != nil {
		return "the request failed: " + uerr.Err.Error()
	}
	return "the request failed"
}

// jitter spreads a delay by ±10 %, so that deliveries that failed together do not all come
// back at once.
func jitter(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.9 + 0.2*rand.Float64()))
}
