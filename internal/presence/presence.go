// Package presence keeps who is on the tenants' presence channels, cluster-wide, in Redis:
// members keyed by sub with their session count and info, and join and leave events to the
// channels' subscribers when a user's first session arrives or last one goes.
//
// Each node holds its share of a tenant's presence under a holder: a name with a lease that the
// node renews. Every session's arrival and departure is one script call that counts it under the
// node's holder and in the member's total, atomically. A node that dies stops renewing; once
// the lease has ended, any live node takes back what the holder held (the reaper), so a dead
// node's members leave within the lease plus one renewal period. No member carries a TTL of its
// own and nothing scans the members: the cost of a death is proportional to what the dead node
// held.
//
// A node that cannot be sure Redis counted one of its changes (an error, or a lease that ended
// while it was alive) hands everything it holds in that tenant to a fresh holder at its next
// renewal and lets the reaper take back the old one: the totals are right again within a lease.
package presence

import (
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamgate/streamgate/internal/keys"
)

// Bounds from the public contract.
const (
	// MaxEventMembers is the most members a channel may have and still send join and leave
	// events: a join storm never fans out to everyone.
	MaxEventMembers = 1000
	// MaxRead is the most members a read returns.
	MaxRead = 1000
	// DefaultLease is how long a holder's lease runs without renewal.
	DefaultLease = 15 * time.Second
)

var (
	//go:embed lib.lua
	libLua string
	//go:embed join.lua
	joinLua string
	//go:embed leave.lua
	leaveLua string
	//go:embed reap.lua
	reapLua string
	//go:embed renew.lua
	renewLua string
	//go:embed read.lua
	readLua string
)

type scripts struct{ join, leave, reap, renew, read *redis.Script }

func newScripts(sharded bool) scripts {
	pub := "PUBLISH"
	if sharded {
		pub = "SPUBLISH"
	}
	mk := func(body string) *redis.Script { return redis.NewScript("local PUB = '" + pub + "'\n" + libLua + body) }
	return scripts{join: mk(joinLua), leave: mk(leaveLua), reap: mk(reapLua), renew: mk(renewLua), read: mk(readLua)}
}

// Change is one user's arrival on or departure from a presence channel, cluster-wide.
type Change struct {
	TenantID string
	Channel  string
	Sub      string
	Join     bool
	Info     json.RawMessage
}

// Config is the tracker's behaviour.
type Config struct {
	NodeID string
	// Lease is how long a holder's entries outlive the node's last renewal; renewals and reaps
	// run every third of it. Default DefaultLease.
	Lease time.Duration
	// OnChange, when set, learns of every join and leave this node caused or reaped (other
	// nodes report their own). It must return quickly.
	OnChange func(Change)
	// Sharded publishes events with SPUBLISH (Redis Cluster).
	Sharded bool
}

// Tracker counts this node's sessions on presence channels in Redis, renews its leases and
// reaps those of dead nodes. Build it with New; run Run.
type Tracker struct {
	rdb     redis.UniversalClient
	cfg     Config
	log     *slog.Logger
	scripts scripts
	// stripes order the Redis calls of one member (tenant, channel, sub): its arrival and
	// departure must reach Redis in the order they happened here.
	stripes [256]sync.Mutex

	mu      sync.Mutex
	tenants map[string]*holding
}

// holding is this node's share of one tenant's presence.
type holding struct {
	// gate is held shared by every call counting under id, and exclusively while the members
	// move to a new holder, so that none of those calls is lost in the move.
	gate sync.RWMutex

	// Guarded by Tracker.mu:
	id      string
	created bool // the lease exists in Redis
	lost    bool // Redis may not have counted a change: move to a new holder
	members map[member]*local
}

type member struct{ channel, sub string }

type local struct {
	sessions int
	info     json.RawMessage
}

// New returns the tracker of node cfg.NodeID.
func New(rdb redis.UniversalClient, cfg Config, log *slog.Logger) *Tracker {
	if cfg.Lease <= 0 {
		cfg.Lease = DefaultLease
	}
	return &Tracker{rdb: rdb, cfg: cfg, log: log, scripts: newScripts(cfg.Sharded), tenants: make(map[string]*holding)}
}

