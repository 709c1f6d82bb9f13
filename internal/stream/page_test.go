package stream

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/streamgate/streamgate/internal/ratelimit"
	"github.com/streamgate/streamgate/internal/redistest"
)

func TestPageReadsOneChannelAndReportsTruncation(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Client()
	p := NewPublisher(rdb)
	h := NewHistory(rdb)
	w := Window{Events: 4, Seconds: 60}
	var busy []string
	pub := func(ch string, n int) string {
		t.Helper()
		res, err := p.Publish(t.Context(), "tn_a", w, ratelimit.Rate{}, []Event{{Channel: ch, Event: "tick", Data: json.RawMessage(strconv.Itoa(n))}}, "")
		if err != nil {
			t.Fatal(err)
		}
		if ch == "busy" {
			busy = append(busy, res.IDs[0])
		}
		return res.IDs[0]
	}
	for i := range 6 {
		pub("busy", i) // the window keeps 2..5
		if i == 2 {
			pub("quiet", 100)
		}
	}
	epoch := func() string {
		snap, err := h.Snapshot(t.Context(), "tn_a", nil, "", w, false)
		if err != nil {
			t.Fatal(err)
		}
		return snap.Epoch
	}()
	data := func(pg Page) string {
		var out []string
		for _, m := range pg.Messages {
			if m.Event != "tick" || m.PublishedAt == "" || !strings.Contains(m.ID, "-") {
				t.Fatalf("message %+v", m)
			}
			out = append(out, string(m.Data))
		}
		return strings.Join(out, ",")
	}
	for _, tc := range []struct {
		name         string
		channel      string
		epoch, after string
		limit        int
		want         string
		truncated    bool
	}{
		{"from the start of the window", "busy", "", "", 100, "2,3,4,5", false},
		{"paged", "busy", "", "", 2, "2,3", false},
		{"after a kept event", "busy", epoch, busy[3], 100, "4,5", false},
		{"after the newest trimmed event", "busy", "", busy[1], 100, "2,3,4,5", false},
		{"after a trimmed event", "busy", "", busy[0], 100, "2,3,4,5", true},
		{"of another epoch", "busy", "0badbeef", busy[4], 2, "2,3", true},
		{"beyond the newest event", "busy", "", "99999999999999-999", 100, "2,3,4,5", true},
		{"nothing after the newest", "busy", epoch, busy[5], 100, "", false},
		{"another channel's trims do not count", "quiet", "", busy[0], 100, "100", false},
		{"never published", "none", "", busy[0], 100, "", false},
	} {
		pg, err := h.Page(t.Context(), "tn_a", tc.channel, tc.epoch, tc.after, tc.limit, w)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := data(pg); got != tc.want || pg.Truncated != tc.truncated {
			t.Errorf("%s: got [%s] truncated %v, want [%s] truncated %v", tc.name, got, pg.Truncated, tc.want, tc.truncated)
		}
	}
}
