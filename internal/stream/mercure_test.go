package stream

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/streamgate/streamgate/internal/keys"
	"github.com/streamgate/streamgate/internal/redistest"
)

func TestMercureLog(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	rdb := rs.Client()
	ctx := t.Context()
	p := NewPublisher(rdb)
	h := NewHistory(rdb)
	rec := newRecorder()
	hub := startHub(t, rs, rec, nil)
	w := Window{Events: 3, Seconds: 60}

	if after, found, err := h.MercurePosition(ctx, "tn_a", MercureEarliest); err != nil || !found || after != "" {
		t.Fatalf("earliest of an empty log: %q, %v, %v", after, found, err)
	}
	if err := hub.Acquire(ctx, "tn_a", MercureChannel); err != nil {
		t.Fatal(err)
	}
	// The Mercure log shares the tenant's clock with its channels.
	publishN(t, p, "tn_a", w, "chat", 1)
	var ids []string
	for i := range 5 {
		id, err := p.PublishMercure(ctx, "tn_a", w, fmt.Sprintf("urn:u%d", i), []byte(fmt.Sprintf(`{"id":"urn:u%d","topics":["t"],"data":"%d"}`, i, i)))
		if err != nil {
			t.Fatal(err)
		}
		if _, seq := parseID(t, id); seq != int64(i+2) {
			t.Errorf("update %d has seq %d, want %d", i, seq, i+2)
		}
		ids = append(ids, id)
	}
	frames := rec.waitFor(t, "tn_a/"+MercureChannel, 5)
	for i, f := range frames {
		if f.ID != ids[i] || f.Channel != MercureChannel || !f.Message || string(f.Body) != fmt.Sprintf(`{"id":"urn:u%d","topics":["t"],"data":"%d"}`, i, i) {
			t.Errorf("live frame %d: %+v %q; want the update as stored", i, f, f.Body)
		}
	}
	if n, _ := rdb.XLen(ctx, keys.History("tn_a", MercureChannel)).Result(); n != 3 {
		t.Errorf("the log holds %d updates, want the window's 3", n)
	}

	for _, tc := range []struct {
		last  string
		after string
		found bool
	}{
		{"urn:u4", ids[4], true},
		{"urn:u2", ids[2], true},
		{"urn:u1", "", false}, // trimmed by count: its index entry outlives it
		{"urn:unknown", "", false},
		{MercureEarliest, before(ids[2]), true},
	} {
		after, found, err := h.MercurePosition(ctx, "tn_a", tc.last)
		if err != nil || after != tc.after || found != tc.found {
			t.Errorf("MercurePosition(%s) = %q, %v, %v; want %q, %v", tc.last, after, found, err, tc.after, tc.found)
		}
	}
	// A replay from earliest is the whole log and no gap; from a found id, what follows it.
	after, _, _ := h.MercurePosition(ctx, "tn_a", MercureEarliest)
	snap, err := h.Snapshot(ctx, "tn_a", []string{MercureChannel}, after, w, false)
	if err != nil || snap.Gap {
		t.Fatalf("snapshot from earliest: %+v, %v; want no gap", snap, err)
	}
	entries, _, err := h.Read(ctx, "tn_a", []string{MercureChannel}, after, snap.LastID, 100)
	if err != nil || len(entries) != 3 || entries[0].ID != ids[2] || entries[2].ID != ids[4] {
		t.Errorf("replay from earliest: %+v, %v", entries, err)
	}
	entries, _, _ = h.Read(ctx, "tn_a", []string{MercureChannel}, ids[3], snap.LastID, 100)
	if len(entries) != 1 || entries[0].ID != ids[4] || entries[0].Kind != "mercure" {
		t.Errorf("replay after urn:u3: %+v", entries)
	}
	if snap, _ := h.Snapshot(ctx, "tn_a", []string{MercureChannel}, ids[0], w, false); !snap.Gap {
		t.Error("a snapshot after a trimmed update reports no gap")
	}
	// Another tenant's log is its own.
	if _, found, _ := h.MercurePosition(ctx, "tn_b", "urn:u4"); found {
		t.Error("tenant b finds tenant a's update")
	}
}

type occupancyLog struct {
	mu     sync.Mutex
	events []string
}

func (o *occupancyLog) Occupied(tenantID, channel string) { o.add("+" + tenantID + "/" + channel) }
func (o *occupancyLog) Vacated(tenantID, channel string)  { o.add("-" + tenantID + "/" + channel) }
func (o *occupancyLog) add(e string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.events = append(o.events, e)
}

// The Mercure channel is the hub's own: holding it occupies no channel of the tenant's.
func TestMercureChannelOccupiesNothing(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	occ := &occupancyLog{}
	h := NewHub(rs.Client(), "node-test", Handlers{Deliver: newRecorder(), Occupancy: occ}, quiet)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	for _, ch := range []string{MercureChannel, "chat"} {
		if err := h.Acquire(t.Context(), "tn_a", ch); err != nil {
			t.Fatal(err)
		}
		h.Release("tn_a", ch)
	}
	occ.mu.Lock()
	defer occ.mu.Unlock()
	if got := strings.Join(occ.events, " "); got != "+tn_a/chat -tn_a/chat" {
		t.Errorf("occupancy heard %q, want the chat channel only", got)
	}
}
