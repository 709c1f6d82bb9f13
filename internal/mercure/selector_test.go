package mercure

import (
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/yosida95/uritemplate/v3"
)

func TestMatch(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		topic, selector string
		want            bool
	}{
		// Mercure's conformance dataset.
		{"f1a2", "f1a2", true},
		{"https://example.net/foo/f1a2", "https://example.net/foo/f1a2", true},
		{"https://example.net/foo/f1a2", "https://example.net/foo/{random}", true},
		{"will-not-match}", "another-name", false},
		{"https://example.net/foo/will-not-match}", "https://example.net/foo/another-name", false},
		{"https://example.net/foo/will-not-match}", "https://example.net/bar/{var}", false},
		// The reference hub's cases.
		{"https://example.com/foo/bar", "https://example.com/{foo}/bar", true},
		{"https://example.com/foo/bar/baz", "https://example.com/{foo}/bar", false},
		{"https://example.com/kevin/dunglas", "https://example.com/{fistname}/{lastname}", true},
		{"https://example.com/foo/bar", "*", true},
		{"", "*", true},
		{"foo", "foo", true},
		{"foo", "bar", false},
		{"https://example.com/a", "https://example.com/{x}", true},
		{"https://other.com/a", "https://example.com/{x}", false},
		{"https://example.com/users/foo/?topic=https%3A%2F%2Fexample.com%2Fbooks%2F1", "https://example.com/users/foo/{?topic}", true},
		{"https://example.com/users/bar/?topic=https%3A%2F%2Fexample.com%2Fbooks%2F1", "https://example.com/users/foo/{?topic}", false},
		// Level 4 templates: reserved expansion crosses slashes, a simple one does not.
		{"https://example.com/a/b/c", "https://example.com/{+path}", true},
		{"https://example.com/a/b/c", "https://example.com/{path}", false},
		{"https://example.com/books/1,2", "https://example.com/books/{ids*}", true},
		// A template matches itself as a string, and a broken one is a plain string.
		{"https://example.com/{x}", "https://example.com/{x}", true},
		{"https://example.com/{x", "https://example.com/{x", true},
		{"https://example.com/1", "https://example.com/{x", false},
		// Regular-expression characters mean themselves.
		{"a.c", "a.c", true},
		{"abc", "a.c", false},
		{"abc/1", "a.c/{id}", false},
		{"a.c/1", "a.c/{id}", true},
		{"ab", "*b", false},
	} {
		if got := Match(tc.topic, tc.selector); got != tc.want {
			t.Errorf("Match(%q, %q) = %v, want %v", tc.topic, tc.selector, got, tc.want)
		}
	}
}

func TestMatchEveryAndAny(t *testing.T) {
	t.Parallel()
	pub := []string{"https://example.com/books/{id}", "news"}
	if !MatchEvery([]string{"https://example.com/books/1", "news"}, pub) {
		t.Error("every topic is allowed, MatchEvery says no")
	}
	if MatchEvery([]string{"https://example.com/books/1", "sport"}, pub) {
		t.Error("one topic is not allowed, MatchEvery says yes")
	}
	if MatchEvery([]string{"news"}, nil) || MatchEvery([]string{"news"}, []string{}) {
		t.Error("no selectors allow nothing")
	}
	if !MatchEvery([]string{"a", "b"}, []string{"*"}) {
		t.Error("* allows everything")
	}
	if !MatchAny([]string{"sport", "news"}, pub) || MatchAny([]string{"sport"}, pub) {
		t.Error("MatchAny")
	}
}

// referenceMatch is the protocol's definition, step by step, with no cache and no index.
func referenceMatch(topic, selector string) bool {
	if selector == "*" || topic == selector {
		return true
	}
	tpl, err := uritemplate.New(selector)
	if err != nil || len(selector) > MaxSelectorLen {
		return false
	}
	var re *regexp.Regexp
	func() {
		defer func() { _ = recover() }()
		re = tpl.Regexp()
	}()
	return re != nil && re.MatchString(topic)
}

// FuzzMatch checks Match against the protocol's definition, and the node's index against each
// subscriber's own matching: whatever the topic and selector, an update reaches a subscriber
// through the index exactly when the subscriber itself says it matches.
func FuzzMatch(f *testing.F) {
	f.Add("https://example.com/books/1", "https://example.com/books/{id}", false)
	f.Add("https://example.com/a/b", "https://example.com/{+rest}", true)
	f.Add("foo", "*", true)
	f.Add("will-not-match}", "another-name", false)
	f.Add("x", "{", false)
	f.Add("a{b}c", "a{b}c", true)
	f.Add("https://example.com/?q=1&r=2", "https://example.com/{?q,r}", false)
	f.Add("/1/2", "{/a,b}", false)
	f.Add("a", "{a:3}", false)
	f.Add("x", "{%20}", false)
	f.Fuzz(func(t *testing.T, topic, selector string, private bool) {
		got := Match(topic, selector)
		if want := referenceMatch(topic, selector); got != want {
			t.Fatalf("Match(%q, %q) = %v, the protocol says %v", topic, selector, got, want)
		}
		if got != Match(topic, selector) {
			t.Fatalf("Match(%q, %q) changed once cached", topic, selector)
		}

		if !utf8.ValidString(topic) || !utf8.ValidString(selector) {
			return // refused at the edge: stored as JSON, they would not survive the log
		}
		rec := &recorder{}
		idx := NewIndex("#m", rec)
		// The subscriber may see private updates of the same selector; another one may not.
		mine := NewSubscriber([]string{selector, "other"}, []string{selector})
		theirs := NewSubscriber([]string{selector}, nil)
		idx.Add("tn", mine)
		idx.Add("tn", theirs)
		u := Update{ID: "1", Topics: []string{topic, topic}, Private: private}
		idx.Broadcast("tn", "#m", rawFrame(u, 1))
		for _, s := range []*Subscriber{mine, theirs} {
			if reached, want := rec.reached(s), s.Match(&u); reached != want {
				t.Fatalf("topic %q, selector %q, private %v: reached %v, the subscriber matches %v (keys %q)", topic, selector, private, reached, want, rec.keys)
			}
		}
		if !private && rec.reached(mine) != got {
			t.Fatalf("a public update reached %v, Match says %v", rec.reached(mine), got)
		}
		idx.Remove("tn", mine)
		idx.Remove("tn", theirs)
		if len(idx.tenants) != 0 {
			t.Fatalf("the index keeps %d tenants after every Remove", len(idx.tenants))
		}
	})
}

func TestMatchLongSelectorIsPlain(t *testing.T) {
	t.Parallel()
	long := "https://example.com/" + strings.Repeat("a", MaxSelectorLen) + "/{id}"
	if Match("https://example.com/"+strings.Repeat("a", MaxSelectorLen)+"/1", long) {
		t.Error("a selector over MaxSelectorLen was compiled as a template")
	}
	if !Match(long, long) {
		t.Error("a long selector does not match itself")
	}
}