func (t *Tracker) newHolder() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return t.cfg.NodeID + "~" + hex.EncodeToString(b[:])
}

// enter returns the tenant's holding with its gate held shared; leave it with RUnlock.
func (t *Tracker) enter(tenantID string) *holding {
	for {
		t.mu.Lock()
		h := t.tenants[tenantID]
		if h == nil {
			h = &holding{id: t.newHolder(), members: make(map[member]*local)}
			t.tenants[tenantID] = h
		}
		t.mu.Unlock()
		h.gate.RLock()
		t.mu.Lock()
		current := t.tenants[tenantID] == h
		t.mu.Unlock()
		if current {
			return h
		}
		h.gate.RUnlock() // forgotten meanwhile
	}
}

// lockStripes locks the stripes of sub's members on channels, in order, and returns their
// unlock.
func (t *Tracker) lockStripes(tenantID, sub string, channels []string) func() {
	idx := make([]int, 0, len(channels))
	for _, ch := range channels {
		f := fnv.New32a()
		f.Write([]byte(tenantID))
		f.Write([]byte{0})
		f.Write([]byte(ch))
		f.Write([]byte{0})
		f.Write([]byte(sub))
		idx = append(idx, int(f.Sum32()%uint32(len(t.stripes))))
	}
	slices.Sort(idx)
	idx = slices.Compact(idx)
	for _, i := range idx {
		t.stripes[i].Lock()
	}
	return func() {
		for _, i := range idx {
			t.stripes[i].Unlock()
		}
	}
}

// Join counts one session of sub on each of channels, with info (a JSON object, or nil) as the
// member's latest. A user's first session cluster-wide joins: the channel's subscribers get a
// presence event. Redis trouble is not returned: it is logged, and the node's share of the
// tenant is counted anew at its next renewal.
func (t *Tracker) Join(ctx context.Context, tenantID, sub string, info json.RawMessage, channels []string) {
	if len(channels) == 0 {
		return
	}
	if len(info) == 0 {
		info = json.RawMessage("null")
	}
	unlock := t.lockStripes(tenantID, sub, channels)
	defer unlock()
	h := t.enter(tenantID)
	defer h.gate.RUnlock()
	t.mu.Lock()
	for _, ch := range channels {
		m := member{ch, sub}
		l := h.members[m]
		if l == nil {
			l = &local{}
			h.members[m] = l
		}
		l.sessions++
		l.info = info
	}
	holder, create := h.id, !h.created
	t.mu.Unlock()

	adds := make([]add, len(channels))
	for i, ch := range channels {
		adds[i] = add{channel: ch, sub: sub, info: info, sessions: 1}
	}
	if t.join(ctx, tenantID, holder, create, adds) {
		t.mu.Lock()
		if h.id == holder {
			h.created = true
		}
		t.mu.Unlock()
	} else {
		t.markLost(h, holder)
	}
}

type add struct {
	channel, sub string
	info         json.RawMessage
	sessions     int
}

// join counts adds under holder in one round trip and reports whether Redis counted them all.
func (t *Tracker) join(ctx context.Context, tenantID, holder string, create bool, adds []add) bool {
	if create {
		// Indexed before the lease exists, so that a reaper can always find it.
		t.index(ctx, tenantID, holder)
	}
	createArg := "0"
	if create {
		createArg = "1"
	}
	leaseMs := strconv.FormatInt(t.cfg.Lease.Milliseconds(), 10)
	cmds, err := t.evalAll(ctx, t.scripts.join, len(adds), func(i int) ([]string, []any) {
		a := adds[i]
		return []string{keys.PresenceLeases(tenantID), keys.PresenceHolder(tenantID, holder), keys.PresenceChannels(tenantID),
				keys.PresenceCount(tenantID), keys.PresenceMembers(tenantID, a.channel), keys.PresenceOrder(tenantID, a.channel)},
			[]any{holder, leaseMs, createArg, a.channel, a.sub, string(a.info), a.sessions, keys.Channel(tenantID, a.channel), MaxEventMembers}
	})
	ok := err == nil
	for i, c := range cmds {
		vals, err := c.Int64Slice()
		if err != nil || len(vals) < 2 || vals[0] != 1 {
			ok = false
			continue
		}
		if vals[1] == int64(adds[i].sessions) {
			t.changed(Change{TenantID: tenantID, Channel: adds[i].channel, Sub: adds[i].sub, Join: true, Info: adds[i].info})
		}
	}
	if err != nil {
		t.log.Warn("count presence; recounting at the next renewal", "tenant", tenantID, "err", err)
	}
	if create && ok {
		t.index(ctx, tenantID, holder)
	}
	return ok
}

