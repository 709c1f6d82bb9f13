package webhook

import (
	"context"
	_ "embed"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	streamgate "github.com/streamgate/streamgate"
	"github.com/streamgate/streamgate/internal/keys"
)

var (
	//go:embed occupy.lua
	occupyLua string
	//go:embed vacate.lua
	vacateLua string
)

// Timing of occupancy: a node instance says it is alive every HolderRenew; one silent for
// HolderTTL is taken for dead, and the channels it held are vacated by a live node, which
// looks every HolderRenew: a dead node's channels are vacated within HolderTTL + HolderRenew
// (40 s; the contract allows 60 s).
const (
	HolderTTL   = 30 * time.Second
	HolderRenew = 10 * time.Second
)

// applyBatch bounds the changes applied in one round of pipelines.
const applyBatch = 512

// Occupancy turns this node's first and last subscriber of a tenant channel (which the hub
// reports through Occupied and Vacated) into channel.occupied and channel.vacated, cluster-wide:
// in Redis each channel has the set of node instances holding it, and an event goes out only
// when that set turns non-empty or empty. Reports are never waited for: they are applied in
// the background, in order per channel, and a channel occupied and vacated again before it was
// applied sends nothing.
//
// A node that dies leaves its entries behind; live nodes remove them once it has stopped
// renewing for HolderTTL, sending channel.vacated where it was the last holder.
type Occupancy struct {
	rdb      redis.UniversalClient
	events   *Events
	instance string
	log      *slog.Logger
	now      func() time.Time

	mu   sync.Mutex
	want map[occKey]bool // reported and not yet applied
	kick chan struct{}

	apply     sync.Mutex      // one apply at a time; Close waits for it
	held      map[occKey]bool // what Redis holds for this instance (apply's, under apply)
	closed    bool
	lastRenew time.Time
}

type occKey struct{ tenantID, channel string }

func (k occKey) member() string { return k.tenantID + "\n" + k.channel }

// NewOccupancy returns the occupancy of one node (nodeID), emitting through events. Each
// process gets an instance of its own, so that a restart under the same node id is not taken
// for the old process.
func NewOccupancy(rdb redis.UniversalClient, nodeID string, events *Events, log *slog.Logger) *Occupancy {
	return &Occupancy{
		rdb: rdb, events: events, instance: nodeID + "." + streamgate.NewID("")[:8], log: log, now: time.Now,
		want: make(map[occKey]bool), kick: make(chan struct{}, 1), held: make(map[occKey]bool),
	}
}

// Occupied reports that this node has its first subscriber of the channel. It never blocks.
func (o *Occupancy) Occupied(tenantID, channel string) { o.set(occKey{tenantID, channel}, true) }

// Vacated reports that this node's last subscriber of the channel left. It never blocks.
func (o *Occupancy) Vacated(tenantID, channel string) { o.set(occKey{tenantID, channel}, false) }

func (o *Occupancy) set(k occKey, on bool) {
	o.mu.Lock()
	o.want[k] = on
	o.mu.Unlock()
	o.poke()
}

// poke wakes Run to apply what was reported.
func (o *Occupancy) poke() {
	select {
	case o.kick <- struct{}{}:
	default:
	}
}

// Run applies reports, says the instance is alive and removes dead instances' entries, until
// ctx ends. Call Close after the node's streams are closed.
func (o *Occupancy) Run(ctx context.Context) error {
	renew := time.NewTicker(HolderRenew)
	defer renew.Stop()
	o.renew(ctx)
	o.sweep(ctx)
	backoff := 100 * time.Millisecond
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-renew.C:
			o.renew(ctx)
			o.sweep(ctx)
		case <-o.kick:
		}
		for {
			more, err := o.applyOnce(ctx)
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				o.log.Warn("apply channel occupancy", "err", err, "retry_in", backoff.String())
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(backoff):
				}
				backoff = min(backoff*2, 5*time.Second)
				continue
			}
			backoff = 100 * time.Millisecond
			if !more {
				break
			}
		}
	}
}

// Close stops applying reports and removes every entry of this instance, sending
// channel.vacated where it was the last holder: the node is going away. Reports after Close
// are ignored.
func (o *Occupancy) Close(ctx context.Context) {
	o.apply.Lock()
	o.closed = true
	o.apply.Unlock()
	o.vacateInstance(ctx, o.instance)
}

