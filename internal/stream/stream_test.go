package stream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
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

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func publishN(t *testing.T, p *Publisher, tenantID string, w Window, channel string, n int) []string {
	t.Helper()
	var ids []string
	for i := range n {
		res, err := p.Publish(t.Context(), tenantID, w, ratelimit.Rate{}, []Event{{Channel: channel, Event: "e", Data: json.RawMessage(strconv.Itoa(i))}}, "")
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, res.IDs...)
	}
	return ids
}

func parseID(t *testing.T, id string) (ms, seq int64) {
	t.Helper()
	a, b, ok := strings.Cut(id, "-")
	ms, err1 := strconv.ParseInt(a, 10, 64)
	seq, err2 := strconv.ParseInt(b, 10, 64)
	if !ok || err1 != nil || err2 != nil {
		t.Fatalf("id %q is not <ms>-<seq>", id)
	}
	return ms, seq
}

func TestPublishIDsAreOrderedAcrossChannels(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Client()
	p := NewPublisher(rdb)
	w := Window{Events: 100, Seconds: 60}
	var all []string
	for i := range 30 {
		all = append(all, publishN(t, p, "tn_a", w, fmt.Sprintf("ch%d", i%3), 1)...)
	}
	for i, id := range all {
		_, seq := parseID(t, id)
		if seq != int64(i+1) {
			t.Fatalf("event %d has seq %d, want %d: the tenant's counter orders every channel", i, seq, i+1)
		}
	}
	// Another tenant has its own counter.
	other := publishN(t, p, "tn_b", w, "ch0", 1)
	if _, seq := parseID(t, other[0]); seq != 1 {
		t.Errorf("tenant b's first seq %d, want 1", seq)
	}
	n, err := p.Published(t.Context(), "tn_a")
	if err != nil || n != 30 {
		t.Errorf("Published = %d, %v; want 30", n, err)
	}
}

func TestPublishKeepsHistoryWindow(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Client()
	p := NewPublisher(rdb)
	ids := publishN(t, p, "tn_a", Window{Events: 5, Seconds: 60}, "c", 12)
	entries, err := rdb.XRange(t.Context(), keys.History("tn_a", "c"), "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 5 {
		t.Fatalf("history holds %d entries, want the last 5", len(entries))
	}
	for i, e := range entries {
		if e.ID != ids[7+i] || e.Values["k"] != streamgate.EventMessage {
			t.Errorf("entry %d = %s %v, want %s", i, e.ID, e.Values, ids[7+i])
		}
		var m messageData
		if err := json.Unmarshal([]byte(e.Values["d"].(string)), &m); err != nil || m.Channel != "c" || string(m.Data) != strconv.Itoa(7+i) {
			t.Errorf("entry %d payload %v (%v)", i, e.Values["d"], err)
		}
	}
	ttl, err := rdb.PTTL(t.Context(), keys.History("tn_a", "c")).Result()
	// The window of 60 s plus the linger of max(window, 1 h).
	if err != nil || ttl <= time.Hour || ttl > time.Hour+time.Minute {
		t.Errorf("history ttl %s, want the window plus an hour", ttl)
	}
}

func TestPublishTrimsByAge(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Client()
	p := NewPublisher(rdb)
	publishN(t, p, "tn_a", Window{Events: 100, Seconds: 1}, "c", 3)
	time.Sleep(1100 * time.Millisecond)
	publishN(t, p, "tn_a", Window{Events: 100, Seconds: 1}, "c", 1)
	n, err := rdb.XLen(t.Context(), keys.History("tn_a", "c")).Result()
	if err != nil || n != 1 {
		t.Fatalf("history length %d (%v), want only the fresh event", n, err)
	}
}

func TestIdempotentPublish(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Client()
	p := NewPublisher(rdb)
	w := Window{Events: 100, Seconds: 60}
	ev := []Event{{Channel: "c", Event: "e", Data: json.RawMessage(`1`)}, {Channel: "d", Event: "e", Data: json.RawMessage(`2`)}}
	first, err := p.Publish(t.Context(), "tn_a", w, ratelimit.Rate{}, ev, "k1")
	if err != nil || first.Duplicate {
		t.Fatal(first, err)
	}
	again, err := p.Publish(t.Context(), "tn_a", w, ratelimit.Rate{}, ev, "k1")
	if err != nil || !again.Duplicate || strings.Join(again.IDs, ",") != strings.Join(first.IDs, ",") {
		t.Fatalf("retry = %+v, %v; want duplicate with ids %v", again, err, first.IDs)
	}
	if n, _ := p.Published(t.Context(), "tn_a"); n != 2 {
		t.Errorf("published %d events, want 2 (the retry adds none)", n)
	}
	// The same key with other events is a client bug, not a retry: refused, nothing stored.
	for _, other := range [][]Event{
		{ev[0]},
		{ev[0], {Channel: "d", Event: "e", Data: json.RawMessage(`3`)}},
		{ev[0], {Channel: "d", Event: "f", Data: json.RawMessage(`2`)}},
	} {
		if _, err := p.Publish(t.Context(), "tn_a", w, ratelimit.Rate{}, other, "k1"); !errors.Is(err, ErrIdempotencyMismatch) {
			t.Errorf("reuse with %v: err = %v, want a mismatch", other, err)
		}
	}
	if n, _ := p.Published(t.Context(), "tn_a"); n != 2 {
		t.Errorf("published %d events after refused reuses, want 2", n)
	}
}

