package tenant

import (
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
)

// cache is a small map with a fixed time to live per entry. It is bounded: when full it starts
// afresh, which costs a burst of Redis reads and never unbounded memory.
type cache[V any] struct {
	mu      sync.Mutex
	ttl     time.Duration
	entries map[string]cacheEntry[V]
	loads   singleflight.Group
}

type cacheEntry[V any] struct {
	v       V
	expires time.Time
}

const cacheMaxEntries = 100_000

func newCache[V any](ttl time.Duration) *cache[V] {
	return &cache[V]{ttl: ttl, entries: make(map[string]cacheEntry[V])}
}

func (c *cache[V]) get(k string) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[k]
	if !ok || time.Now().After(e.expires) {
		var zero V
		return zero, false
	}
	return e.v, true
}

// load returns k's entry, or fetches it once for all who ask at the same moment: when an entry
// expires during a burst (a few thousand connects a second for one tenant), one Redis read
// refreshes it instead of one per request in flight.
func (c *cache[V]) load(k string, fetch func() (V, error)) (V, error) {
	if v, ok := c.get(k); ok {
		return v, nil
	}
	v, err, _ := c.loads.Do(k, func() (any, error) {
		if v, ok := c.get(k); ok {
			return v, nil // fetched by a load that ended since this one looked
		}
		v, err := fetch()
		if err == nil {
			c.put(k, v)
		}
		return v, err
	})
	return v.(V), err
}

func (c *cache[V]) put(k string, v V) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= cacheMaxEntries {
		clear(c.entries)
	}
	c.entries[k] = cacheEntry[V]{v: v, expires: time.Now().Add(c.ttl)}
}

func (c *cache[V]) drop(k string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.entries, k)
}

// dropWhere removes every entry whose value matches.
func (c *cache[V]) dropWhere(match func(V) bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, e := range c.entries {
		if match(e.v) {
			delete(c.entries, k)
		}
	}
}
