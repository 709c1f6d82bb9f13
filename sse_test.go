package streamgate

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// parsed is what a client following the HTML Living Standard's event-stream rules sees.
type parsed struct {
	events   []parsedEvent
	comments []string
	retry    string
	unknown  []string // fields a client would not expect from us
}

type parsedEvent struct{ id, event, data string }

// parseStream interprets b as the standard's event-stream parser does: lines end at CRLF, LF
// or CR; a blank line dispatches; "data" lines join with LF.
func parseStream(b []byte) parsed {
	var (
		out           parsed
		ev            parsedEvent
		data          []string
		hasData, seen bool
	)
	s := string(b)
	for len(s) > 0 {
		i := strings.IndexAny(s, "\r\n")
		if i < 0 {
			break // an unterminated line is never processed
		}
		line := s[:i]
		if s[i] == '\r' && i+1 < len(s) && s[i+1] == '\n' {
			i++
		}
		s = s[i+1:]
		if line == "" {
			if hasData {
				ev.data = strings.Join(data, "\n")
				out.events = append(out.events, ev)
			}
			ev, data, hasData, seen = parsedEvent{id: ev.id}, nil, false, false
			continue
		}
		seen = true
		if line[0] == ':' {
			out.comments = append(out.comments, strings.TrimPrefix(line[1:], " "))
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "data":
			data, hasData = append(data, value), true
		case "event":
			ev.event = value
		case "id":
			ev.id = value
		case "retry":
			out.retry = value
		default:
			out.unknown = append(out.unknown, line)
		}
	}
	_ = seen
	return out
}

func normalizeLines(s string) string {
	return strings.NewReplacer("\r\n", "\n", "\r", "\n").Replace(s)
}

func stripBreaks(s string) string {
	return strings.NewReplacer("\r", "", "\n", "", "\x00", "").Replace(s)
}

func TestAppendEvent(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, event, data, want string
	}{
		{"json", "message", `{"a":1}`, "event: message\ndata: {\"a\":1}\n\n"},
		{"lines", "x", "a\nb\r\nc\rd", "event: x\ndata: a\ndata: b\ndata: c\ndata: d\n\n"},
		{"empty data", "x", "", "event: x\ndata: \n\n"},
		{"forged event name", "x\n\ndata: evil", "1", "event: xdata: evil\ndata: 1\n\n"},
	} {
		if got := string(AppendEvent(nil, tc.event, tc.data)); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
	if got := string(AppendRetry(nil, 2500*time.Millisecond)); got != "retry: 2500\n\n" {
		t.Errorf("retry: got %q", got)
	}
	if got := string(Ping.Body); got != ": ping\n\n" {
		t.Errorf("ping: got %q", got)
	}
}

// FuzzEventFrame proves that nothing a tenant or a client controls can add a line of its own:
// whatever the id, event name and data, a client sees exactly one event, with the id and name
// it was given minus their line breaks, and the data it was given up to line endings.
func FuzzEventFrame(f *testing.F) {
	f.Add("17-3", "message", `{"x":1}`)
	f.Add("1-1\nevent: forged", "ok\r\ndata: x", "line\nretry: 1\n\nid: 9")
	f.Add("", "", "")
	f.Add("a\rb", "\x00", "\r\r\n\n")
	f.Fuzz(func(t *testing.T, id, event, data string) {
		frame := NewEventFrame("ch", id, 1, event, data)
		var wire bytes.Buffer
		wire.Write(IDField())
		wire.WriteString("ses_x:00000000:")
		wire.Write(frame.Body)
		wire.Write(Notice(EventReset, struct {
			Reason string `json:"reason"`
		}{data}).Body)
		wire.Write(AppendComment(nil, data))

		got := parseStream(wire.Bytes())
		if len(got.events) != 2 {
			t.Fatalf("%d events, want 2: %q", len(got.events), wire.String())
		}
		if len(got.unknown) > 0 || got.retry != "" {
			t.Fatalf("extra fields %q (retry %q) in %q", got.unknown, got.retry, wire.String())
		}
		ev := got.events[0]
		if want := "ses_x:00000000:" + stripBreaks(id); ev.id != want {
			t.Errorf("id %q, want %q", ev.id, want)
		}
		if want := stripBreaks(event); ev.event != want {
			t.Errorf("event %q, want %q", ev.event, want)
		}
		if want := normalizeLines(data); ev.data != want {
			t.Errorf("data %q, want %q", ev.data, want)
		}
		if got.events[1].event != EventReset {
			t.Errorf("the notice after it is %q, want reset", got.events[1].event)
		}
	})
}

func TestAppendIDEvent(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, id, event string
		retry           time.Duration
		data, want      string
	}{
		{"plain", "urn:uuid:1", "", 0, "hello", "id: urn:uuid:1\ndata: hello\n\n"},
		{"typed with retry", "a", "update", 1500 * time.Millisecond, "x\ny", "id: a\nevent: update\nretry: 1500\ndata: x\ndata: y\n\n"},
		{"empty data", "a", "", 0, "", "id: a\ndata: \n\n"},
		{"forged id", "a\n\nevent: evil", "", 0, "1", "id: aevent: evil\ndata: 1\n\n"},
	} {
		got := AppendIDEvent(nil, tc.id, tc.event, tc.retry, tc.data)
		if string(got) != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
		p := parseStream(got)
		if len(p.events) != 1 || p.events[0].id != stripBreaks(tc.id) || p.events[0].data != normalizeLines(tc.data) {
			t.Errorf("%s: a client sees %+v", tc.name, p)
		}
	}
}
