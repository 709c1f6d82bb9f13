package mercure

import (
	"fmt"
	"testing"

	streamgate "github.com/streamgate/streamgate"
	"github.com/streamgate/streamgate/internal/session"
)

// fanOut is one node with n sessions of a tenant, all reached by one event: native sessions on
// a channel, or Mercure subscribers on a selector (an exact topic, a URI template, or a template
// with a private update that each subscriber's token allows). deliver hands one event to the
// node as its pub/sub hub would, and drains the sessions as writers keep up.
func fanOut(tb testing.TB, kind string, n int) (deliver func()) {
	tb.Helper()
	reg := session.NewRegistry("node", session.Config{})
	idx := NewIndex("#m", reg)
	sessions := make([]*session.Session, n)
	for i := range sessions {
		id := fmt.Sprintf("ses_%d", i)
		var sub *Subscriber
		switch kind {
		case "exact":
			sub = NewSubscriber([]string{"https://example.com/books/1"}, nil)
		case "template":
			sub = NewSubscriber([]string{"https://example.com/books/{id}"}, nil)
		case "private":
			sub = NewSubscriber([]string{"https://example.com/books/{id}"}, []string{"https://example.com/users/{user}/books"})
		}
		keys := []string{"chat"}
		if sub != nil {
			idx.Add("tn", sub)
			keys = sub.Keys()
		}
		s, err := reg.Register(session.Info{ID: id, TenantID: "tn"}, keys, 0, 0)
		if err != nil {
			tb.Fatal(err)
		}
		sessions[i] = s
	}
	u := Update{ID: "urn:uuid:1", Topics: []string{"https://example.com/books/1"}, Data: `{"title":"Dune"}`}
	if kind == "private" {
		u.Private, u.Topics = true, append(u.Topics, "https://example.com/users/u1/books")
	}
	raw := &streamgate.Frame{ID: "1-1", Seq: 1, Channel: "#m", Body: u.Encode(), Message: true}
	native := streamgate.NewEventFrame("chat", "1-1", 1, "message", `{"title":"Dune"}`)
	var buf []*streamgate.Frame
	return func() {
		var got int
		if kind == "native" {
			got = idx.Broadcast("tn", "chat", native)
		} else {
			got = idx.Broadcast("tn", "#m", raw)
		}
		if got != n {
			tb.Fatalf("%s: reached %d sessions, want %d", kind, got, n)
		}
		for _, s := range sessions {
			buf = s.Take(buf[:0])
		}
	}
}

// TestFanOut runs each benchmark's setup once, so that the benchmarks measure code that works.
func TestFanOut(t *testing.T) {
	t.Parallel()
	for _, kind := range []string{"native", "exact", "template", "private"} {
		fanOut(t, kind, 100)()
	}
}

// BenchmarkFanOut compares one event's cost on a node with 10,000 sessions: a native stream's
// channel against Mercure subscribers, whose update is matched once per distinct selector and
// once per set of private selectors, however many subscribers share them.
func BenchmarkFanOut(b *testing.B) {
	for _, kind := range []string{"native", "exact", "template", "private"} {
		b.Run(kind, func(b *testing.B) {
			deliver := fanOut(b, kind, 10_000)
			b.ReportAllocs()
			for b.Loop() {
				deliver()
			}
		})
	}
}
