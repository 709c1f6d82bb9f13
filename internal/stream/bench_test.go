package stream

import (
	"context"
	"encoding/json"
	"log/slog"
	"strconv"
	"testing"
	"time"

	streamgate "github.com/streamgate/streamgate"
	"github.com/streamgate/streamgate/internal/ratelimit"
	"github.com/streamgate/streamgate/internal/redistest"
)

// BenchmarkEncodeFrame is the per-node cost of turning one pub/sub message into the SSE frame
// every local subscriber shares.
func BenchmarkEncodeFrame(b *testing.B) {
	payload := `1795800370770-42` + "\n" + `message` + "\n" + `{"channel":"chat.room","event":"chat.message","data":{"text":"hello, world","user":"u-42"},"published_at":"2026-11-27T17:26:10.769878496Z"}`
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := EncodeFrame("chat.room", payload); !ok {
			b.Fatal("not encoded")
		}
	}
}

// BenchmarkPublish is one publish round trip: the script on a real Redis (request id, rate
// count, history append, trim, PUBLISH).
func BenchmarkPublish(b *testing.B) {
	rdb := redistest.Start(b).Client()
	p := NewPublisher(rdb)
	w := Window{Events: 1000, Seconds: 300}
	rate := ratelimit.Rate{Limit: 10_000_000, Period: time.Second} // counted, never reached
	ev := []Event{{Channel: "bench", Event: "message", Data: json.RawMessage(`{"n":1,"text":"hello, world"}`)}}
	b.ReportAllocs()
	defer redistest.ReportCPU(b, rdb)()
	for b.Loop() {
		if _, err := p.Publish(b.Context(), "tn_bench", w, rate, ev, ""); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPublishBatch is one publish of ten events on two channels: one script, one round
// trip.
func BenchmarkPublishBatch(b *testing.B) {
	rdb := redistest.Start(b).Client()
	p := NewPublisher(rdb)
	w := Window{Events: 1000, Seconds: 300}
	rate := ratelimit.Rate{Limit: 10_000_000, Period: time.Second}
	ev := make([]Event, 10)
	for i := range ev {
		ev[i] = Event{Channel: "bench-" + strconv.Itoa(i%2), Event: "message", Data: json.RawMessage(`{"n":1,"text":"hello, world"}`)}
	}
	b.ReportAllocs()
	defer redistest.ReportCPU(b, rdb)()
	for b.Loop() {
		if _, err := p.Publish(b.Context(), "tn_bench", w, rate, ev, ""); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPublishParallel is the publish path under concurrency (many API requests at once).
func BenchmarkPublishParallel(b *testing.B) {
	rdb := redistest.Start(b).Client()
	p := NewPublisher(rdb)
	w := Window{Events: 1000, Seconds: 300}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			i++
			ev := []Event{{Channel: "bench-" + strconv.Itoa(i%64), Event: "message", Data: json.RawMessage(`{"n":1}`)}}
			if _, err := p.Publish(b.Context(), "tn_bench", w, ratelimit.Rate{}, ev, ""); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkHubAcquireRelease is a channel's first subscriber coming and its last leaving (a
// SUBSCRIBE confirmed, an UNSUBSCRIBE) on a node that holds 10,000 other channels: the cost
// must not grow with what the node holds.
func BenchmarkHubAcquireRelease(b *testing.B) {
	rs := redistest.Start(b)
	h := NewHub(rs.Client(), "node-bench", Handlers{Deliver: discard{}}, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	defer func() { cancel(); <-done }()
	for i := range 10_000 {
		if err := h.Acquire(b.Context(), "tn_bench", "held-"+strconv.Itoa(i)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		ch := "c-" + strconv.Itoa(i%100)
		i++
		if err := h.Acquire(b.Context(), "tn_bench", ch); err != nil {
			b.Fatal(err)
		}
		h.Release("tn_bench", ch)
	}
}

type discard struct{}

func (discard) Broadcast(string, string, *streamgate.Frame) int { return 0 }
