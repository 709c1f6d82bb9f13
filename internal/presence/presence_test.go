package presence

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamgate/streamgate/internal/keys"
	"github.com/streamgate/streamgate/internal/redistest"
)

const wait = 10 * time.Second

// recorder collects the changes a tracker reports.
type recorder struct {
	mu  sync.Mutex
	got []string
}

func (r *recorder) add(c Change) {
	r.mu.Lock()
	defer r.mu.Unlock()
	action := "leave"
	if c.Join {
		action = "join"
	}
	r.got = append(r.got, fmt.Sprintf("%s %s %s %s", action, c.Channel, c.Sub, c.Info))
}

func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.got
	r.got = nil
	return out
}

func newTracker(t *testing.T, rdb redis.UniversalClient, node string, lease time.Duration) (*Tracker, *recorder) {
	t.Helper()
	rec := &recorder{}
	return New(rdb, Config{NodeID: node, Lease: lease, OnChange: rec.add}, slog.New(slog.DiscardHandler)), rec
}

// events subscribes to a channel's live events as a node's hub would, and returns what arrives.
func events(t *testing.T, rdb *redis.Client, tenantID, channel string) func(n int) []string {
	t.Helper()
	ps := rdb.Subscribe(t.Context(), keys.Channel(tenantID, channel))
	if _, err := ps.Receive(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ps.Close() })
	return func(n int) []string {
		t.Helper()
		var out []string
		for range n {
			ctx, cancel := context.WithTimeout(t.Context(), wait)
			m, err := ps.ReceiveMessage(ctx)
			cancel()
			if err != nil {
				t.Fatalf("waiting for a presence event: %v (got %v)", err, out)
			}
			body, ok := strings.CutPrefix(m.Payload, "\npresence\n")
			if !ok {
				t.Fatalf("payload %q is not a presence event", m.Payload)
			}
			var ev struct {
				Channel, Action, Sub string
				Info                 json.RawMessage
			}
			if err := json.Unmarshal([]byte(body), &ev); err != nil || ev.Channel != channel {
				t.Fatalf("event %s: %v", body, err)
			}
			out = append(out, ev.Action+" "+ev.Sub+" "+string(ev.Info))
		}
		return out
	}
}

