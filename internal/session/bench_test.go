package session

import (
	"fmt"
	"sync/atomic"
	"testing"

	streamgate "github.com/streamgate/streamgate"
)

// BenchmarkBroadcast10k measures one event fanned out to 10,000 sessions on one channel: the
// fan-out loop's cost per event on a busy node. Writers drain between events, outside the timer.
func BenchmarkBroadcast10k(b *testing.B) {
	const n = 10_000
	r := NewRegistry("n", Config{})
	sessions := make([]*Session, n)
	for i := range sessions {
		sessions[i] = mustRegister(b, r, "tn_a", fmt.Sprintf("ses_%d", i), "chat")
	}
	f := message("1")
	var buf []*streamgate.Frame
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if got := r.Broadcast("tn_a", "chat", f); got != n {
			b.Fatalf("reached %d, want %d", got, n)
		}
		if i%32 == 31 { // drain well before the buffers fill, as writers keep up
			b.StopTimer()
			for _, s := range sessions {
				buf = s.Take(buf[:0])
			}
			b.StartTimer()
		}
	}
}

// BenchmarkRegisterRemove measures connection churn from many handlers at once.
func BenchmarkRegisterRemove(b *testing.B) {
	r := NewRegistry("n", Config{})
	var next atomic.Int64
	channels := []string{"chat", "news"}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			id := fmt.Sprintf("ses_%d", next.Add(1))
			if _, err := r.Register(Info{ID: id, TenantID: "tn_a"}, channels, 0, 0); err != nil {
				b.Error(err)
				return
			}
			r.Remove(id)
		}
	})
}

// BenchmarkSendContended measures Send from many goroutines to a few sessions that drain on
// the same goroutines, so the session locks are contended.
func BenchmarkSendContended(b *testing.B) {
	const n = 4
	r := NewRegistry("n", Config{MaxConsecutiveDrops: 1 << 30, MaxTotalDrops: 1 << 30})
	sessions := make([]*Session, n)
	for i := range sessions {
		sessions[i] = mustRegister(b, r, "tn_a", fmt.Sprintf("ses_%d", i), "chat")
	}
	f := message("1")
	var next atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		var buf []*streamgate.Frame
		for pb.Next() {
			i := next.Add(1)
			s := sessions[i%n]
			if err := r.Send(s.ID(), f); err != nil && err != ErrFull {
				b.Error(err)
				return
			}
			if i%64 == 0 {
				buf = s.Take(buf[:0])
			}
		}
	})
}
