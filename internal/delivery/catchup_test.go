package delivery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	streamgate "github.com/streamgate/streamgate"
	"github.com/streamgate/streamgate/internal/session"
	"github.com/streamgate/streamgate/internal/stream"
)

// countingHistory is the real history, counting its reads and how many run at once. Each read
// is held a moment, so that reads free to overlap do.
type countingHistory struct {
	History
	reads, inFlight, maxInFlight atomic.Int64
}

func (h *countingHistory) enter() func() {
	h.reads.Add(1)
	n := h.inFlight.Add(1)
	for {
		m := h.maxInFlight.Load()
		if n <= m || h.maxInFlight.CompareAndSwap(m, n) {
			break
		}
	}
	time.Sleep(5 * time.Millisecond)
	return func() { h.inFlight.Add(-1) }
}

func (h *countingHistory) Snapshot(ctx context.Context, tenantID string, channels []string, after string, w stream.Window, states bool) (stream.Snapshot, error) {
	defer h.enter()()
	return h.History.Snapshot(ctx, tenantID, channels, after, w, states)
}

func (h *countingHistory) Read(ctx context.Context, tenantID string, channels []string, after, upto string, limit int) ([]stream.Entry, bool, error) {
	defer h.enter()()
	return h.History.Read(ctx, tenantID, channels, after, upto, limit)
}

// heldSink holds a stream's writes until released: a client that reads nothing meanwhile.
type heldSink struct {
	Sink
	release chan struct{}
}

func (s heldSink) WriteBatch(pieces [][]byte) error {
	<-s.release
	return s.Sink.WriteBatch(pieces)
}

// startHub runs a real hub for the fixture's node on a Redis client whose new connections are
// refused while down is set: a pub/sub connection that breaks then stays broken.
func (f *fixture) startHub(down *atomic.Bool) *stream.Hub {
	f.t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: f.rs.Addr, Dialer: func(ctx context.Context, network, addr string) (net.Conn, error) {
		if down.Load() {
			return nil, errors.New("connection refused (test)")
		}
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}})
	f.t.Cleanup(func() { rdb.Close() })
	hub := stream.NewHub(rdb, "node-a", stream.Handlers{Deliver: f.reg}, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- hub.Run(ctx) }()
	f.t.Cleanup(func() { cancel(); <-done })
	return hub
}