func TestPositionAndEpoch(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Client()
	p := NewPublisher(rdb)
	h := NewHistory(rdb)
	w := Window{Events: 10, Seconds: 60}
	snap, err := h.Snapshot(t.Context(), "tn_a", nil, "", w, false)
	if err != nil || snap.LastID != "0-0" || len(snap.Epoch) != 8 {
		t.Fatalf("fresh position %+v %v", snap, err)
	}
	ids := publishN(t, p, "tn_a", w, "c", 3)
	snap2, err := h.Snapshot(t.Context(), "tn_a", nil, "", w, false)
	if err != nil || snap2.Epoch != snap.Epoch || snap2.LastID != ids[2] || snap2.Seq != 3 {
		t.Fatalf("position %+v, want epoch %q and last %q", snap2, snap.Epoch, ids[2])
	}
	// Losing the counter (Redis lost data) gives a new epoch, so old cursors can be told apart.
	rdb.Del(t.Context(), keys.Sequence("tn_a"))
	snap3, _ := h.Snapshot(t.Context(), "tn_a", nil, "", w, false)
	if snap3.Epoch == snap.Epoch {
		t.Errorf("epoch unchanged after the counter was lost")
	}
}

// recorder is a Deliverer that keeps what it is handed.
type recorder struct {
	mu     sync.Mutex
	frames map[string][]*streamgate.Frame // tenant/channel → frames
	got    chan struct{}
}

func newRecorder() *recorder {
	return &recorder{frames: map[string][]*streamgate.Frame{}, got: make(chan struct{}, 1024)}
}

func (r *recorder) Broadcast(tenantID, channel string, f *streamgate.Frame) int {
	r.mu.Lock()
	r.frames[tenantID+"/"+channel] = append(r.frames[tenantID+"/"+channel], f)
	r.mu.Unlock()
	select {
	case r.got <- struct{}{}:
	default: // a wake-up is pending already: waitFor counts again
	}
	return 1
}

func (r *recorder) count(key string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.frames[key])
}

func (r *recorder) waitFor(t *testing.T, key string, n int) []*streamgate.Frame {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for r.count(key) < n {
		select {
		case <-r.got:
		case <-deadline:
			t.Fatalf("%s: %d frames, want %d", key, r.count(key), n)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*streamgate.Frame(nil), r.frames[key]...)
}

func startHub(t *testing.T, rs *redistest.Server, d Deliverer, control func([]byte)) *Hub {
	t.Helper()
	h := NewHub(rs.Client(), "node-test", Handlers{Deliver: d, Control: control}, quiet)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("hub Run: %v", err)
		}
	})
	return h
}

func TestHubDeliversOnlyAcquiredChannels(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	rec := newRecorder()
	h := startHub(t, rs, rec, nil)
	p := NewPublisher(rs.Client())
	w := Window{Events: 10, Seconds: 60}

	if err := h.Acquire(t.Context(), "tn_a", "c"); err != nil {
		t.Fatal(err)
	}
	// Acquire returned: Redis confirmed, so this publish must arrive.
	ids := publishN(t, p, "tn_a", w, "c", 1)
	publishN(t, p, "tn_b", w, "c", 1) // same name, other tenant: not acquired
	publishN(t, p, "tn_a", w, "d", 1) // other channel: not acquired
	frames := rec.waitFor(t, "tn_a/c", 1)
	f := frames[0]
	if f.ID != ids[0] || !f.Message || !strings.HasPrefix(string(f.Body), ids[0]+"\nevent: message\ndata: {") || !strings.HasSuffix(string(f.Body), "}\n\n") {
		t.Errorf("frame %q id %q, want the event's SSE encoding", f.Body, f.ID)
	}
	time.Sleep(100 * time.Millisecond)
	if rec.count("tn_b/c") != 0 || rec.count("tn_a/d") != 0 {
		t.Errorf("hub delivered channels it did not acquire")
	}
}

