package tenant

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Requests that miss the cache at the same moment fetch once; a failed fetch is not kept.
func TestCacheLoadFetchesOnceForAllWaiting(t *testing.T) {
	t.Parallel()
	c := newCache[int](time.Minute)
	var fetches atomic.Int32
	release := make(chan struct{})
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			v, err := c.load("k", func() (int, error) {
				fetches.Add(1)
				<-release
				return 7, nil
			})
			if err != nil || v != 7 {
				t.Errorf("load: %d, %v", v, err)
			}
		})
	}
	// Every goroutine is either waiting on the one fetch or has not started: let it finish.
	deadline := time.Now().Add(5 * time.Second)
	for fetches.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond)
	close(release)
	wg.Wait()
	// Late starters found the cached value; none fetched again.
	if n := fetches.Load(); n != 1 {
		t.Errorf("%d fetches for 50 concurrent loads, want 1", n)
	}

	boom := errors.New("redis down")
	if _, err := c.load("e", func() (int, error) { return 0, boom }); !errors.Is(err, boom) {
		t.Fatalf("failed fetch: %v", err)
	}
	if v, err := c.load("e", func() (int, error) { return 3, nil }); err != nil || v != 3 {
		t.Errorf("after a failed fetch: %d, %v; want a new fetch", v, err)
	}
}
