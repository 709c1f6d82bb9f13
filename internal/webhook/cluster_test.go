package webhook

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamgate/streamgate/internal/redistest"
)

// On a Redis Cluster no command crosses slots: tenants on different shards get their events
// delivered, retried and recorded, and occupancy works across the shards.
func TestOnRedisCluster(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t, 3)
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: strings.Split(cl.Addrs(), ",")})
	t.Cleanup(func() { rdb.Close() })
	events := NewEvents(rdb, quietLog())
	store, err := NewStore(rdb, testKey, open, events)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{rdb: rdb, events: events, store: store}
	rcv := newReceiver(t)
	f.dispatch(t, DispatcherConfig{Schedule: []time.Duration{10 * time.Millisecond}})

	// Tenants in several partitions, hence on several shards.
	tenants := map[int]string{}
	for i := 0; len(tenants) < 4; i++ {
		id := fmt.Sprint("tn_", i)
		if _, ok := tenants[partition(id)]; !ok {
			tenants[partition(id)] = id
		}
	}
	secrets := map[string]string{}
	ids := map[string]string{}
	for _, tn := range tenants {
		ep, secret := f.create(t, tn, rcv.srv.URL, EventChannelOccupied, EventChannelVacated)
		secrets[tn], ids[tn] = secret, ep.ID
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	occ := NewOccupancy(rdb, "n1", events, quietLog())
	wg.Add(1)
	go func() { defer wg.Done(); _ = occ.Run(ctx) }()

	for _, tn := range tenants {
		occ.Occupied(tn, "room")
	}
	got := map[string]int{}
	for range tenants {
		req := rcv.next(t, 10*time.Second)
		for tn, secret := range secrets {
			if verified(t, secret, req) == 1 {
				got[tn]++
				if p := decodePayload(t, req); p.Type != EventChannelOccupied {
					t.Errorf("%s: %s", tn, p.Type)
				}
			}
		}
	}
	for _, tn := range tenants {
		if got[tn] != 1 {
			t.Errorf("tenant %s (partition %d) got %d deliveries, want 1", tn, partition(tn), got[tn])
		}
	}

	// A failing answer is retried once, then dead and kept.
	rcv.status.Store(500)
	for _, tn := range tenants {
		occ.Vacated(tn, "room")
	}
	for range 2 * len(tenants) {
		rcv.next(t, 10*time.Second)
	}
	for _, tn := range tenants {
		if _, err := f.store.RotateSecret(ctx, tn, ids[tn]); err != nil {
			t.Errorf("rotate on a cluster: %v", err)
		}
		if ep, err := f.store.Update(ctx, tn, ids[tn], Patch{Description: ptr("on a shard")}); err != nil || ep.Description != "on a shard" {
			t.Errorf("update on a cluster: %+v, %v", ep, err)
		}
		waitFor(t, 10*time.Second, "the dead delivery of "+tn, func() bool {
			n, _ := f.store.DeadCount(ctx, tn, ids[tn])
			return n == 1
		})
		if err := f.store.Delete(ctx, tn, ids[tn]); err != nil {
			t.Error(err)
		}
	}
}