func TestHubReferenceCounting(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	rec := newRecorder()
	h := startHub(t, rs, rec, nil)
	p := NewPublisher(rs.Client())
	w := Window{Events: 10, Seconds: 60}

	for range 2 {
		if err := h.Acquire(t.Context(), "tn_a", "c"); err != nil {
			t.Fatal(err)
		}
	}
	if n := numSub(t, rs, keys.Channel("tn_a", "c")); n != 1 {
		t.Fatalf("two acquires of one channel hold %d subscriptions in Redis, want 1", n)
	}
	h.Release("tn_a", "c")
	publishN(t, p, "tn_a", w, "c", 1)
	rec.waitFor(t, "tn_a/c", 1) // one reference left: still subscribed

	h.Release("tn_a", "c")
	// Redis sees no subscriber any more.
	deadline := time.Now().Add(5 * time.Second)
	for numSub(t, rs, keys.Channel("tn_a", "c")) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("Redis still counts a subscriber after the last release")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// numSub is how many connections Redis counts on a pub/sub channel.
func numSub(t *testing.T, rs *redistest.Server, name string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	n, err := rs.Client().PubSubNumSub(ctx, name).Result()
	if err != nil {
		t.Fatalf("PUBSUB NUMSUB: %v", err)
	}
	return n[name]
}

func TestHubResubscribesAfterRedisRestart(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	rec := newRecorder()
	var controls sync.Map
	h := startHub(t, rs, rec, func(b []byte) { controls.Store(string(b), true) })
	if err := h.Acquire(t.Context(), "tn_a", "c"); err != nil {
		t.Fatal(err)
	}
	rs.Restart()

	// Without any call from us, the hub's subscriptions come back: keep publishing until one
	// arrives.
	p := NewPublisher(rs.Client())
	deadline := time.Now().Add(15 * time.Second)
	for rec.count("tn_a/c") == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no delivery after Redis restarted: the subscription was not re-established")
		}
		_, _ = p.Publish(t.Context(), "tn_a", Window{Events: 10, Seconds: 60}, ratelimit.Rate{}, []Event{{Channel: "c", Event: "e", Data: json.RawMessage(`1`)}}, "")
		time.Sleep(100 * time.Millisecond)
	}
	// The control channel came back too.
	for {
		rs.Client().Publish(t.Context(), keys.Control(), "hello")
		if _, ok := controls.Load("hello"); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("control channel not re-established")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestEncodeFrameRejectsMalformedPayloads(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{"", "no-newline", "id\nkind-only", "not-an-id\nmessage\n{}", "\nbad kind\n{}", "\n\n{}"} {
		if _, ok := EncodeFrame("c", bad); ok {
			t.Errorf("EncodeFrame(%q) accepted", bad)
		}
	}
	f, ok := EncodeFrame("c", "1-1\njob\n{\"a\":1}")
	if !ok || string(f.Body) != "1-1\nevent: job\ndata: {\"a\":1}\n\n" || f.ID != "1-1" || f.Seq != 1 || f.Channel != "c" {
		t.Errorf("EncodeFrame = %q %v", f.Body, ok)
	}
	// Without an id: a live event that carries no cursor and is never skipped.
	f, ok = EncodeFrame("room", "\npresence\n{\"action\":\"join\"}")
	if !ok || string(f.Body) != "event: presence\ndata: {\"action\":\"join\"}\n\n" || f.ID != "" || f.Seq != 0 || f.Channel != "room" || f.Message {
		t.Errorf("EncodeFrame without an id = %+v %v", f, ok)
	}
}

func TestHashSlotMatchesRedis(t *testing.T) {
	t.Parallel()
	// Values from CLUSTER KEYSLOT on Redis 7.
	for key, want := range map[string]int{"foo": 12182, "{user1000}.following": 3443, "sg:{tn_a}:ch:x": hashSlot("tn_a"), "a{}b": hashSlot("a{}b")} {
		if got := hashSlot(key); got != want {
			t.Errorf("hashSlot(%q) = %d, want %d", key, got, want)
		}
	}
	rdb := redistest.Start(t).Client()
	for _, key := range []string{"foo", "sg:{tn_abc}:ch:chat", "{x}y", "sg:{updates:3}", "no-tag"} {
		want, err := rdb.Do(t.Context(), "CLUSTER", "KEYSLOT", key).Int()
		if err != nil {
			t.Skip("this Redis has no CLUSTER KEYSLOT outside cluster mode")
		}
		if got := hashSlot(key); got != want {
			t.Errorf("hashSlot(%q) = %d, Redis says %d", key, got, want)
		}
	}
}

// A publish whose answer is lost after the script ran is retried by the Redis client; the
// retry must not store the events twice.
func TestPublishRetriedByTheClientIsStoredOnce(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	direct := srv.Client()
	w := Window{Events: 100, Seconds: 60}
	// Load the script first, so that the publish below is one EVALSHA.
	if _, err := NewPublisher(direct).Publish(t.Context(), "tn_warm", w, ratelimit.Rate{}, []Event{{Channel: "c", Event: "e", Data: json.RawMessage(`0`)}}, ""); err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: redistest.LossyProxy(t, srv.Addr, "evalsha"), MaxRetries: 1, ReadTimeout: 5 * time.Second})
	t.Cleanup(func() { rdb.Close() })
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	// A rate of one: the retry, had it been counted, would go over it.
	rate := ratelimit.Rate{Limit: 1, Period: time.Hour}
	res, err := NewPublisher(rdb).Publish(ctx, "tn_a", w, rate, []Event{{Channel: "c", Event: "e", Data: json.RawMessage(`1`)}}, "")
	if err != nil {
		t.Fatalf("publish through a lost answer: %v", err)
	}
	n, err := direct.XLen(ctx, keys.History("tn_a", "c")).Result()
	if err != nil || n != 1 {
		t.Fatalf("history holds %d events (%v), want 1: the retry stored it again", n, err)
	}
	if len(res.IDs) != 1 {
		t.Fatalf("ids %v", res.IDs)
	}
	if count, err := direct.Get(ctx, keys.RateLimitPublishFull("tn_a")).Int(); err != nil || count != 1 {
		t.Errorf("publish rate count %d (%v), want 1: the retry was counted again", count, err)
	}
}