// Leave counts one session of sub fewer on each of channels; a user's last session cluster-wide
// leaves. Like Join, it returns no error.
func (t *Tracker) Leave(ctx context.Context, tenantID, sub string, channels []string) {
	if len(channels) == 0 {
		return
	}
	unlock := t.lockStripes(tenantID, sub, channels)
	defer unlock()
	h := t.enter(tenantID)
	defer h.gate.RUnlock()
	t.mu.Lock()
	for _, ch := range channels {
		m := member{ch, sub}
		if l := h.members[m]; l != nil {
			if l.sessions--; l.sessions <= 0 {
				delete(h.members, m)
			}
		}
	}
	holder := h.id
	t.mu.Unlock()

	cmds, err := t.evalAll(ctx, t.scripts.leave, len(channels), func(i int) ([]string, []any) {
		ch := channels[i]
		return []string{keys.PresenceLeases(tenantID), keys.PresenceHolder(tenantID, holder), keys.PresenceChannels(tenantID),
				keys.PresenceCount(tenantID), keys.PresenceMembers(tenantID, ch), keys.PresenceOrder(tenantID, ch)},
			[]any{holder, ch, sub, keys.Channel(tenantID, ch), MaxEventMembers}
	})
	ok := err == nil
	for i, c := range cmds {
		vals, err := c.Slice()
		if err != nil || len(vals) < 2 || vals[0] != int64(1) {
			ok = false
			continue
		}
		if len(vals) == 3 {
			info, _ := vals[2].(string)
			t.changed(Change{TenantID: tenantID, Channel: channels[i], Sub: sub, Info: json.RawMessage(info)})
		}
	}
	if err != nil {
		t.log.Warn("count presence; recounting at the next renewal", "tenant", tenantID, "err", err)
	}
	if !ok {
		t.markLost(h, holder)
	}
}

func (t *Tracker) markLost(h *holding, holder string) {
	t.mu.Lock()
	if h.id == holder {
		h.lost = true
	}
	t.mu.Unlock()
}

func (t *Tracker) changed(c Change) {
	if t.cfg.OnChange != nil {
		t.cfg.OnChange(c)
	}
}

// index records holder's lease where reapers look, expiring a lease from now.
func (t *Tracker) index(ctx context.Context, tenantID, holder string) {
	exp := time.Now().Add(t.cfg.Lease).UnixMilli()
	if err := t.rdb.ZAdd(ctx, keys.PresenceLeaseIndex(), redis.Z{Score: float64(exp), Member: tenantID + "\n" + holder}).Err(); err != nil {
		t.log.Warn("index presence lease", "tenant", tenantID, "err", err)
	}
}

// evalAll runs script n times in one round trip, call i with the keys and arguments args(i).
// Calls that found the script missing (Redis restarted) run again once it is loaded: a script
// call either ran whole or not at all, so none runs twice. It returns the first error that is
// not a call's own reply.
func (t *Tracker) evalAll(ctx context.Context, script *redis.Script, n int, args func(i int) ([]string, []any)) ([]*redis.Cmd, error) {
	cmds := make([]*redis.Cmd, n)
	run := func(which []int) error {
		_, err := t.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, i := range which {
				ks, as := args(i)
				cmds[i] = script.EvalSha(ctx, p, ks, as...)
			}
			return nil
		})
		return err
	}
	all := make([]int, n)
	for i := range all {
		all[i] = i
	}
	err := run(all)
	var again []int
	for i, c := range cmds {
		if isNoScript(c.Err()) {
			again = append(again, i)
		}
	}
	if len(again) > 0 {
		if err := script.Load(ctx, t.rdb).Err(); err != nil {
			return cmds, fmt.Errorf("load a presence script: %w", err)
		}
		err = run(again)
	}
	if err != nil && !isReply(err) {
		return cmds, err
	}
	return cmds, nil
}

