package session

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	streamgate "github.com/streamgate/streamgate"
)

func TestRunStopsWhenContextEnds(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		r := NewRegistry("n", Config{})
		ctx, cancel := context.WithCancel(t.Context())
		errc := make(chan error, 1)
		go func() { errc <- r.Run(ctx) }()
		time.Sleep(10 * time.Second)
		synctest.Wait()
		select {
		case err := <-errc:
			t.Fatalf("Run returned early: %v", err)
		default:
		}
		cancel()
		synctest.Wait()
		select {
		case err := <-errc:
			if err != nil {
				t.Errorf("Run = %v, want nil", err)
			}
		default:
			t.Error("Run still running after cancel")
		}
	})
}

// Run's sweeps, on the bubble's fake clock and the default Config: expiry within a sweep,
// a ping after 15 s of silence, stale removal after 2 minutes without a write.
func TestRunSweeps(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		r := NewRegistry("n", Config{})
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		go r.Run(ctx)

		start := time.Now()
		expiring, err := r.Register(Info{ID: "ses_exp", TenantID: "tn_a", TokenExp: start.Add(3500 * time.Millisecond)}, nil, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		writer := mustRegister(t, r, "tn_a", "ses_writer")
		wedged := mustRegister(t, r, "tn_a", "ses_wedged")

		time.Sleep(4*time.Second + time.Millisecond)
		synctest.Wait()
		assertFinal(t, expiring, AuthFailed("token expired"))
		assertGone(t, r, "ses_exp")

		time.Sleep(11 * time.Second) // 15 s since registration
		synctest.Wait()
		for _, s := range []*Session{writer, wedged} {
			if got := frameIDs(s.Take(nil)); !slices.Equal(got, []string{"ping"}) {
				t.Errorf("%s after 15s got %v, want [ping]", s.ID(), got)
			}
		}

		// The writer writes its pings; the wedged one never completes a write again.
		for range 120 {
			if s := writer.Take(nil); len(s) > 0 {
				writer.Wrote(0)
			}
			time.Sleep(time.Second)
			synctest.Wait()
		}
		assertFinal(t, wedged, nil)
		assertGone(t, r, "ses_wedged")
		if isDone(writer) {
			t.Error("writer that keeps writing was removed")
		}
		if got := r.TenantStats("tn_a"); got.Connections != 1 || got.Evicted != 1 {
			t.Errorf("stats = %+v", got)
		}
	})
}

// Broadcasts, registrations, removals, subscriptions, writers and sweeps all at once. Under
// -race this checks the locking; the accounting checks that every frame Broadcast reports as
// enqueued is taken by exactly one writer, and that nothing is left behind.
func TestConcurrentUse(t *testing.T) {
	t.Parallel()
	r := NewRegistry("n", Config{BufferSize: 8, MaxConsecutiveDrops: 3, MaxTotalDrops: 20})
	const (
		tenants  = 3
		channels = 4
		writers  = 24
		events   = 3000
	)
	var (
		enqueued, taken, delivered atomic.Int64
		wg                         sync.WaitGroup
	)
	stop := make(chan struct{})

	for w := range writers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			tn := fmt.Sprintf("tn_%d", w%tenants)
			var buf []*streamgate.Frame
			for round := 0; ; round++ {
				select {
				case <-stop:
					return
				default:
				}
				id := fmt.Sprintf("ses_%d_%d", w, round)
				s, err := r.Register(Info{ID: id, TenantID: tn}, []string{fmt.Sprintf("ch%d", rng.IntN(channels))}, 0, 0)
				if err != nil {
					t.Errorf("Register: %v", err)
					return
				}
				if _, err := r.Subscribe(id, fmt.Sprintf("ch%d", rng.IntN(channels)), 0); err != nil && !errors.Is(err, ErrNotFound) {
					t.Errorf("Subscribe: %v", err)
				}
				slow := w%4 == 0
				for range 20 + rng.IntN(20) {
					select {
					case <-s.Ready():
						if slow {
							time.Sleep(time.Millisecond)
						}
						buf = s.Take(buf[:0])
						n := messages(buf)
						taken.Add(int64(n))
						s.Wrote(n)
						delivered.Add(int64(n))
					case <-s.Done():
					case <-time.After(time.Millisecond):
					}
					if rng.IntN(10) == 0 {
						r.Unsubscribe(id, fmt.Sprintf("ch%d", rng.IntN(channels)))
					}
				}
				r.Remove(id)
				// Whatever was still pending when the session closed is the writer's to take.
				buf = s.Take(buf[:0])
				taken.Add(int64(messages(buf)))
			}
		})
	}
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			r.ExpireTokens()
			r.Heartbeat()
			r.CleanupStale(time.Hour)
			r.Stats()
			r.Sessions("tn_0")
			time.Sleep(time.Millisecond)
		}
	})

	var bwg sync.WaitGroup
	for b := range 2 {
		bwg.Go(func() {
			for i := range events {
				f := &streamgate.Frame{ID: fmt.Sprint(i), Message: true}
				n := r.Broadcast(fmt.Sprintf("tn_%d", (i+b)%tenants), fmt.Sprintf("ch%d", i%channels), f)
				enqueued.Add(int64(n))
				if i%16 == 0 {
					time.Sleep(100 * time.Microsecond)
				}
			}
		})
	}
	bwg.Wait()
	close(stop)
	wg.Wait()

	if enqueued.Load() == 0 {
		t.Fatal("no broadcast reached any session: the test exercised nothing")
	}
	st := r.Stats()
	if st.Connections != 0 || st.Subscriptions != 0 {
		t.Errorf("after everyone left: %+v", st)
	}
	if got, want := int64(st.Delivered), delivered.Load(); got != want {
		t.Errorf("delivered counter = %d, writers reported %d", got, want)
	}
	if taken.Load() != enqueued.Load() {
		t.Errorf("taken %d frames, Broadcast enqueued %d", taken.Load(), enqueued.Load())
	}
	for tn := range tenants {
		if got := r.Channels(fmt.Sprintf("tn_%d", tn)); len(got) != 0 {
			t.Errorf("tn_%d still indexes %v", tn, got)
		}
	}
	t.Logf("enqueued %d, dropped %d, evicted %d", enqueued.Load(), st.Dropped, st.Evicted)
}

// messages counts the frames that are messages, leaving out heartbeat pings.
func messages(fs []*streamgate.Frame) int {
	n := 0
	for _, f := range fs {
		if f.Message {
			n++
		}
	}
	return n
}
