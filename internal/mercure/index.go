package mercure

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strings"
	"sync"

	streamgate "github.com/streamgate/streamgate"
)

// Subscriber is how one subscriber matches updates: its topic selectors (the topic query
// parameters) and, for private updates, its token's mercure.subscribe. Build it with
// NewSubscriber; it is read-only afterwards.
type Subscriber struct {
	topics  []matcher
	private []matcher
	class   string   // names the set of private selectors, see classOf
	keys    []string // one per topic selector: what the session registry indexes it under
}

// NewSubscriber compiles a subscriber's selectors; duplicates count once.
func NewSubscriber(topics, private []string) *Subscriber {
	s := &Subscriber{class: classOf(private)}
	seen := make(map[string]bool, len(topics))
	for _, t := range topics {
		if !seen[t] {
			seen[t] = true
			s.topics = append(s.topics, newMatcher(t))
			s.keys = append(s.keys, key(s.class, t))
		}
	}
	for _, p := range uniqueSorted(private) {
		s.private = append(s.private, newMatcher(p))
	}
	return s
}

// Keys are the names under which the node's session registry files the subscriber, one per
// distinct topic selector. None is a valid channel name, so no native publish reaches them.
func (s *Subscriber) Keys() []string { return s.keys }

// Topics are the subscriber's topic selectors, without duplicates, as given.
func (s *Subscriber) Topics() []string {
	out := make([]string, len(s.topics))
	for i, m := range s.topics {
		out[i] = m.selector
	}
	return out
}

// Match reports whether the subscriber receives u: one of its selectors matches one of u's
// topics and, for a private update, one of its private selectors matches one of them too.
func (s *Subscriber) Match(u *Update) bool {
	subscribed := false
	for _, m := range s.topics {
		if m.matchAny(u.Topics) {
			subscribed = true
			break
		}
	}
	if !subscribed || !u.Private {
		return subscribed
	}
	for _, m := range s.private {
		if m.matchAny(u.Topics) {
			return true
		}
	}
	return false
}

// publicClass is the class of subscribers without private selectors (anonymous ones included).
var publicClass = strings.Repeat("0", 32)

// classOf names a set of private selectors: subscribers with the same set see the same private
// updates, so the index decides for all of them at once.
func classOf(private []string) string {
	p := uniqueSorted(private)
	if len(p) == 0 {
		return publicClass
	}
	sum := sha256.Sum256([]byte(strings.Join(p, "\x00")))
	return hex.EncodeToString(sum[:16])
}

// key is a registry key: "~", the class, and the selector. "~" is outside the channel alphabet
// and the class has a fixed length, so keys never collide with channels or with each other.
func key(class, selector string) string { return "~" + class + selector }

func uniqueSorted(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return slices.Compact(out)
}

// Deliverer is what the index hands frames to: the node's session registry.
type Deliverer interface {
	Broadcast(tenantID, channel string, f *streamgate.Frame) int
	BroadcastAny(tenantID string, channels []string, f *streamgate.Frame) int
}

// Index is one node's Mercure subscribers, per tenant, indexed for matching: an update is
// matched once per distinct selector on the node (plain selectors by a map lookup per topic,
// templates each compiled once), and once per distinct set of private selectors, never once
// per subscriber. It stands between the node's pub/sub hub and its session registry: frames of
// the tenants' Mercure log (channel) are matched, encoded once and handed to the sessions they
// match; every other frame passes through.
type Index struct {
	next    Deliverer
	channel string

	mu      sync.RWMutex
	tenants map[string]*tenantIndex
}

type tenantIndex struct {
	exact    map[string]*selectorEntry // plain selectors, found by topic
	patterns map[string]*selectorEntry // URI templates and "*", tried against every update
	classes  map[string]*classEntry
}

type selectorEntry struct {
	m       matcher
	classes map[string]int // class → subscribers
}

type classEntry struct {
	private []matcher
	refs    int
}

// NewIndex returns an index that takes the frames of channel (the tenants' Mercure log) and
// hands every frame on to next.
func NewIndex(channel string, next Deliverer) *Index {
	return &Index{next: next, channel: channel, tenants: make(map[string]*tenantIndex)}
}

