package stream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	streamgate "github.com/streamgate/streamgate"
	"github.com/streamgate/streamgate/internal/keys"
	"github.com/streamgate/streamgate/internal/ratelimit"
	"github.com/streamgate/streamgate/internal/redistest"
)

// clusterClient is a client of the cluster, closed when the test ends.
func clusterClient(t *testing.T, cl *redistest.Cluster) *redis.ClusterClient {
	t.Helper()
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{cl.Nodes[0].Addr}})
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

// startClusterHub runs a hub on the cluster, stopped when the test ends.
func startClusterHub(t *testing.T, rdb *redis.ClusterClient, d Deliverer) *Hub {
	t.Helper()
	h := NewHub(rdb, "node-test", Handlers{Deliver: d}, quiet)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return h
}

// tenantOn returns a tenant, named from prefix, whose slot is served by master (or, with
// other set, by any other master), and that slot.
func tenantOn(t *testing.T, cl *redistest.Cluster, prefix string, master *redistest.Server, other bool) (string, int) {
	t.Helper()
	for i := range 1000 {
		tn := fmt.Sprint(prefix, i)
		slot := hashSlot(keys.Channel(tn, "a"))
		if (cl.MasterOf(t, slot) == master) != other {
			return tn, slot
		}
	}
	t.Fatalf("no tenant on %s", master.Addr)
	return "", 0
}

// pubsubClients counts the pub/sub connections each master has.
func pubsubClients(t *testing.T, cl *redistest.Cluster) []int {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	var n []int
	for _, s := range cl.Nodes {
		list, err := s.Client().ClientList(ctx).Result()
		if err != nil {
			t.Fatal(err)
		}
		c := 0
		for _, line := range strings.Split(list, "\n") {
			// A pub/sub connection: subscribed to channels (sub=), or to shard channels (ssub=).
			if strings.Contains(line, " flags=P ") {
				c++
			}
		}
		n = append(n, c)
	}
	return n
}