func read(t *testing.T, tr *Tracker, tenantID, channel string, limit int) List {
	t.Helper()
	l, err := tr.Read(t.Context(), tenantID, channel, limit)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func summary(l List) string {
	var out []string
	for _, m := range l.Members {
		out = append(out, fmt.Sprintf("%s×%d %s", m.Sub, m.Sessions, m.Info))
	}
	return fmt.Sprintf("%d: %s", l.Count, strings.Join(out, ", "))
}

func TestUsersJoinOnceAndLeaveWithTheirLastSession(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Client()
	a, recA := newTracker(t, rdb, "node-a", time.Minute)
	b, recB := newTracker(t, rdb, "node-b", time.Minute)
	ctx := t.Context()
	next := events(t, rdb, "tn_1", "room")

	a.Join(ctx, "tn_1", "ada", json.RawMessage(`{"name":"Ada"}`), []string{"room", "lobby"})
	a.Join(ctx, "tn_1", "ada", json.RawMessage(`{"name":"Ada L."}`), []string{"room"}) // a second tab
	b.Join(ctx, "tn_1", "ada", nil, []string{"room"})                                  // a third, on another node
	time.Sleep(2 * time.Millisecond)                                                   // joined_at has millisecond resolution
	b.Join(ctx, "tn_1", "bob", nil, []string{"room"})
	if got := next(2); !slices.Equal(got, []string{`join ada {"name":"Ada"}`, "join bob null"}) {
		t.Fatalf("events %v, want one join per user", got)
	}
	if got := summary(read(t, b, "tn_1", "room", 10)); got != `2: ada×3 null, bob×1 null` {
		t.Fatalf("members %s", got)
	}
	if got := recA.take(); !slices.Equal(got, []string{`join room ada {"name":"Ada"}`, `join lobby ada {"name":"Ada"}`}) {
		t.Fatalf("node a reported %v", got)
	}
	if got := recB.take(); !slices.Equal(got, []string{"join room bob null"}) {
		t.Fatalf("node b reported %v", got)
	}

	a.Leave(ctx, "tn_1", "ada", []string{"room"})
	a.Leave(ctx, "tn_1", "ada", []string{"room"})
	if got := summary(read(t, a, "tn_1", "room", 10)); got != `2: ada×1 null, bob×1 null` {
		t.Fatalf("after two of three tabs closed: %s", got)
	}
	b.Leave(ctx, "tn_1", "ada", []string{"room"})
	if got := next(1); !slices.Equal(got, []string{"leave ada null"}) {
		t.Fatalf("events %v, want ada's leave", got)
	}
	if got := recB.take(); !slices.Equal(got, []string{"leave room ada null"}) {
		t.Fatalf("node b reported %v", got)
	}
	counts, err := a.Totals(ctx, "tn_1", "tn_2")
	if err != nil || counts["tn_1"] != (Totals{Channels: 2, Members: 2}) || counts["tn_2"] != (Totals{}) {
		t.Fatalf("totals %v (%v), want bob in room and ada in lobby", counts, err)
	}
	a.Leave(ctx, "tn_1", "ada", []string{"lobby"})
	b.Leave(ctx, "tn_1", "bob", []string{"room"})
	if counts, _ := a.Totals(ctx, "tn_1"); counts["tn_1"] != (Totals{}) {
		t.Fatalf("totals %+v after everyone left", counts["tn_1"])
	}
	if got := next(1); !slices.Equal(got, []string{"leave bob null"}) {
		t.Fatalf("events %v", got)
	}
}

func TestReadOrderLimitAndTruncation(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Client()
	tr, _ := newTracker(t, rdb, "node-a", time.Minute)
	for _, sub := range []string{"carol", "bob", "alice"} {
		tr.Join(t.Context(), "tn_1", sub, nil, []string{"room"})
		time.Sleep(2 * time.Millisecond)
	}
	l := read(t, tr, "tn_1", "room", 2)
	if got := summary(l); got != "3: carol×1 null, bob×1 null" || !l.Truncated {
		t.Fatalf("read %s truncated %v, want the first two to join, truncated", got, l.Truncated)
	}
	if l.Members[0].JoinedAt.After(l.Members[1].JoinedAt) || time.Since(l.Members[0].JoinedAt) > time.Minute {
		t.Fatalf("joined_at %v", l.Members)
	}
	if l := read(t, tr, "tn_1", "none", 2); l.Count != 0 || len(l.Members) != 0 || l.Truncated {
		t.Fatalf("a channel without members: %+v", l)
	}
	if l := read(t, tr, "tn_2", "room", 2); l.Count != 0 {
		t.Fatalf("another tenant's channel of the same name has %d members", l.Count)
	}
}

func busiest(t *testing.T, tr *Tracker, tenantID string, limit int) string {
	t.Helper()
	b, err := tr.Busiest(t.Context(), tenantID, limit)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, c := range b.Channels {
		out = append(out, fmt.Sprintf("%s %d", c.Channel, c.Members))
	}
	return fmt.Sprintf("%d channels, %d members: %s", b.Totals.Channels, b.Totals.Members, strings.Join(out, ", "))
}

// The busiest channels come first, ties by name; the totals count every channel and member
// whatever the limit, and follow users' sessions on every node.
func TestBusiestChannels(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Client()
	a, _ := newTracker(t, rdb, "node-a", time.Minute)
	b, _ := newTracker(t, rdb, "node-b", time.Minute)
	ctx := t.Context()
	if got := busiest(t, a, "tn_1", 3); got != "0 channels, 0 members: " {
		t.Fatalf("before anyone joined: %s", got)
	}
	a.Join(ctx, "tn_1", "ada", nil, []string{"b.room", "c.room", "a.room", "d.room"})
	a.Join(ctx, "tn_1", "bob", nil, []string{"c.room", "d.room"})
	b.Join(ctx, "tn_1", "bob", nil, []string{"c.room"}) // a second session: still one member
	b.Join(ctx, "tn_1", "cy", nil, []string{"d.room"})
	a.Join(ctx, "tn_2", "zed", nil, []string{"a.room"})
	if got := busiest(t, a, "tn_1", 3); got != "4 channels, 7 members: d.room 3, c.room 2, a.room 1" {
		t.Fatalf("busiest %s", got)
	}
	a.Leave(ctx, "tn_1", "bob", []string{"c.room"}) // bob keeps his session on node b
	b.Leave(ctx, "tn_1", "cy", []string{"d.room"})
	a.Leave(ctx, "tn_1", "ada", []string{"a.room"})
	if got := busiest(t, b, "tn_1", 10); got != "3 channels, 5 members: c.room 2, d.room 2, b.room 1" {
		t.Fatalf("after some left: %s", got)
	}
	totals, err := a.Totals(ctx, "tn_1", "tn_2", "tn_3")
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]Totals{"tn_1": {3, 5}, "tn_2": {1, 1}, "tn_3": {}}; !maps.Equal(totals, want) {
		t.Fatalf("totals %v, want %v", totals, want)
	}
	a.Leave(ctx, "tn_1", "ada", []string{"b.room", "c.room", "d.room"})
	a.Leave(ctx, "tn_1", "bob", []string{"d.room"})
	b.Leave(ctx, "tn_1", "bob", []string{"c.room"})
	if got := busiest(t, a, "tn_1", 10); got != "0 channels, 0 members: " {
		t.Fatalf("after everyone left: %s", got)
	}
	if n, err := rdb.Exists(ctx, keys.PresenceChannels("tn_1"), keys.PresenceCount("tn_1")).Result(); err != nil || n != 0 {
		t.Fatalf("%d index keys left behind (%v)", n, err)
	}
}

