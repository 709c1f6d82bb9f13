// Package ratelimit counts requests against rates in Redis, so that every node shares one count
// per key: fixed windows kept by github.com/ulule/limiter's Redis store, or counted inside a
// script of ours with Lua, the same way, where the count must share the script's round trip.
package ratelimit

import (
	"context"
	_ "embed"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/ulule/limiter/v3"
	"github.com/ulule/limiter/v3/drivers/store/memory"
	sredis "github.com/ulule/limiter/v3/drivers/store/redis"

	"github.com/streamgate/streamgate/internal/keys"
)

// Rate is a number of requests (or events) per period.
type Rate struct {
	Limit  int64
	Period time.Duration
}

// PerSecond is n per second.
func PerSecond(n int) Rate { return Rate{Limit: int64(n), Period: time.Second} }

// ParseRate reads "<limit>-<period>" with period S, M, H or D ("10-M" is ten a minute), the
// format of github.com/ulule/limiter. The limit must be at least 1.
func ParseRate(s string) (Rate, error) {
	r, err := limiter.NewRateFromFormatted(s)
	if err != nil || r.Limit < 1 {
		return Rate{}, fmt.Errorf("rate %q is not <limit>-<S|M|H|D> with a limit of at least 1 (10-M is ten a minute)", s)
	}
	return Rate{Limit: r.Limit, Period: r.Period}, nil
}

// String says r for people: "10 per minute".
func (r Rate) String() string {
	for _, u := range []struct {
		d time.Duration
		s string
	}{{24 * time.Hour, "day"}, {time.Hour, "hour"}, {time.Minute, "minute"}, {time.Second, "second"}} {
		if r.Period == u.d {
			return fmt.Sprintf("%d per %s", r.Limit, u.s)
		}
	}
	return fmt.Sprintf("%d per %s", r.Limit, r.Period)
}

// Result is a key's standing after a Take.
type Result struct {
	Limit     int64
	Remaining int64
	// Reset is when the current window ends and the count starts again.
	Reset time.Time
	// Reached means this Take went over the rate: refuse it.
	Reached bool
}

// RetryAfter is how long to wait before the window has room again, in whole seconds rounded
// up, at least one. Reset is known to the second, so this errs a second on the late side.
func (r Result) RetryAfter(now time.Time) int64 {
	d := r.Reset.Add(time.Second).Sub(now)
	return max(int64((d+time.Second-1)/time.Second), 1)
}

// Lua holds the Lua functions rateTake(key, n, periodMs) → count, pttl and ratePeek(key) →
// count, pttl, for a script that counts a rate in its own round trip: prepend it to the
// script's body, pass the key (in full, as Redis has it: a keys.*Full key) among the script's
// keys, and turn the count and pttl it returns into a Result with ResultOf. It counts as Take
// does, on the same keys: a script and a Limiter can share one count.
//
//go:embed window.lua
var Lua string

// Limiter counts takes per key in Redis.
type Limiter struct {
	rdb   redis.UniversalClient
	store atomic.Pointer[storeRef]
}

type storeRef struct{ limiter.Store }

// New returns a limiter on rdb. It does not talk to Redis until the first Take.
func New(rdb redis.UniversalClient) *Limiter { return &Limiter{rdb: rdb} }

// NewLocal returns a limiter that counts in this process's memory (ulule's memory store): each
// node counts on its own, with no round trip, for limits where a count per node is enough.
func NewLocal() *Limiter {
	l := &Limiter{}
	l.store.Store(&storeRef{memory.NewStoreWithOptions(limiter.StoreOptions{Prefix: keys.RateLimitStorePrefix, CleanUpInterval: time.Minute})})
	return l
}

// Take counts n against key at rate and reports whether that went over. Every take counts,
// refused ones too: a client that keeps hammering keeps its window full. key is one of the
// keys.RateLimit* keys. An error means Redis could not count: the caller must not let the
// request through as if it had been counted.
func (l *Limiter) Take(ctx context.Context, key string, n int64, rate Rate) (Result, error) {
	store, err := l.storeFor()
	if err != nil {
		return Result{}, err
	}
	c, err := store.Increment(ctx, key, n, limiter.Rate{Limit: rate.Limit, Period: rate.Period})
	if err != nil {
		return Result{}, fmt.Errorf("count %s: %w", key, err)
	}
	return Result{Limit: c.Limit, Remaining: c.Remaining, Reset: time.Unix(c.Reset, 0), Reached: c.Reached}, nil
}

// storeFor builds the ulule store on first use: it loads its scripts into Redis when built,
// which must not keep a node from starting while Redis is away.
// Requests racing to build it each try; one wins, and none waits behind another's attempt.
func (l *Limiter) storeFor() (limiter.Store, error) {
	if ref := l.store.Load(); ref != nil {
		return ref.Store, nil
	}
	s, err := sredis.NewStoreWithOptions(l.rdb, limiter.StoreOptions{Prefix: keys.RateLimitStorePrefix})
	if err != nil {
		return nil, fmt.Errorf("rate limiter store: %w", err)
	}
	l.store.CompareAndSwap(nil, &storeRef{s})
	return l.store.Load().Store, nil
}

// ResultOf is the standing of a key counted to count, with pttl milliseconds left in its window
// (as Redis's PTTL says; 0 or less: a fresh window), by a script that counts a rate along with
// other work in one round trip the way the Redis store of github.com/ulule/limiter does
// (INCRBY, and PEXPIRE with the period on the window's first take).
func ResultOf(rate Rate, count, pttl int64, now time.Time) Result {
	reset := now.Add(rate.Period)
	if pttl > 0 {
		reset = now.Add(time.Duration(pttl) * time.Millisecond)
	}
	return Result{
		Limit:     rate.Limit,
		Remaining: max(rate.Limit-count, 0),
		Reset:     time.Unix(reset.Unix(), 0),
		Reached:   count > rate.Limit,
	}
}
