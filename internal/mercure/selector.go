// Package mercure is the Mercure protocol over Streamgate's machinery: topic selectors and
// their matching, publisher and subscriber tokens, the update a publisher sends and the SSE
// event a subscriber receives, and the node's index that matches each update once per distinct
// selector. It knows neither Redis nor HTTP.
package mercure

import (
	"regexp"
	"strings"
	"sync"

	"github.com/yosida95/uritemplate/v3"
)

// Bounds of what publishers and subscribers send.
const (
	// MaxSelectors bounds the topic selectors of one subscription request or token claim, and
	// the topics of one update.
	MaxSelectors = 1000
	// MaxSelectorLen bounds one topic or topic selector, in bytes.
	MaxSelectorLen = 4096
)

// Wildcard is the selector that matches every topic.
const Wildcard = "*"

// Match reports whether topic matches selector, as the Mercure protocol defines it: the
// selector is "*", or the topic itself, or a URI template (RFC 6570) that the topic expands.
// Any other selector is a plain string that matches only itself.
func Match(topic, selector string) bool {
	if selector == Wildcard || topic == selector {
		return true
	}
	re := compile(selector)
	return re != nil && re.MatchString(topic)
}

// compile returns the regular expression of a URI template selector, or nil when the selector
// is no template (a plain string). Compiled templates are kept in a bounded cache.
func compile(selector string) *regexp.Regexp {
	if !strings.Contains(selector, "{") || len(selector) > MaxSelectorLen {
		return nil
	}
	return templates.get(selector)
}

// templateCache holds compiled templates. It starts afresh when full: a burst of compiles,
// never unbounded memory.
type templateCache struct {
	mu sync.Mutex
	m  map[string]*regexp.Regexp // nil value: not a template
}

const templateCacheMax = 10_000

var templates = &templateCache{m: make(map[string]*regexp.Regexp)}

func (c *templateCache) get(selector string) *regexp.Regexp {
	c.mu.Lock()
	re, ok := c.m[selector]
	c.mu.Unlock()
	if ok {
		return re
	}
	re = templateRegexp(selector)
	c.mu.Lock()
	if len(c.m) >= templateCacheMax {
		clear(c.m)
	}
	c.m[selector] = re
	c.mu.Unlock()
	return re
}

// templateRegexp compiles a URI template into the regular expression of its expansions, or nil
// when the selector does not parse as one.
func templateRegexp(selector string) (re *regexp.Regexp) {
	tpl, err := uritemplate.New(selector)
	if err != nil {
		return nil
	}
	defer func() {
		if recover() != nil {
			re = nil // a template the library parses but cannot turn into a pattern: a plain string
		}
	}()
	return tpl.Regexp()
}

// matcher matches topics against one selector, compiled once.
type matcher struct {
	selector string
	all      bool           // "*"
	re       *regexp.Regexp // a URI template, or nil for a plain string
}

func newMatcher(selector string) matcher {
	return matcher{selector: selector, all: selector == Wildcard, re: compile(selector)}
}

// exact reports whether only the topic equal to the selector matches it.
func (m matcher) exact() bool { return !m.all && m.re == nil }

func (m matcher) match(topic string) bool {
	return m.all || topic == m.selector || (m.re != nil && m.re.MatchString(topic))
}

// matchAny reports whether any of topics matches.
func (m matcher) matchAny(topics []string) bool {
	for _, t := range topics {
		if m.match(t) {
			return true
		}
	}
	return false
}

// MatchAny reports whether any topic matches any selector.
func MatchAny(topics, selectors []string) bool {
	for _, s := range selectors {
		for _, t := range topics {
			if Match(t, s) {
				return true
			}
		}
	}
	return false
}

// MatchEvery reports whether every topic matches at least one selector: what a publisher's
// mercure.publish must allow.
func MatchEvery(topics, selectors []string) bool {
	if len(selectors) == 0 {
		return false
	}
	for _, t := range topics {
		ok := false
		for _, s := range selectors {
			if Match(t, s) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}