// endLease makes the leases of node's holders in a tenant end now, as if the node had not
// renewed them for a whole lease, and returns the holders.
func endLease(t *testing.T, rdb *redis.Client, tenantID, node string) []string {
	t.Helper()
	ctx := t.Context()
	leases, err := rdb.HKeys(ctx, keys.PresenceLeases(tenantID)).Result()
	if err != nil {
		t.Fatal(err)
	}
	var holders []string
	for _, h := range leases {
		if strings.HasPrefix(h, node+"~") {
			holders = append(holders, h)
			rdb.HSet(ctx, keys.PresenceLeases(tenantID), h, 0)
			rdb.ZAdd(ctx, keys.PresenceLeaseIndex(), redis.Z{Score: 0, Member: tenantID + "\n" + h})
		}
	}
	if len(holders) == 0 {
		t.Fatalf("%s holds no lease in %s", node, tenantID)
	}
	return holders
}

// A dead node's members leave once its lease has ended: a live node takes back what it held,
// and users with sessions elsewhere stay.
func TestDeadNodesMembersAreReaped(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Client()
	dead, _ := newTracker(t, rdb, "node-dead", time.Minute)
	live, rec := newTracker(t, rdb, "node-live", time.Minute)
	ctx := t.Context()
	next := events(t, rdb, "tn_1", "room")

	for i := range 450 { // more than one reap batch
		dead.Join(ctx, "tn_1", fmt.Sprintf("u%03d", i), nil, []string{"room"})
	}
	live.Join(ctx, "tn_1", "u000", nil, []string{"room"})
	next(450)
	// A lease that the index lists as ended but that was renewed meanwhile is not reaped.
	liveHolder := endLease(t, rdb, "tn_1", "node-live")[0]
	if err := rdb.HSet(ctx, keys.PresenceLeases("tn_1"), liveHolder, time.Now().Add(time.Minute).UnixMilli()).Err(); err != nil {
		t.Fatal(err)
	}
	if n, err := live.Reap(ctx); n != 0 || err != nil {
		t.Fatalf("reaped %d leases (%v), want none: the only ended one was renewed", n, err)
	}
	if held, err := rdb.HGet(ctx, keys.PresenceHolder("tn_1", liveHolder), "room\nu000").Result(); err != nil || held != "1" {
		t.Fatalf("a running lease was reaped: the live node holds %q (%v) of u000", held, err)
	}

	endLease(t, rdb, "tn_1", "node-dead")
	if n, err := live.Reap(ctx); n != 1 || err != nil {
		t.Fatalf("reaped %d leases (%v), want the dead node's", n, err)
	}
	if got := summary(read(t, live, "tn_1", "room", 10)); got != "1: u000×1 null" {
		t.Fatalf("after the reap: %s", got)
	}
	if got := busiest(t, live, "tn_1", 10); got != "1 channels, 1 members: room 1" {
		t.Fatalf("after the reap: %s", got)
	}
	if got := len(next(449)); got != 449 {
		t.Fatalf("%d leave events, want 449", got)
	}
	if got := rec.take(); len(got) != 449 || !slices.Contains(got, "leave room u449 null") || slices.Contains(got, "leave room u000 null") {
		t.Fatalf("the reaping node reported %d changes, want the 449 leaves", len(got))
	}
	// Nothing of the dead node is left: its entries, its lease, its place in the index.
	held, _ := rdb.Keys(ctx, keys.PresenceHolder("tn_1", "node-dead*")).Result()
	leases, _ := rdb.HKeys(ctx, keys.PresenceLeases("tn_1")).Result()
	indexed, _ := rdb.ZRange(ctx, keys.PresenceLeaseIndex(), 0, -1).Result()
	if len(held) != 0 || !slices.Equal(leases, []string{liveHolder}) || len(indexed) != 1 {
		t.Fatalf("left behind: holders %v, leases %v, index %v", held, leases, indexed)
	}
}

