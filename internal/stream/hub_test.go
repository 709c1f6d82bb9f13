package stream

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamgate/streamgate/internal/keys"
	"github.com/streamgate/streamgate/internal/redistest"
)

// dialGate is a Redis client's dialer that can hold new connections to one address: like a
// TCP connect that gets no answer (a lost SYN, a black-holed route), until opened again.
type dialGate struct {
	mu      sync.Mutex
	blocked string        // the address whose dials wait, or ""
	open    chan struct{} // closed when the gate opens
	waiting chan string   // hears of each dial that starts waiting
}

func newDialGate() *dialGate {
	return &dialGate{waiting: make(chan string, 64)}
}

// block holds every dial to addr from now on, until unblock.
func (g *dialGate) block(addr string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.blocked, g.open = addr, make(chan struct{})
}

func (g *dialGate) unblock() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.blocked != "" {
		g.blocked = ""
		close(g.open)
	}
}

func (g *dialGate) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	g.mu.Lock()
	blocked, open := g.blocked == addr, g.open
	g.mu.Unlock()
	if blocked {
		select {
		case g.waiting <- addr:
		default:
		}
		select {
		case <-open:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	d := net.Dialer{Timeout: 5 * time.Second}
	return d.DialContext(ctx, network, addr)
}

// tenantsOnTwoShards returns two tenants whose channels live on different masters of the
// cluster, and the address of the first one's master.
func tenantsOnTwoShards(t *testing.T, rdb *redis.ClusterClient) (stuck, live, stuckAddr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	master := func(tenantID string) string {
		c, err := rdb.MasterForKey(ctx, keys.Channel(tenantID, "c"))
		if err != nil {
			t.Fatalf("master of %s: %v", tenantID, err)
		}
		return c.Options().Addr
	}
	stuck, stuckAddr = "tn_0", master("tn_0")
	for i := 1; i < 100; i++ {
		tn := fmt.Sprint("tn_", i)
		if master(tn) != stuckAddr {
			return stuck, tn, stuckAddr
		}
	}
	t.Fatal("no two tenants on different masters")
	return "", "", ""
}

// A subscription that hangs on its way to Redis holds up nothing else: other channels are
// acquired and released, and their events keep coming, while it waits.
func TestHubStuckSubscribeBlocksNothingElse(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t, 3)
	gate := newDialGate()
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{cl.Nodes[0].Addr}, Dialer: gate.dial})
	t.Cleanup(func() { rdb.Close() })
	direct := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{cl.Nodes[0].Addr}})
	t.Cleanup(func() { direct.Close() })
	stuck, live, stuckAddr := tenantsOnTwoShards(t, direct)

	rec := newRecorder()
	h := NewHub(rdb, "node-test", Handlers{Deliver: rec}, quiet)
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(runCtx) }()
	t.Cleanup(func() { stop(); <-done })
	t.Cleanup(gate.unblock) // runs first: nothing may stay stuck when the hub stops

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := h.Acquire(ctx, live, "c"); err != nil {
		t.Fatal(err)
	}

	// The stuck tenant's shard gets no connection: its first subscription waits.
	gate.block(stuckAddr)
	stuckErr := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		stuckErr <- h.Acquire(ctx, stuck, "c")
	}()
	select {
	case <-gate.waiting:
	case <-time.After(10 * time.Second):
		t.Fatal("the subscription never tried to connect")
	}

	others := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := h.Acquire(ctx, live, "c"); err != nil { // held already
			others <- err
			return
		}
		h.Release(live, "c")
		if err := h.Acquire(ctx, live, "d"); err != nil { // new, on a healthy shard
			others <- err
			return
		}
		h.Release(live, "d")
		others <- nil
	}()
	select {
	case err := <-others:
		if err != nil {
			t.Fatalf("another channel, while one subscription hangs: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("acquiring and releasing other channels waited for the stuck subscription")
	}
	p := NewPublisher(direct)
	w := Window{Events: 10, Seconds: 60}
	ids := publishN(t, p, live, w, "c", 1)
	if f := rec.waitFor(t, live+"/c", 1)[0]; f.ID != ids[0] {
		t.Fatalf("delivered %+v, want event %s", f, ids[0])
	}
	select {
	case err := <-stuckErr:
		t.Fatalf("the stuck subscription returned (%v) while its shard was unreachable", err)
	default:
	}

	// Once its shard answers, the stuck subscription completes and delivers.
	gate.unblock()
	select {
	case err := <-stuckErr:
		if err != nil {
			t.Fatalf("the subscription after its shard came back: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the subscription did not complete after its shard came back")
	}
	ids = publishN(t, p, stuck, w, "c", 1)
	if f := rec.waitFor(t, stuck+"/c", 1)[0]; f.ID != ids[0] {
		t.Fatalf("delivered %+v, want event %s", f, ids[0])
	}
}

// A caller that gives up on Acquire (its deadline passes before Redis answered) costs the node
// nothing: the pub/sub connection stays up, with no reconnect and no catch-up, and carries on.
func TestHubAcquireDeadlineKeepsTheConnection(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	rec := newRecorder()
	h := startHub(t, rs, rec, nil)
	p := NewPublisher(rs.Client())
	w := Window{Events: 10, Seconds: 60}
	if err := h.Acquire(t.Context(), "tn_a", "held"); err != nil {
		t.Fatal(err)
	}
	admin := rs.Client()

	for _, tc := range []struct {
		name    string
		timeout time.Duration
		pause   bool // Redis answers nobody for a while: the deadline passes mid-wait
	}{
		{"deadline gone before the subscribe is written", time.Nanosecond, false},
		{"deadline passes while Redis does not answer", 100 * time.Millisecond, true},
	} {
		if tc.pause {
			if err := admin.Do(t.Context(), "CLIENT", "PAUSE", "1500", "ALL").Err(); err != nil {
				t.Fatal(err)
			}
		}
		ctx, cancel := context.WithTimeout(t.Context(), tc.timeout)
		err := h.Acquire(ctx, "tn_a", "late")
		cancel()
		switch {
		case err == nil:
			h.Release("tn_a", "late") // the machine was slower than Redis's pause: nothing to see
		case !errors.Is(err, context.DeadlineExceeded):
			t.Errorf("%s: err = %v, want the deadline", tc.name, err)
		}
	}

	// The abandoned subscriptions were undone once Redis answered: nothing holds the channel.
	waitNumSub(t, rs, keys.Channel("tn_a", "late"), 0)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := h.Acquire(ctx, "tn_a", "late"); err != nil {
		t.Fatalf("acquire after the abandoned ones: %v", err)
	}
	ids := publishN(t, p, "tn_a", w, "held", 1)
	ids = append(ids, publishN(t, p, "tn_a", w, "late", 1)...)
	held := rec.waitFor(t, "tn_a/held", 1)
	late := rec.waitFor(t, "tn_a/late", 1)
	if held[0].ID != ids[0] || late[0].ID != ids[1] {
		t.Fatalf("delivered %s and %s, want %v: a catch-up marker or a lost event", held[0].ID, late[0].ID, ids)
	}
	if st := h.Stats(); st.Breaks != 0 || st.Reconnects != 0 {
		t.Fatalf("stats %+v: an abandoned Acquire broke the pub/sub connection", st)
	}
}

// waitNumSub waits until Redis counts want subscribers on the pub/sub channel name.
func waitNumSub(t *testing.T, rs *redistest.Server, name string, want int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		n := numSub(t, rs, name)
		if n == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Redis counts %d subscribers on %s, want %d", n, name, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Acquires and Releases of one channel racing each other, some giving up half-way, leave the
// node subscribed exactly when someone holds the channel: one subscription in Redis, and events
// delivered.
func TestHubAcquireReleaseRaces(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	rec := newRecorder()
	h := startHub(t, rs, rec, nil)
	name := keys.Channel("tn_a", "c")

	var wg sync.WaitGroup
	errs := make(chan error, 400)
	for g := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				timeout := 10 * time.Second
				if (g+i)%3 == 0 {
					timeout = time.Duration(i) * 50 * time.Microsecond // some give up mid-way
				}
				ctx, cancel := context.WithTimeout(context.Background(), timeout)
				err := h.Acquire(ctx, "tn_a", "c")
				cancel()
				switch {
				case err == nil:
					h.Release("tn_a", "c")
				case !errors.Is(err, context.DeadlineExceeded):
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("acquire: %v", err)
	}
	waitNumSub(t, rs, name, 0)

	// Held by several at once: one subscription in Redis, one delivery per event.
	var held sync.WaitGroup
	for range 10 {
		held.Add(1)
		go func() {
			defer held.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := h.Acquire(ctx, "tn_a", "c"); err != nil {
				t.Errorf("acquire: %v", err)
			}
		}()
	}
	held.Wait()
	if n := numSub(t, rs, name); n != 1 {
		t.Fatalf("ten holders keep %d subscriptions in Redis, want 1", n)
	}
	ids := publishN(t, NewPublisher(rs.Client()), "tn_a", Window{Events: 10, Seconds: 60}, "c", 1)
	if f := rec.waitFor(t, "tn_a/c", 1); f[0].ID != ids[0] {
		t.Fatalf("delivered %+v, want event %s", f[0], ids[0])
	}
	for range 10 {
		h.Release("tn_a", "c")
	}
	waitNumSub(t, rs, name, 0)
	if st := h.Stats(); st.Breaks != 0 {
		t.Fatalf("stats %+v: the races broke the connection", st)
	}
}

// Many channels of one slot coming and going at once (every channel is in one slot on a single
// Redis): each held one is subscribed, and once all are released Redis has none of them and the
// hub has forgotten them all, however their Acquires and Releases interleaved with its passes.
func TestHubManyChannelsComeAndGo(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	h := startHub(t, rs, newRecorder(), nil)
	const channels, workers = 300, 20
	tenantChannels := func() int {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		names, err := rs.Client().PubSubChannels(ctx, keys.Channel("tn_a", "*")).Result()
		if err != nil {
			t.Fatalf("PUBSUB CHANNELS: %v", err)
		}
		return len(names)
	}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < channels; i += workers {
				ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
				ch := fmt.Sprint("c", i)
				// Each channel is taken twice and given back once, with a passing channel
				// taken and given back in between: the hub sees every kind of change.
				for range 2 {
					if err := h.Acquire(ctx, "tn_a", ch); err != nil {
						t.Errorf("acquire %s: %v", ch, err)
					}
				}
				if err := h.Acquire(ctx, "tn_a", ch+"-passing"); err != nil {
					t.Errorf("acquire %s-passing: %v", ch, err)
				}
				h.Release("tn_a", ch+"-passing")
				h.Release("tn_a", ch)
				cancel()
			}
		})
	}
	wg.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for n := tenantChannels(); n != channels; n = tenantChannels() {
		if time.Now().After(deadline) {
			t.Fatalf("Redis has %d of the tenant's channels subscribed, want the %d held", n, channels)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for i := range channels {
		h.Release("tn_a", fmt.Sprint("c", i))
	}
	forgotten := func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		return len(h.subs) == 0 && len(h.slots) == 0
	}
	for !forgotten() || tenantChannels() != 0 {
		if time.Now().After(deadline.Add(10 * time.Second)) {
			h.mu.Lock()
			n := len(h.subs)
			h.mu.Unlock()
			t.Fatalf("after every channel was released: %d still subscribed in Redis, %d known to the hub", tenantChannels(), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