// Add files a subscriber of tenantID; updates that match it from now on reach its registry
// keys. Each Add must be paired with a Remove.
func (x *Index) Add(tenantID string, s *Subscriber) {
	x.mu.Lock()
	defer x.mu.Unlock()
	ti := x.tenants[tenantID]
	if ti == nil {
		ti = &tenantIndex{exact: map[string]*selectorEntry{}, patterns: map[string]*selectorEntry{}, classes: map[string]*classEntry{}}
		x.tenants[tenantID] = ti
	}
	c := ti.classes[s.class]
	if c == nil {
		c = &classEntry{private: s.private}
		ti.classes[s.class] = c
	}
	c.refs++
	for _, m := range s.topics {
		set := ti.patterns
		if m.exact() {
			set = ti.exact
		}
		e := set[m.selector]
		if e == nil {
			e = &selectorEntry{m: m, classes: map[string]int{}}
			set[m.selector] = e
		}
		e.classes[s.class]++
	}
}

// Remove takes back one Add of s.
func (x *Index) Remove(tenantID string, s *Subscriber) {
	x.mu.Lock()
	defer x.mu.Unlock()
	ti := x.tenants[tenantID]
	if ti == nil {
		return
	}
	for _, m := range s.topics {
		set := ti.patterns
		if m.exact() {
			set = ti.exact
		}
		if e := set[m.selector]; e != nil {
			if e.classes[s.class]--; e.classes[s.class] <= 0 {
				delete(e.classes, s.class)
			}
			if len(e.classes) == 0 {
				delete(set, m.selector)
			}
		}
	}
	if c := ti.classes[s.class]; c != nil {
		if c.refs--; c.refs <= 0 {
			delete(ti.classes, s.class)
		}
	}
	if len(ti.classes) == 0 {
		delete(x.tenants, tenantID)
	}
}

// Broadcast hands f on: a frame of the Mercure log, whose Body is the update as stored, to the
// subscribers it matches, encoded as their SSE event; a resync of the log to every subscriber
// of the tenant; any other frame unchanged to the registry. It returns how many sessions took it.
func (x *Index) Broadcast(tenantID, channel string, f *streamgate.Frame) int {
	if channel != x.channel {
		return x.next.Broadcast(tenantID, channel, f)
	}
	if f.Resync {
		return x.next.BroadcastAny(tenantID, x.allKeys(tenantID), f)
	}
	u, ok := DecodeUpdate(string(f.Body))
	if !ok {
		return 0
	}
	keys := x.match(tenantID, &u)
	if len(keys) == 0 {
		return 0
	}
	return x.next.BroadcastAny(tenantID, keys, u.Frame(channel, f.ID, f.Seq))
}

// match returns the registry keys of the tenant's subscribers that receive u.
func (x *Index) match(tenantID string, u *Update) []string {
	x.mu.RLock()
	defer x.mu.RUnlock()
	ti := x.tenants[tenantID]
	if ti == nil {
		return nil
	}
	var matched []*selectorEntry
	for i, t := range u.Topics {
		if e := ti.exact[t]; e != nil && !slices.Contains(u.Topics[:i], t) {
			matched = append(matched, e)
		}
	}
	for _, e := range ti.patterns {
		if e.m.matchAny(u.Topics) {
			matched = append(matched, e)
		}
	}
	var (
		keys   []string
		access map[string]bool // class → may see this private update
	)
	for _, e := range matched {
		for class := range e.classes {
			if u.Private {
				if access == nil {
					access = make(map[string]bool, len(ti.classes))
				}
				ok, known := access[class]
				if !known {
					ok = ti.classes[class].mayAccess(u.Topics)
					access[class] = ok
				}
				if !ok {
					continue
				}
			}
			keys = append(keys, key(class, e.m.selector))
		}
	}
	return keys
}

func (c *classEntry) mayAccess(topics []string) bool {
	if c == nil {
		return false
	}
	for _, m := range c.private {
		if m.matchAny(topics) {
			return true
		}
	}
	return false
}

func (x *Index) allKeys(tenantID string) []string {
	x.mu.RLock()
	defer x.mu.RUnlock()
	ti := x.tenants[tenantID]
	if ti == nil {
		return nil
	}
	var keys []string
	for _, set := range []map[string]*selectorEntry{ti.exact, ti.patterns} {
		for sel, e := range set {
			for class := range e.classes {
				keys = append(keys, key(class, sel))
			}
		}
	}
	return keys
}