// A hub holding channels in slots all over a cluster keeps one sharded pub/sub connection per
// master, not one per slot; after those connections are killed it subscribes each slot again
// (go-redis's own resubscription names channels of many slots at once, which Redis refuses),
// and every channel delivers again.
func TestHubOneConnectionPerMaster(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t, 3)
	rdb := clusterClient(t, cl)
	rec := newRecorder()
	h := startClusterHub(t, rdb, rec)
	p := NewPublisher(rdb)
	w := Window{Events: 100, Seconds: 60}

	const tenants = 60
	slots := map[int]bool{}
	for i := range tenants {
		tn := fmt.Sprint("tn_", i)
		slots[hashSlot(keys.Channel(tn, "a"))] = true
		for _, ch := range []string{"a", "b"} {
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			err := h.Acquire(ctx, tn, ch)
			cancel()
			if err != nil {
				t.Fatalf("acquire %s/%s: %v", tn, ch, err)
			}
		}
	}
	if len(slots) < 50 {
		t.Fatalf("the tenants share %d slots: not spread enough to tell", len(slots))
	}
	if n := h.Stats().ShardConns; n != 3 {
		t.Fatalf("the hub holds %d sharded connections for channels in %d slots, want one per master (3)", n, len(slots))
	}
	// One each, plus the connection of the control and node channels on one of them.
	total := 0
	for _, n := range pubsubClients(t, cl) {
		if n < 1 {
			t.Fatalf("pub/sub connections per master %v: one has none", pubsubClients(t, cl))
		}
		total += n
	}
	if total != 4 {
		t.Fatalf("the masters count %d pub/sub connections (%v), want 4", total, pubsubClients(t, cl))
	}

	deliversAll := func(round int) {
		t.Helper()
		for i := range tenants {
			tn := fmt.Sprint("tn_", i)
			for _, ch := range []string{"a", "b"} {
				ids := publishN(t, p, tn, w, ch, 1)
				var live []string
				for _, f := range rec.waitFor(t, tn+"/"+ch, round+1) {
					if !f.Resync {
						live = append(live, f.ID)
					}
				}
				if len(live) != round+1 || live[round] != ids[0] {
					t.Fatalf("round %d, %s/%s: delivered %v, want event %s last", round, tn, ch, live, ids[0])
				}
			}
		}
	}
	deliversAll(0)

	// Every master drops the hub's connections.
	reconnects := h.Stats().Reconnects
	for _, s := range cl.Nodes {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		err := s.Client().Do(ctx, "CLIENT", "KILL", "TYPE", "pubsub").Err()
		cancel()
		if err != nil {
			t.Fatal(err)
		}
	}
	// Each channel hears of the catch-up once its slot is subscribed again.
	for i := range tenants {
		for _, ch := range []string{"a", "b"} {
			key := fmt.Sprint("tn_", i, "/", ch)
			deadline := time.Now().Add(20 * time.Second)
			for !hasResync(rec, key) {
				if time.Now().After(deadline) {
					t.Fatalf("%s: no catch-up after the reconnect (stats %+v)", key, h.Stats())
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
	}
	if st := h.Stats(); st.Reconnects-reconnects < 3 || st.ShardConns != 3 {
		t.Fatalf("stats %+v after every master dropped the hub: want 3 reconnects more than %d, 3 connections", st, reconnects)
	}
	// The marker counts as a frame of its own.
	for i := range tenants {
		for _, ch := range []string{"a", "b"} {
			rec.mu.Lock()
			key := fmt.Sprint("tn_", i, "/", ch)
			n := len(rec.frames[key])
			rec.mu.Unlock()
			if n != 2 {
				t.Fatalf("%s: %d frames before round 1, want an event and a marker", key, n)
			}
		}
	}
	deliversAllAfter := func() {
		t.Helper()
		for i := range tenants {
			tn := fmt.Sprint("tn_", i)
			for _, ch := range []string{"a", "b"} {
				ids := publishN(t, p, tn, w, ch, 1)
				frames := rec.waitFor(t, tn+"/"+ch, 3)
				if f := frames[2]; f.ID != ids[0] {
					t.Fatalf("after the reconnect, %s/%s: delivered %+v, want event %s", tn, ch, f, ids[0])
				}
			}
		}
	}
	deliversAllAfter()

	// Released, the channels take their connections with them.
	for i := range tenants {
		h.Release(fmt.Sprint("tn_", i), "a")
		h.Release(fmt.Sprint("tn_", i), "b")
	}
	deadline := time.Now().Add(10 * time.Second)
	for h.Stats().ShardConns != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d sharded connections left with no channel held", h.Stats().ShardConns)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func hasResync(r *recorder, key string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, f := range r.frames[key] {
		if f.Resync {
			return true
		}
	}
	return false
}

// published is what a test's publisher sent, in order, and the markers seen when each was sent.
type published struct {
	mu     sync.Mutex
	ids    map[string][]string // channel → ids, in order
	after  map[string]bool     // id → published once its channel's catch-up marker was seen
	errors []error
}

// publishUntil publishes events on the tenant's channels in turn until stop closes; the ids go
// to out. markerSeen reports whether the hub already delivered a marker for a channel.
func publishUntil(p *Publisher, tenantID string, channels []string, stop <-chan struct{}, out *published, markerSeen func(channel string) bool) {
	w := Window{Events: 10000, Seconds: 600}
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		default:
		}
		ch := channels[i%len(channels)]
		seen := markerSeen != nil && markerSeen(ch)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		res, err := p.Publish(ctx, tenantID, w, ratelimit.Rate{}, []Event{{Channel: ch, Event: "e", Data: json.RawMessage(strconv.Itoa(i))}}, "")
		cancel()
		out.mu.Lock()
		if err != nil {
			out.errors = append(out.errors, err)
		} else {
			out.ids[ch] = append(out.ids[ch], res.IDs[0])
			if seen {
				out.after[res.IDs[0]] = true
			}
		}
		out.mu.Unlock()
		time.Sleep(time.Millisecond)
	}
}