func isNoScript(err error) bool {
	return err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT")
}

// isReply reports whether err is Redis's answer to one call (a script error) rather than a
// failure to reach it.
func isReply(err error) bool {
	var rerr redis.Error
	return errors.As(err, &rerr)
}

// Run renews this node's leases and reaps those of dead nodes every third of the lease, until
// ctx ends.
func (t *Tracker) Run(ctx context.Context) error {
	tick := time.NewTicker(t.cfg.Lease / 3)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		if err := t.Renew(ctx); err != nil && ctx.Err() == nil {
			t.log.Warn("renew presence leases", "err", err)
		}
		if _, err := t.Reap(ctx); err != nil && ctx.Err() == nil {
			t.log.Warn("reap presence of dead nodes", "err", err)
		}
	}
}

// Renew extends the leases of this node's holders. A holder whose lease ended, or that may have
// missed a change, hands its members to a new holder; a tenant with no member here any more is
// forgotten, and its lease runs out.
func (t *Tracker) Renew(ctx context.Context) error {
	type renewal struct {
		tenantID string
		h        *holding
		holder   string
	}
	var renew []renewal
	t.mu.Lock()
	for id, h := range t.tenants {
		if h.created && !h.lost && len(h.members) > 0 {
			renew = append(renew, renewal{id, h, h.id})
		}
	}
	t.mu.Unlock()

	var errs []error
	if len(renew) > 0 {
		leaseMs := t.cfg.Lease.Milliseconds()
		cmds, err := t.evalAll(ctx, t.scripts.renew, len(renew), func(i int) ([]string, []any) {
			return []string{keys.PresenceLeases(renew[i].tenantID)}, []any{renew[i].holder, leaseMs}
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("renew %d presence leases: %w", len(renew), err))
		}
		exp := float64(time.Now().Add(t.cfg.Lease).UnixMilli())
		_, err = t.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, r := range renew {
				n, err := cmds[i].Int64()
				switch {
				case err == nil && n == 1:
					p.ZAdd(ctx, keys.PresenceLeaseIndex(), redis.Z{Score: exp, Member: r.tenantID + "\n" + r.holder})
				case err == nil || isReply(err):
					t.markLost(r.h, r.holder) // the lease ended: the reaper takes back what it held
				}
			}
			return nil
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("index presence leases: %w", err))
		}
	}

	var (
		moves []*holding
		ids   []string
	)
	t.mu.Lock()
	for id, h := range t.tenants {
		switch {
		case h.lost:
			moves, ids = append(moves, h), append(ids, id)
		case len(h.members) == 0 && h.gate.TryLock():
			delete(t.tenants, id)
			h.gate.Unlock()
		}
	}
	t.mu.Unlock()
	for i, h := range moves {
		if err := t.move(ctx, ids[i], h); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// move hands what this node holds in a tenant to a new holder. Nothing else counts under the
// holding meanwhile.
func (t *Tracker) move(ctx context.Context, tenantID string, h *holding) error {
	h.gate.Lock()
	defer h.gate.Unlock()
	t.mu.Lock()
	old := h.id
	h.id, h.created, h.lost = t.newHolder(), false, false
	holder := h.id
	adds := make([]add, 0, len(h.members))
	for m, l := range h.members {
		adds = append(adds, add{channel: m.channel, sub: m.sub, info: l.info, sessions: l.sessions})
	}
	t.mu.Unlock()
	if len(adds) == 0 {
		return nil
	}
	t.log.Info("presence handed to a new holder", "tenant", tenantID, "from", old, "to", holder, "members", len(adds))
	const batch = 500
	for i := 0; i < len(adds); i += batch {
		create := i == 0
		if !t.join(ctx, tenantID, holder, create, adds[i:min(i+batch, len(adds))]) {
			t.markLost(h, holder)
			return fmt.Errorf("count presence of tenant %s anew", tenantID)
		}
		if create {
			t.mu.Lock()
			if h.id == holder {
				h.created = true
			}
			t.mu.Unlock()
		}
	}
	return nil
}