// stallingProxy forwards connections to addr until stall is called: from then on the
// connections open at that moment carry nothing either way and stay open (a half-open link),
// while new connections work.
func stallingProxy(t *testing.T, addr string) (proxyAddr string, stall func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var mu sync.Mutex
	var stalled []*atomic.Bool
	pipe := func(dst, src net.Conn, dead *atomic.Bool) {
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if dead.Load() {
				continue // swallowed; the link stays open but carries nothing
			}
			if n > 0 {
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				dst.Close()
				return
			}
		}
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", addr)
			if err != nil {
				c.Close()
				continue
			}
			dead := &atomic.Bool{}
			mu.Lock()
			stalled = append(stalled, dead)
			mu.Unlock()
			t.Cleanup(func() { c.Close(); s.Close() })
			go pipe(s, c, dead)
			go pipe(c, s, dead)
		}
	}()
	return ln.Addr().String(), func() {
		mu.Lock()
		defer mu.Unlock()
		for _, d := range stalled {
			d.Store(true)
		}
	}
}

// A pub/sub connection that stops answering without being closed is noticed by the keepalive,
// replaced, and followed by catch-up: new events arrive again.
func TestHubReplacesAHalfOpenConnection(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	addr, stall := stallingProxy(t, rs.Addr)
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { rdb.Close() })
	rec := newRecorder()
	h := NewHub(rdb, "node-test", Handlers{Deliver: rec}, quiet, WithKeepalive(200*time.Millisecond, 300*time.Millisecond))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	if err := h.Acquire(t.Context(), "tn_a", "c"); err != nil {
		t.Fatal(err)
	}
	if st := h.Stats(); st != (HubStats{}) {
		t.Errorf("stats before any fault: %+v, want zero", st)
	}
	stall()
	select {
	case <-h.Reconnected():
	case <-time.After(20 * time.Second):
		t.Fatal("the half-open pub/sub connection was never replaced")
	}
	// What the metrics report: one break of the one connection, and its return.
	if st := h.Stats(); st.Breaks != 1 || st.Reconnects != 1 {
		t.Errorf("stats after the reconnect: %+v, want 1 break and 1 reconnect", st)
	}
	// The streams were told to catch up, and live events flow on the new connection.
	frames := rec.waitFor(t, "tn_a/c", 1)
	if !frames[0].Resync {
		t.Errorf("first frame after the reconnect is not the catch-up marker: %+v", frames[0])
	}
	p := NewPublisher(rs.Client())
	ids := publishN(t, p, "tn_a", Window{Events: 10, Seconds: 60}, "c", 1)
	frames = rec.waitFor(t, "tn_a/c", 2)
	if frames[1].ID != ids[0] {
		t.Errorf("after the reconnect got %+v, want event %s", frames[1], ids[0])
	}
}