// applyOnce applies a batch of reports and says whether more are waiting.
func (o *Occupancy) applyOnce(ctx context.Context) (bool, error) {
	o.apply.Lock()
	defer o.apply.Unlock()
	if o.closed {
		return false, nil
	}
	o.mu.Lock()
	batch := make(map[occKey]bool, min(len(o.want), applyBatch))
	for k, on := range o.want {
		if len(batch) == applyBatch {
			break
		}
		batch[k] = on
		delete(o.want, k)
	}
	more := len(o.want) > 0
	o.mu.Unlock()

	var ons, offs []occKey
	for k, on := range batch {
		if o.held[k] == on {
			continue
		}
		if on {
			ons = append(ons, k)
		} else {
			offs = append(offs, k)
		}
	}
	if len(ons)+len(offs) == 0 {
		return more, nil
	}
	// The instance's index is written before a channel's entry and cleared after it, so that a
	// death in between leaves nothing the sweep cannot find.
	heldKey := keys.OccupancyHeld(o.instance)
	if len(ons) > 0 {
		members := make([]any, len(ons))
		for i, k := range ons {
			members[i] = k.member()
		}
		if err := o.rdb.SAdd(ctx, heldKey, members...).Err(); err != nil {
			o.retry(batch)
			return more, err
		}
	}
	all := append(append([]occKey{}, ons...), offs...)
	cmds := make([]*redis.Cmd, len(all))
	_, _ = o.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range all {
			script := vacateLua
			if i < len(ons) {
				script = occupyLua
			}
			cmds[i] = p.Eval(ctx, script, []string{keys.Occupancy(k.tenantID, k.channel)}, o.instance)
		}
		return nil
	})
	var firstErr error
	var left []any
	failed := make(map[occKey]bool)
	for i, k := range all {
		on := i < len(ons)
		changed, err := cmds[i].Int()
		if err != nil {
			failed[k] = on
			firstErr = cmp(firstErr, err)
			continue
		}
		if on {
			o.held[k] = true
		} else {
			delete(o.held, k)
			left = append(left, k.member())
		}
		if changed == 1 {
			typ := EventChannelVacated
			if on {
				typ = EventChannelOccupied
			}
			o.emit(ctx, k.tenantID, typ, k.channel)
		}
	}
	if len(left) > 0 {
		if err := o.rdb.SRem(ctx, heldKey, left...).Err(); err != nil {
			o.log.Debug("clear occupancy index", "err", err) // a leftover member vacates nothing
		}
	}
	if len(failed) > 0 {
		o.retry(failed)
	}
	return more || len(failed) > 0, firstErr
}

// retry puts reports back, unless newer ones came meanwhile.
func (o *Occupancy) retry(batch map[occKey]bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for k, on := range batch {
		if _, newer := o.want[k]; !newer {
			o.want[k] = on
		}
	}
}

func (o *Occupancy) emit(ctx context.Context, tenantID, eventType, channel string) {
	if err := o.events.channelEvent(ctx, tenantID, eventType, channel); err != nil {
		o.log.Warn("emit channel event", "tenant", tenantID, "type", eventType, "err", err)
	}
}

// renew says the instance is alive. After a silence long enough for others to have taken it
// for dead (and vacated its channels), it applies everything it holds again.
func (o *Occupancy) renew(ctx context.Context) {
	now := o.now()
	err := o.rdb.ZAdd(ctx, keys.OccupancyHolders(), redis.Z{Score: float64(now.UnixMilli()), Member: o.instance}).Err()
	if err != nil {
		if ctx.Err() == nil {
			o.log.Warn("renew channel occupancy", "err", err)
		}
		return
	}
	o.apply.Lock()
	stale := !o.lastRenew.IsZero() && now.Sub(o.lastRenew) >= HolderTTL
	o.lastRenew = now
	var again []occKey
	if stale {
		for k := range o.held {
			again = append(again, k)
		}
		clear(o.held)
	}
	o.apply.Unlock()
	if len(again) > 0 {
		o.log.Warn("channel occupancy was not renewed in time; applying it again", "channels", len(again))
		o.mu.Lock()
		for _, k := range again {
			if _, newer := o.want[k]; !newer {
				o.want[k] = true
			}
		}
		o.mu.Unlock()
		o.poke()
	}
}

// sweep vacates the channels of instances that stopped renewing HolderTTL ago.
func (o *Occupancy) sweep(ctx context.Context) {
	cutoff := o.now().Add(-HolderTTL).UnixMilli()
	dead, err := o.rdb.ZRangeByScore(ctx, keys.OccupancyHolders(), &redis.ZRangeBy{
		Min: "-inf", Max: strconv.FormatInt(cutoff, 10), Count: 100}).Result()
	if err != nil {
		if ctx.Err() == nil {
			o.log.Warn("look for dead channel holders", "err", err)
		}
		return
	}
	for _, inst := range dead {
		if inst != o.instance {
			o.vacateInstance(ctx, inst)
		}
	}
}

// vacateInstance removes every entry of an instance, emitting channel.vacated where it was the
// last holder, then the instance itself.
func (o *Occupancy) vacateInstance(ctx context.Context, inst string) {
	heldKey := keys.OccupancyHeld(inst)
	n := 0
	for ctx.Err() == nil {
		members, err := o.rdb.SRandMemberN(ctx, heldKey, 200).Result()
		if err != nil {
			o.log.Warn("vacate channels of a node", "instance", inst, "err", err)
			return
		}
		if len(members) == 0 {
			break
		}
		cmds := make([]*redis.Cmd, len(members))
		_, _ = o.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, m := range members {
				tenantID, channel, _ := strings.Cut(m, "\n")
				cmds[i] = p.Eval(ctx, vacateLua, []string{keys.Occupancy(tenantID, channel)}, inst)
			}
			return nil
		})
		done := make([]any, 0, len(members))
		for i, m := range members {
			changed, err := cmds[i].Int()
			if err != nil {
				o.log.Warn("vacate channels of a node", "instance", inst, "err", err)
				return
			}
			done = append(done, m)
			if changed == 1 {
				tenantID, channel, _ := strings.Cut(m, "\n")
				o.emit(ctx, tenantID, EventChannelVacated, channel)
			}
		}
		if err := o.rdb.SRem(ctx, heldKey, done...).Err(); err != nil {
			o.log.Warn("vacate channels of a node", "instance", inst, "err", err)
			return
		}
		n += len(done)
	}
	if err := o.rdb.ZRem(ctx, keys.OccupancyHolders(), inst).Err(); err != nil {
		o.log.Warn("forget a channel holder", "instance", inst, "err", err)
		return
	}
	if n > 0 && inst != o.instance {
		o.log.Info("vacated the channels of a node that stopped", "instance", inst, "channels", n)
	}
}