// A pub/sub reconnect reaches every stream of a busy node at once. Each gets every event it
// missed, once and in order, and then live events again; yet the node reads each channel's
// history once for all its streams, a few reads at a time. A stream whose buffer was full when
// the reconnect came catches up as well, instead of losing the marker or being evicted for it.
func TestCatchUpHerdSharesReads(t *testing.T) {
	t.Parallel()
	const (
		onMain   = 200 // streams on channel "main"
		channels = 8   // other channels "c0"…, with perSide streams each
		perSide  = 2
		missed   = 3
		buffer   = 16
	)
	f := newFixture(t, defaultLimits())
	f.reg = session.NewRegistry("node-a", session.Config{BufferSize: buffer})
	var down atomic.Bool
	hub := f.startHub(&down)
	history := &countingHistory{History: stream.NewHistory(f.rdb)}
	f.svc = f.service(Config{NodeID: "node-a", catchUpReads: 2, catchUpLinger: time.Minute}, hub, history)

	type watcher struct {
		channel string
		c       *client
	}
	var (
		watchers []watcher
		names    = []string{"main"}
	)
	open := func(channel string, wrap func(Sink) Sink) *client {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		st, err := f.svc.Open(ctx, Request{Claims: f.claims("u", time.Now().Add(time.Hour), "*"), Tenant: f.tenant, Channels: []string{channel}})
		if err != nil {
			t.Fatalf("open: %v", err)
		}
		return serveTo(t, st, wrap)
	}
	for range onMain {
		watchers = append(watchers, watcher{"main", open("main", func(s Sink) Sink { return s })})
	}
	for i := range channels {
		ch := fmt.Sprint("c", i)
		names = append(names, ch)
		for range perSide {
			watchers = append(watchers, watcher{ch, open(ch, func(s Sink) Sink { return s })})
		}
	}
	// One more on main whose client reads nothing for now: its buffer fills up.
	release := make(chan struct{})
	slow := open("main", func(s Sink) Sink { return heldSink{s, release} })
	for _, w := range watchers {
		w.c.expect(streamgate.EventConnected)
	}

	// Live before the break: as many events on main as the slow stream's buffer holds.
	before := map[string][]string{"main": f.publish(false, "main", buffer)}
	for _, ch := range names[1:] {
		before[ch] = f.publish(false, ch, 1)
	}
	for _, w := range watchers {
		for _, id := range before[w.channel] {
			w.c.expectID(id)
		}
	}

	// The pub/sub connection breaks and stays down while events are published.
	breaks := hub.Stats().Breaks
	down.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := f.rdb.Do(ctx, "CLIENT", "KILL", "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	for hub.Stats().Breaks == breaks {
		if ctx.Err() != nil {
			t.Fatal("the hub did not notice its connection was killed")
		}
		time.Sleep(10 * time.Millisecond)
	}
	gap := map[string][]string{}
	for _, ch := range names {
		gap[ch] = f.publish(false, ch, missed)
	}
	readsBefore := history.reads.Load()
	down.Store(false)
	select {
	case <-hub.Reconnected():
	case <-ctx.Done():
		t.Fatal("the hub did not reconnect")
	}

	// The slow stream's client starts reading: full when the marker came, it catches up too.
	close(release)
	slow.expect(streamgate.EventConnected)
	for _, id := range append(before["main"], gap["main"]...) {
		slow.expectID(id)
	}

	// Every stream catches up, then takes live events again.
	after := map[string][]string{}
	for _, ch := range names {
		after[ch] = f.publish(false, ch, 1)
	}
	for _, w := range watchers {
		for _, id := range append(gap[w.channel], after[w.channel]...) {
			w.c.expectID(id)
		}
	}
	// Nothing twice, nothing after: the next event is the next one published.
	slow.expectID(after["main"][0])
	next := f.publish(false, "main", 1)
	slow.expectID(next[0])
	watchers[0].c.expectID(next[0])

	reads := history.reads.Load() - readsBefore
	if max := int64(2 * len(names)); reads > max {
		t.Errorf("%d streams caught up with %d history reads, want at most %d (a position and a read per channel)", len(watchers)+1, reads, max)
	}
	if n := history.maxInFlight.Load(); n > 2 {
		t.Errorf("%d history reads ran at once, want at most 2", n)
	}
	if info := f.reg.TenantStats(f.tenant.ID); info.Dropped != 0 || info.Evicted != 0 {
		t.Errorf("stats %+v: the reconnect cost drops or evictions", info)
	}
}

// expectID reads the next event and checks that it is the message with event id id.
func (c *client) expectID(id string) {
	c.t.Helper()
	ev := c.next()
	if ev.Event != streamgate.EventMessage || !strings.HasSuffix(ev.ID, ":"+id) {
		c.t.Fatalf("got %s %q (%s), want event %s", ev.Event, ev.ID, ev.Data, id)
	}
}

// Streams that stand at different places share a channel's read all the same, and each writes
// exactly what it missed, merged across its channels in the order of publication: one that
// also follows another channel stands further on than one that does not.
func TestCatchUpFromDifferentPositions(t *testing.T) {
	t.Parallel()
	f := newFixture(t, defaultLimits())
	claims := f.claims("u", time.Now().Add(time.Hour), "*")
	_, x := f.open(claims, "", "a")
	_, y := f.open(claims, "", "a", "b")
	x.expect(streamgate.EventConnected)
	y.expect(streamgate.EventConnected)
	a1 := f.publish(true, "a", 1)
	b1 := f.publish(true, "b", 1)
	x.expectID(a1[0])
	y.expectID(a1[0])
	y.expectID(b1[0])

	// Lost while the hub was reconnecting, interleaved over the two channels.
	lost := append(append(f.publish(false, "a", 1), f.publish(false, "b", 1)...), f.publish(false, "a", 1)...)
	marker := &streamgate.Frame{Resync: true}
	f.reg.Broadcast(f.tenant.ID, "a", marker)
	f.reg.Broadcast(f.tenant.ID, "b", marker)
	x.expectID(lost[0])
	x.expectID(lost[2])
	for _, id := range lost {
		y.expectID(id)
	}
	next := f.publish(true, "a", 1)
	x.expectID(next[0])
	y.expectID(next[0])
}