// A tenant's slot moves to another master while its channels are live and events keep coming.
// The hub follows the slot: its channels are subscribed at the new master, their streams are
// told to catch up, and every event is either delivered live, in order and once, or lies in
// the stretch the catch-up reads from history; events published once the marker was out all
// arrive live. A channel of another slot on the same master notices nothing, and subscribing
// goes on working.
func TestHubFollowsSlotMove(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t, 3)
	rdb := clusterClient(t, cl)
	rec := newRecorder()
	h := startClusterHub(t, rdb, rec)
	p := NewPublisher(rdb)

	from := cl.Nodes[0]
	moving, slot := tenantOn(t, cl, "tn_move_", from, false)
	staying, _ := tenantOn(t, cl, "tn_stay_", from, false)
	if hashSlot(keys.Channel(staying, "a")) == slot {
		t.Fatal("both tenants share a slot")
	}
	to := cl.Nodes[1]
	channels := []string{"a", "b"}
	for _, tn := range []string{moving, staying} {
		for _, ch := range channels {
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			err := h.Acquire(ctx, tn, ch)
			cancel()
			if err != nil {
				t.Fatal(err)
			}
		}
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	outs := map[string]*published{}
	for _, tn := range []string{moving, staying} {
		out := &published{ids: map[string][]string{}, after: map[string]bool{}}
		outs[tn] = out
		wg.Add(1)
		go func() {
			defer wg.Done()
			publishUntil(p, tn, channels, stop, out, func(ch string) bool { return hasResync(rec, tn+"/"+ch) })
		}()
	}
	stopped := false
	stopPublishing := func() {
		if !stopped {
			stopped = true
			close(stop)
			wg.Wait()
		}
	}
	defer stopPublishing()

	// Some events before, during (the slot's keys move a few at a time) and after the move.
	waitPublished := func(n int) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			out := outs[moving]
			out.mu.Lock()
			got := len(out.ids["a"]) + len(out.ids["b"])
			out.mu.Unlock()
			if got >= n {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("only %d events published", got)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitPublished(30)
	cl.MoveSlot(t, slot, to, redistest.MoveOptions{Batch: 4, During: func(int) { time.Sleep(5 * time.Millisecond) }})
	deadline := time.Now().Add(20 * time.Second)
	for !hasResync(rec, moving+"/a") || !hasResync(rec, moving+"/b") {
		if time.Now().After(deadline) {
			t.Fatalf("no catch-up marker after the slot moved (stats %+v)", h.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
	out := outs[moving]
	out.mu.Lock()
	n := len(out.ids["a"]) + len(out.ids["b"])
	out.mu.Unlock()
	waitPublished(n + 30)
	stopPublishing()

	// Both tenants were on one master; now each has its own.
	if st := h.Stats(); st.Moves != 1 || st.ShardConns != 2 {
		t.Errorf("stats %+v: want one move, and a connection to each master", st)
	}
	for _, tn := range []string{moving, staying} {
		out := outs[tn]
		if len(out.errors) > 0 {
			t.Errorf("%s: %d publishes failed, the first: %v", tn, len(out.errors), out.errors[0])
		}
		for _, ch := range channels {
			ids := out.ids[ch]
			frames := waitForID(t, rec, tn+"/"+ch, ids[len(ids)-1])
			checkLive(t, tn+"/"+ch, ids, frames, out.after, tn == moving)
		}
	}

	// New subscriptions in the moved slot go to its new master.
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := h.Acquire(ctx, moving, "c"); err != nil {
		t.Fatalf("acquire after the move: %v", err)
	}
	ids := publishN(t, p, moving, Window{Events: 10000, Seconds: 600}, "c", 1)
	if f := rec.waitFor(t, moving+"/c", 1); f[0].ID != ids[0] {
		t.Fatalf("after the move, delivered %+v, want event %s", f[0], ids[0])
	}
}

// checkLive checks what the hub delivered on one channel against what was published there:
// live events in order and never twice; before a catch-up marker, a gapless prefix of the
// events; after it, only events above that prefix, and among them every event published once
// the marker was seen (after). Without a move (moved false) there is no marker and no gap.
func checkLive(t *testing.T, key string, ids []string, frames []*streamgate.Frame, after map[string]bool, moved bool) {
	t.Helper()
	var live []string
	markers, prefix := 0, -1
	for _, f := range frames {
		if f.Resync {
			markers++
			if prefix < 0 {
				prefix = len(live)
			}
			continue
		}
		live = append(live, f.ID)
	}
	if !moved {
		if markers > 0 || strings.Join(live, ",") != strings.Join(ids, ",") {
			t.Errorf("%s, not moved: %d markers, %d of %d events live", key, markers, len(live), len(ids))
		}
		return
	}
	if markers != 1 {
		t.Errorf("%s: %d catch-up markers, want 1", key, markers)
	}
	if prefix < 0 {
		return
	}
	for i := range prefix {
		if i >= len(ids) || live[i] != ids[i] {
			t.Fatalf("%s: before the marker, live event %d is %s, want %v…", key, i, live[i], ids[:min(i+1, len(ids))])
		}
	}
	// After the marker: in order, above the prefix, and all of those published after it.
	pos := 0
	got := map[string]bool{}
	for _, id := range live[prefix:] {
		j := indexOf(ids, id)
		if j < prefix || j < pos {
			t.Fatalf("%s: live event %s after the marker is out of order (index %d, after %d)", key, id, j, max(pos, prefix))
		}
		pos = j + 1
		got[id] = true
	}
	for _, id := range ids[prefix:] {
		if after[id] && !got[id] {
			t.Errorf("%s: event %s, published after the marker was out, was not delivered live", key, id)
		}
	}
	if len(live) == prefix {
		t.Errorf("%s: nothing delivered live after the marker", key)
	}
}

// waitForID waits until the hub delivered event id on key, and returns what it delivered there
// by then.
func waitForID(t *testing.T, r *recorder, key, id string) []*streamgate.Frame {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		r.mu.Lock()
		frames := append([]*streamgate.Frame(nil), r.frames[key]...)
		r.mu.Unlock()
		for _, f := range frames {
			if f.ID == id {
				return frames
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: event %s not delivered (%d frames)", key, id, len(frames))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func indexOf(ids []string, id string) int {
	for i, x := range ids {
		if x == id {
			return i
		}
	}
	return -1
}

// tryAgains counts the commands that Redis Cluster refused, after go-redis's own redirections
// and retries, because their slot was moving.
type tryAgains struct{ n atomic.Int64 }

func (c *tryAgains) DialHook(next redis.DialHook) redis.DialHook { return next }
func (c *tryAgains) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if SlotMoving(err) {
			c.n.Add(1)
		}
		return err
	}
}
func (c *tryAgains) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// Publishes made while their tenant's slot moves between masters succeed: Redis refuses the
// publish script while the slot's keys are split between the two, and it is run again until
// the move ends. Each is stored once.
func TestPublishDuringSlotMove(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t, 3)
	rdb := clusterClient(t, cl)
	refused := &tryAgains{}
	rdb.AddHook(refused)
	p := NewPublisher(rdb)

	tn, slot := tenantOn(t, cl, "tn_pub_", cl.Nodes[0], false)
	initial := publishN(t, p, tn, Window{Events: 10000, Seconds: 600}, "a", 20) // keys to move

	stop := make(chan struct{})
	out := &published{ids: map[string][]string{}, after: map[string]bool{}}
	var attempts atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		publishUntil(p, tn, []string{"a", "b"}, stop, out, func(string) bool { attempts.Add(1); return false })
	}()
	// The slot stays split until publishes have been refused for it.
	cl.MoveSlot(t, slot, cl.Nodes[2], redistest.MoveOptions{Batch: 5, During: func(moved int) {
		if moved > 0 {
			return
		}
		deadline := time.Now().Add(10 * time.Second)
		for refused.n.Load() < 3 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
	}})
	n := attempts.Load()
	for attempts.Load() < n+10 {
		time.Sleep(time.Millisecond)
	}
	close(stop)
	<-done

	if refused.n.Load() < 3 {
		t.Fatalf("Redis refused %d publishes while the slot moved: the test did not publish during the move", refused.n.Load())
	}
	if len(out.errors) > 0 {
		t.Fatalf("%d publishes failed during the move, the first: %v", len(out.errors), out.errors[0])
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	total := int64(len(initial) + len(out.ids["a"]) + len(out.ids["b"]))
	if got, err := p.Published(ctx, tn); err != nil || got != total {
		t.Fatalf("the tenant counts %d events (%v), want %d", got, err, total)
	}
	for _, ch := range []string{"a", "b"} {
		entries, err := rdb.XRange(ctx, keys.History(tn, ch), "-", "+").Result()
		if err != nil {
			t.Fatal(err)
		}
		want := out.ids[ch]
		if ch == "a" {
			want = append(initial, want...)
		}
		var got []string
		for _, e := range entries {
			got = append(got, e.ID)
		}
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Fatalf("history of %s holds %d entries, want the %d published, each once", ch, len(got), len(want))
		}
	}
	if cl.MasterOf(t, slot) != cl.Nodes[2] {
		t.Fatal("the slot did not move")
	}
}

// A slot that moves away from a master the node cannot reach follows its new master without
// waiting for the old one: its streams catch up and take live events again. The slots left on
// the unreachable master come back when it does.
func TestHubSlotMovesWhileMasterUnreachable(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t, 3)
	from := cl.Nodes[0]
	// While down is set, connecting to from is refused.
	var down atomic.Bool
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		if down.Load() && addr == from.Addr {
			return nil, errors.New("connection refused (test)")
		}
		d := net.Dialer{Timeout: 5 * time.Second}
		return d.DialContext(ctx, network, addr)
	}
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{cl.Nodes[1].Addr}, Dialer: dial})
	t.Cleanup(func() { rdb.Close() })
	direct := clusterClient(t, cl)
	rec := newRecorder()
	h := startClusterHub(t, rdb, rec)
	p := NewPublisher(direct)
	w := Window{Events: 1000, Seconds: 600}

	moving, slot := tenantOn(t, cl, "tn_move_", from, false)
	staying, _ := tenantOn(t, cl, "tn_stay_", from, false)
	for _, tn := range []string{moving, staying} {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		err := h.Acquire(ctx, tn, "a")
		cancel()
		if err != nil {
			t.Fatal(err)
		}
	}
	before := publishN(t, p, moving, w, "a", 1)
	waitForID(t, rec, moving+"/a", before[0])

	// The node loses its connection to the master, and cannot make another.
	down.Store(true)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := from.Client().Do(ctx, "CLIENT", "KILL", "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	missed := publishN(t, p, moving, w, "a", 3)
	cl.MoveSlot(t, slot, cl.Nodes[1], redistest.MoveOptions{})

	// The moved slot's channel comes back on its new master while the old one stays out of reach.
	deadline := time.Now().Add(30 * time.Second)
	for !hasResync(rec, moving+"/a") {
		if time.Now().After(deadline) {
			t.Fatalf("no catch-up for the moved slot while its old master is unreachable (stats %+v)", h.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
	live := publishN(t, p, moving, w, "a", 1)
	frames := waitForID(t, rec, moving+"/a", live[0])
	var got []string
	for _, f := range frames {
		if !f.Resync {
			got = append(got, f.ID)
		}
	}
	if strings.Join(got, ",") != strings.Join(append(before, live...), ",") {
		t.Fatalf("delivered %v live, want %v (and %v from history)", got, append(before, live...), missed)
	}
	if hasResync(rec, staying+"/a") {
		t.Fatal("the slot left on the unreachable master caught up before the master answered")
	}

	// The old master answers again: the slot left there catches up and is live again.
	down.Store(false)
	deadline = time.Now().Add(30 * time.Second)
	for !hasResync(rec, staying+"/a") {
		if time.Now().After(deadline) {
			t.Fatalf("no catch-up for the slot on the master that came back (stats %+v)", h.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
	ids := publishN(t, p, staying, w, "a", 1)
	waitForID(t, rec, staying+"/a", ids[0])
}
