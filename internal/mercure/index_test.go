package mercure

import (
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	streamgate "github.com/streamgate/streamgate"
)

// recorder is a Deliverer that remembers what it was handed.
type recorder struct {
	mu     sync.Mutex
	keys   []string
	frames []*streamgate.Frame
	passed []string // channels of frames passed through
}

func (r *recorder) Broadcast(_, channel string, f *streamgate.Frame) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.passed = append(r.passed, channel)
	return 1
}

func (r *recorder) BroadcastAny(_ string, keys []string, f *streamgate.Frame) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.keys = append(r.keys, keys...)
	r.frames = append(r.frames, f)
	return len(keys)
}

// reached reports whether one of s's keys was handed a frame.
func (r *recorder) reached(s *Subscriber) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, k := range s.Keys() {
		if slices.Contains(r.keys, k) {
			return true
		}
	}
	return false
}

func (r *recorder) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.keys, r.frames, r.passed = nil, nil, nil
}

// rawFrame is a frame of the Mercure log as the hub hands it on: the stored update as Body.
func rawFrame(u Update, seq uint64) *streamgate.Frame {
	return &streamgate.Frame{ID: "1700000000000-" + strconv.FormatUint(seq, 10), Seq: seq, Channel: "#m", Body: u.Encode(), Message: true}
}

func TestSubscriberMatch(t *testing.T) {
	t.Parallel()
	// The reference hub's case: private updates reach a subscriber through an alternate topic
	// its token's selector matches.
	s := NewSubscriber([]string{"https://example.com/no-match", "https://example.com/books/{id}"}, []string{"https://example.com/users/foo/{?topic}"})
	for _, tc := range []struct {
		u    Update
		want bool
	}{
		{Update{Topics: []string{"https://example.com/not-subscribed"}}, false},
		{Update{Topics: []string{"https://example.com/not-subscribed"}, Private: true}, false},
		{Update{Topics: []string{"https://example.com/no-match"}, Private: true}, false},
		{Update{Topics: []string{"https://example.com/books/1"}, Private: true}, false},
		{Update{Topics: []string{"https://example.com/books/1", "https://example.com/users/bar/?topic=https%3A%2F%2Fexample.com%2Fbooks%2F1"}, Private: true}, false},
		{Update{Topics: []string{"https://example.com/books/1"}}, true},
		{Update{Topics: []string{"https://example.com/books/1", "https://example.com/users/foo/?topic=https%3A%2F%2Fexample.com%2Fbooks%2F1"}, Private: true}, true},
	} {
		if got := s.Match(&tc.u); got != tc.want {
			t.Errorf("Match(%+v) = %v, want %v", tc.u, got, tc.want)
		}
	}
	anon := NewSubscriber([]string{"*"}, nil)
	if anon.Match(&Update{Topics: []string{"a"}, Private: true}) || !anon.Match(&Update{Topics: []string{"a"}}) {
		t.Error("an anonymous subscriber to * must see public updates only")
	}
}

