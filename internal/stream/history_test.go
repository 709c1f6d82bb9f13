package stream

import (
	"encoding/json"
	streamgate "github.com/streamgate/streamgate"
	"github.com/streamgate/streamgate/internal/keys"
	"github.com/streamgate/streamgate/internal/ratelimit"
	"github.com/streamgate/streamgate/internal/redistest"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestHistoryReadMergesChannelsInOrder(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Client()
	p := NewPublisher(rdb)
	h := NewHistory(rdb)
	w := Window{Events: 100, Seconds: 60}
	var ids []string
	for i := range 25 {
		res, err := p.Publish(t.Context(), "tn_a", w, ratelimit.Rate{}, []Event{{Channel: []string{"a", "b", "c"}[i%3], Event: "e", Data: json.RawMessage(strconv.Itoa(i))}}, "")
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, res.IDs[0])
	}
	// Replay (ids[4], ids[20]] of channels a and b, in pages of 3.
	var got []string
	after := ids[4]
	for {
		entries, more, err := h.Read(t.Context(), "tn_a", []string{"a", "b"}, after, ids[20], 3)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			var m messageData
			if err := json.Unmarshal([]byte(e.Data), &m); err != nil || e.Kind != streamgate.EventMessage || e.Channel != m.Channel {
				t.Fatalf("entry %+v (%v)", e, err)
			}
			got = append(got, string(m.Data))
		}
		if !more || len(entries) == 0 {
			break
		}
		after = entries[len(entries)-1].ID
	}
	// Events 5..20 of channels a (i%3==0) and b (i%3==1), in publish order, each once.
	var want []string
	for i := 5; i <= 20; i++ {
		if i%3 != 2 {
			want = append(want, strconv.Itoa(i))
		}
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("replay %v, want %v", got, want)
	}
}

func TestSnapshotReportsGapsExactly(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Client()
	p := NewPublisher(rdb)
	h := NewHistory(rdb)
	w := Window{Events: 3, Seconds: 60}
	pub := func(ch string) string {
		t.Helper()
		res, err := p.Publish(t.Context(), "tn_a", w, ratelimit.Rate{}, []Event{{Channel: ch, Event: "e", Data: json.RawMessage(`1`)}}, "")
		if err != nil {
			t.Fatal(err)
		}
		return res.IDs[0]
	}
	c1 := pub("busy")
	pub("quiet")
	c2 := pub("busy")
	for range 3 {
		pub("busy") // busy now holds its last 3: c1 and c2 are trimmed, nothing after c2
	}
	for _, tc := range []struct {
		name     string
		channels []string
		after    string
		gap      bool
	}{
		{"busy from c1: trimmed events after it", []string{"busy"}, c1, true},
		{"busy from c2: everything after it is kept", []string{"busy"}, c2, false},
		{"quiet from c1: nothing of quiet was trimmed", []string{"quiet"}, c1, false},
		{"both from c1", []string{"quiet", "busy"}, c1, true},
		{"never published channel", []string{"none"}, c1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			snap, err := h.Snapshot(t.Context(), "tn_a", tc.channels, tc.after, w, false)
			if err != nil {
				t.Fatal(err)
			}
			if snap.Gap != tc.gap {
				t.Errorf("gap %v, want %v", snap.Gap, tc.gap)
			}
		})
	}
	// The newest event is still replayable from the one before it.
	entries, _, err := h.Read(t.Context(), "tn_a", []string{"busy"}, "0-0", "99999999999999-0", 10)
	if err != nil || len(entries) != 3 {
		t.Fatalf("busy holds %d entries (%v), want its window of 3", len(entries), err)
	}
	snap, _ := h.Snapshot(t.Context(), "tn_a", []string{"busy"}, entries[0].ID, w, false)
	if snap.Gap {
		t.Errorf("a cursor at the oldest kept entry reported a gap")
	}
}

// A session on a quiet channel resumes without a reset after longer than the window while the
// tenant publishes elsewhere: the quiet log's absence only means "unknown" for cursors older
// than window + linger.
func TestQuietChannelResumesWithoutGap(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Client()
	p := NewPublisher(rdb)
	h := NewHistory(rdb)
	w := Window{Events: 100, Seconds: 60}
	pub := func(ch string) string {
		t.Helper()
		res, err := p.Publish(t.Context(), "tn_a", w, ratelimit.Rate{}, []Event{{Channel: ch, Event: "e", Data: json.RawMessage(`1`)}}, "")
		if err != nil {
			t.Fatal(err)
		}
		return res.IDs[0]
	}
	cursor := pub("quiet")
	pub("busy")
	if ttl := rdb.PTTL(t.Context(), keys.History("tn_a", "quiet")).Val(); ttl < time.Hour {
		t.Fatalf("a quiet log lives %v, want at least window + 1 h", ttl)
	}
	// The quiet log expired whole (as it will, window + linger after its last event).
	rdb.Del(t.Context(), keys.History("tn_a", "quiet"))
	ms, _, _ := ParseID(cursor)
	at := func(d time.Duration) func() time.Time {
		return func() time.Time { return time.UnixMilli(int64(ms)).Add(d) }
	}
	for _, tc := range []struct {
		since time.Duration
		gap   bool
	}{
		{2 * time.Minute, false},          // past the 60 s window, well inside the linger
		{59 * time.Minute, false},         // still inside window + linger
		{time.Hour + 2*time.Minute, true}, // older than the log could live: unknown
	} {
		h.now = at(tc.since)
		snap, err := h.Snapshot(t.Context(), "tn_a", []string{"quiet"}, cursor, w, false)
		if err != nil {
			t.Fatal(err)
		}
		if snap.Gap != tc.gap {
			t.Errorf("resume %v after the cursor: gap %v, want %v", tc.since, snap.Gap, tc.gap)
		}
	}
}