// A node whose lease ended while it lived (a long pause, Redis unreachable) counts its members
// anew under a new holder; the old holder is reaped without anyone leaving.
func TestLostLeaseIsCountedAnew(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Client()
	tr, rec := newTracker(t, rdb, "node-a", time.Minute)
	ctx := t.Context()
	tr.Join(ctx, "tn_1", "ada", nil, []string{"room"})
	tr.Join(ctx, "tn_1", "ada", nil, []string{"room"})
	tr.Join(ctx, "tn_1", "bob", nil, []string{"room"})
	rec.take()
	old := endLease(t, rdb, "tn_1", "node-a")[0]

	tr.Leave(ctx, "tn_1", "bob", []string{"room"}) // refused by Redis: the holder's lease ended
	if err := tr.Renew(ctx); err != nil {
		t.Fatal(err)
	}
	if n, err := tr.Reap(ctx); n != 1 || err != nil {
		t.Fatalf("reaped %d leases (%v), want the old holder's", n, err)
	}
	if got := summary(read(t, tr, "tn_1", "room", 10)); got != "1: ada×2 null" {
		t.Fatalf("after the recount: %s", got)
	}
	if got := busiest(t, tr, "tn_1", 10); got != "1 channels, 1 members: room 1" {
		t.Fatalf("after the recount: %s", got)
	}
	if got := rec.take(); !slices.Equal(got, []string{"leave room bob null"}) {
		t.Fatalf("changes %v, want bob's leave alone", got)
	}
	if leases, _ := rdb.HKeys(ctx, keys.PresenceLeases("tn_1")).Result(); len(leases) != 1 || leases[0] == old {
		t.Fatalf("leases %v, want one new holder", leases)
	}
}

func TestBeyondMaxEventMembersNoEvents(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Client()
	tr, _ := newTracker(t, rdb, "node-a", time.Minute)
	ctx := t.Context()
	next := events(t, rdb, "tn_1", "big")
	for i := range MaxEventMembers {
		tr.Join(ctx, "tn_1", fmt.Sprintf("u%04d", i), nil, []string{"big"})
	}
	next(MaxEventMembers)
	tr.Join(ctx, "tn_1", "late", nil, []string{"big"}) // member 1,001: no event
	tr.Leave(ctx, "tn_1", "late", []string{"big"})     // leaving from 1,001: no event
	tr.Leave(ctx, "tn_1", "u0000", []string{"big"})    // leaving from 1,000: an event
	if got := next(1); !slices.Equal(got, []string{"leave u0000 null"}) {
		t.Fatalf("events %v, want only u0000's leave", got)
	}
	if l := read(t, tr, "tn_1", "big", MaxRead); l.Count != MaxEventMembers-1 {
		t.Fatalf("count %d", l.Count)
	}
}

func TestScriptsComeBackAfterAFlush(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Client()
	tr, _ := newTracker(t, rdb, "node-a", time.Minute)
	ctx := t.Context()
	tr.Join(ctx, "tn_1", "ada", nil, []string{"room"})
	if err := rdb.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	tr.Join(ctx, "tn_1", "bob", nil, []string{"room"})
	if got := summary(read(t, tr, "tn_1", "room", 10)); !strings.HasPrefix(got, "2:") {
		t.Fatalf("after a script flush: %s", got)
	}
	if err := rdb.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if err := tr.Renew(ctx); err != nil {
		t.Fatal(err)
	}
}