func TestIndexDeliversOncePerMatchingSubscriber(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	idx := NewIndex("#m", rec)
	books := NewSubscriber([]string{"https://example.com/books/{id}", "https://example.com/books/1"}, nil)
	alice := NewSubscriber([]string{"https://example.com/books/{id}"}, []string{"https://example.com/users/alice/{?topic}"})
	bob := NewSubscriber([]string{"https://example.com/books/{id}"}, []string{"https://example.com/users/bob/{?topic}"})
	all := NewSubscriber([]string{"*"}, []string{"*"})
	news := NewSubscriber([]string{"news"}, nil)
	other := NewSubscriber([]string{"*"}, nil)
	for _, s := range []*Subscriber{books, alice, bob, all, news} {
		idx.Add("tn_a", s)
	}
	idx.Add("tn_b", other)

	check := func(name string, u Update, want ...*Subscriber) {
		t.Helper()
		rec.reset()
		idx.Broadcast("tn_a", "#m", rawFrame(u, 7))
		for _, s := range []*Subscriber{books, alice, bob, all, news, other} {
			if got := rec.reached(s); got != slices.Contains(want, s) {
				t.Errorf("%s: subscriber %v reached %v", name, s.Topics(), got)
			}
		}
		if len(want) > 0 && len(rec.frames) != 1 {
			t.Fatalf("%s: %d broadcasts, want one for every subscriber at once", name, len(rec.frames))
		}
	}
	check("public book", Update{ID: "u1", Topics: []string{"https://example.com/books/1"}}, books, alice, bob, all)
	check("public news", Update{ID: "u2", Topics: []string{"news", "news"}}, news, all)
	check("private for alice", Update{ID: "u3", Private: true, Topics: []string{
		"https://example.com/books/1", "https://example.com/users/alice/?topic=https%3A%2F%2Fexample.com%2Fbooks%2F1"}}, alice, all)
	check("private for nobody subscribed", Update{ID: "u4", Private: true, Topics: []string{"news"}}, all)
	check("nothing matches", Update{ID: "u5", Topics: []string{"sport"}}, all)

	// The frame is the update's SSE event, with the log position as its ID.
	rec.reset()
	idx.Broadcast("tn_a", "#m", rawFrame(Update{ID: "urn:x", Type: "t", Retry: 10, Topics: []string{"news"}, Data: "a\nb"}, 9))
	f := rec.frames[0]
	if f.ID != "1700000000000-9" || f.Seq != 9 || !f.Message || string(f.Body) != "id: urn:x\nevent: t\nretry: 10\ndata: a\ndata: b\n\n" {
		t.Errorf("frame = %+v %q", f, f.Body)
	}

	// A resync reaches every subscriber of the tenant; other channels pass through.
	rec.reset()
	idx.Broadcast("tn_a", "#m", &streamgate.Frame{Channel: "#m", Resync: true})
	for _, s := range []*Subscriber{books, alice, bob, all, news} {
		if !rec.reached(s) {
			t.Errorf("resync missed %v", s.Topics())
		}
	}
	if rec.reached(other) {
		t.Error("resync reached another tenant")
	}
	idx.Broadcast("tn_a", "chat", &streamgate.Frame{ID: "1-1"})
	if !slices.Equal(rec.passed, []string{"chat"}) {
		t.Errorf("a channel frame was not passed through: %v", rec.passed)
	}

	// Removed subscribers are no longer reached; the index forgets empty tenants.
	for _, s := range []*Subscriber{books, alice, bob, all} {
		idx.Remove("tn_a", s)
	}
	check("after removals", Update{ID: "u6", Topics: []string{"https://example.com/books/1", "news"}}, news)
	idx.Remove("tn_a", news)
	idx.Remove("tn_b", other)
	if len(idx.tenants) != 0 {
		t.Errorf("index keeps %d tenants", len(idx.tenants))
	}
}

func TestKeysAreNoChannels(t *testing.T) {
	t.Parallel()
	s := NewSubscriber([]string{"chat", "0123456789abcdef0123456789abcdefchat", "chat"}, []string{"b", "a"})
	if len(s.Keys()) != 2 || s.Keys()[0] == s.Keys()[1] {
		t.Fatalf("keys %q", s.Keys())
	}
	for _, k := range s.Keys() {
		if streamgate.ValidChannel(k) {
			t.Errorf("key %q is a valid channel name: a native publish could reach it", k)
		}
	}
	if s2 := NewSubscriber([]string{"chat"}, []string{"a", "b", "a"}); s2.Keys()[0] != s.Keys()[0] {
		t.Error("the same private selectors in another order make another class")
	}
	if s3 := NewSubscriber([]string{"chat"}, nil); s3.Keys()[0] == s.Keys()[0] {
		t.Error("a subscriber without private selectors shares a class with one that has some")
	}
	if !strings.HasPrefix(NewSubscriber([]string{"x"}, nil).Keys()[0], "~") {
		t.Error("keys start with ~")
	}
}