// A gap that history no longer holds (trimmed before the stream could read it) ends the stream
// with a reconnectable disconnect, so that its client resumes and is told to reset.
func TestCatchUpPastTheWindowDisconnects(t *testing.T) {
	t.Parallel()
	limits := defaultLimits()
	limits.HistoryEvents = 2
	f := newFixture(t, limits)
	_, c := f.open(f.claims("u", time.Now().Add(time.Hour), "*"), "", "a")
	c.expect(streamgate.EventConnected)
	c.expectID(f.publish(true, "a", 1)[0])
	f.publish(false, "a", 3) // one more than the window keeps
	f.reg.Broadcast(f.tenant.ID, "a", &streamgate.Frame{Resync: true})
	ev := c.expect(streamgate.EventDisconnect)[0]
	if !strings.Contains(ev.Data, streamgate.ReasonMissedEvents) || !strings.Contains(ev.Data, `"reconnect":true`) {
		t.Fatalf("disconnect %s, want %q with reconnect", ev.Data, streamgate.ReasonMissedEvents)
	}
	c.ended()
}

// One channel's read serves any position: a stream further back than the first reader reads
// only what lies below it, and after that nobody reads again.
func TestCatchUpReadGrowsBackwards(t *testing.T) {
	t.Parallel()
	f := newFixture(t, defaultLimits())
	ids := f.publish(false, "a", 6)
	history := &countingHistory{History: stream.NewHistory(f.rdb)}
	reads := newCatchUps(2, time.Minute)
	marker := &streamgate.Frame{Resync: true}
	w := Window(f.tenant)
	at := func(i int) (string, uint64) {
		_, seq, _ := stream.ParseID(ids[i])
		return ids[i], seq
	}
	for _, tc := range []struct {
		name  string
		from  int // the stream has everything up to ids[from]
		reads int64
	}{
		{"first reader", 3, 2}, // the position and the events since
		{"further back", 1, 2}, // a gap check, and the events between
		{"in between", 2, 0},   // all known
		{"as far back", 1, 0},  // all known
		{"further on", 4, 0},   // all known
	} {
		before := history.reads.Load()
		from, fromSeq := at(tc.from)
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		parts, gap, err := reads.read(ctx, history, f.tenant.ID, []string{"a"}, marker, from, fromSeq, w)
		cancel()
		if err != nil || gap {
			t.Fatalf("%s: gap %v, %v", tc.name, gap, err)
		}
		var got []string
		for _, e := range parts[0].entries {
			got = append(got, e.ID)
		}
		if want := ids[tc.from+1:]; strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("%s: entries %v, want %v", tc.name, got, want)
		}
		if n := history.reads.Load() - before; n != tc.reads {
			t.Errorf("%s: %d reads, want %d", tc.name, n, tc.reads)
		}
	}
}

// A stream on many channels that nobody else reads catches up in one position and one read,
// all channels pipelined; a stream on some of them at the same place then reads nothing.
func TestCatchUpOfManyChannelsReadsOnce(t *testing.T) {
	t.Parallel()
	f := newFixture(t, defaultLimits())
	start := f.publish(false, "c0", 1)[0]
	channels := []string{"c0", "c1", "c2", "c3", "c4"}
	var missed []string
	for range 2 {
		for _, ch := range channels {
			missed = append(missed, f.publish(false, ch, 1)...)
		}
	}
	history := &countingHistory{History: stream.NewHistory(f.rdb)}
	reads := newCatchUps(2, time.Minute)
	marker := &streamgate.Frame{Resync: true}
	_, seq, _ := stream.ParseID(start)
	for _, tc := range []struct {
		name     string
		channels []string
		reads    int64
	}{
		{"all five", channels, 2},
		{"two of them", []string{"c1", "c3"}, 0},
	} {
		before := history.reads.Load()
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		parts, gap, err := reads.read(ctx, history, f.tenant.ID, tc.channels, marker, start, seq, Window(f.tenant))
		cancel()
		if err != nil || gap {
			t.Fatalf("%s: gap %v, %v", tc.name, gap, err)
		}
		for i, ch := range tc.channels {
			var got, want []string
			for _, e := range parts[i].entries {
				got = append(got, e.ID)
			}
			for j, id := range missed {
				if channels[j%len(channels)] == ch {
					want = append(want, id)
				}
			}
			if strings.Join(got, ",") != strings.Join(want, ",") {
				t.Errorf("%s: %s has %v, want %v", tc.name, ch, got, want)
			}
		}
		if n := history.reads.Load() - before; n != tc.reads {
			t.Errorf("%s: %d reads, want %d", tc.name, n, tc.reads)
		}
	}
}
