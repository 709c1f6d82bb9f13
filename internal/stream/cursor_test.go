package stream

import (
	"math"
	"strconv"
	"strings"
	"testing"

	streamgate "github.com/streamgate/streamgate"
)

func TestParseCursor(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{"ses_0123456789abcdef:0a1b2c3d:1700000000000-42", true},
		{"ses_x:00000000:0-0", true},
		{"", false},
		{"nope", false},
		{"ses_x", false},
		{"ses_x:00000000", false},
		{"tn_x:00000000:1-1", false},    // not a session id
		{"ses_x:0000000:1-1", false},    // epoch of 7
		{"ses_x:000000000:1-1", false},  // epoch of 9
		{"ses_x:0000000g:1-1", false},   // not hex
		{"ses_x:ABCDEF12:1-1", false},   // the server writes lowercase only
		{"ses_x:00000000:abc", false},   // not an event id
		{"ses_x:00000000:1", false},     // no sequence
		{"ses_x:00000000:-1-1", false},  // signs are refused
		{"ses_x:00000000:+1-1", false},  //
		{"ses_x:00000000:1-+1", false},  //
		{"ses_x:00000000:1-1:2", false}, // trailing field
		{"ses_x:00000000:1_0-1", false}, // digit separators are refused
		{"ses_x:00000000:0x1-1", false}, //
		{"ses_x:00000000:1-1 ", false},  // space
		{"ses_ x:00000000:1-1", false},  //
		{"ses_x:00000000:1-1\n", false}, // LF
		{"ses_x:00000000:1-1\nevent: x", false},
		{"ses_x:00000000:1-1\r", false},                             // CR
		{"ses_x:00000000:1\x00-1", false},                           // NUL
		{"ses_é:00000000:1-1", false},                               // not ASCII
		{"ses_x:00000000:18446744073709551616-1", false},            // overflows uint64
		{"ses_" + strings.Repeat("x", 83) + ":00000000:1-1", true},  // 100 bytes
		{"ses_" + strings.Repeat("x", 84) + ":00000000:1-1", false}, // 101 bytes
	} {
		c, ok := ParseCursor(tc.in)
		if ok != tc.want {
			t.Errorf("ParseCursor(%q) ok = %v, want %v", tc.in, ok, tc.want)
			continue
		}
		if ok && c.String() != tc.in {
			t.Errorf("ParseCursor(%q).String() = %q, want the input back", tc.in, c.String())
		}
	}
}

// TestParseCursorAcceptsEveryCursorTheServerWrites guards the other direction: a cursor the
// server hands out, however large its counters, must come back as a resume, never as a 400.
func TestParseCursorAcceptsEveryCursorTheServerWrites(t *testing.T) {
	t.Parallel()
	max := strconv.FormatUint(math.MaxUint64, 10)
	for _, c := range []Cursor{
		{SessionID: streamgate.NewID("ses_"), Epoch: NewEpoch(), LastID: "0-0"},
		{SessionID: streamgate.NewID("ses_"), Epoch: "ffffffff", LastID: max + "-" + max},
		{SessionID: streamgate.NewID("ses_"), Epoch: "00000000", LastID: "1700000000000-1"},
	} {
		got, ok := ParseCursor(c.String())
		if !ok || got != c {
			t.Errorf("ParseCursor(%q) = %+v, %v; want %+v", c.String(), got, ok, c)
		}
		if got.Seq() != c.Seq() {
			t.Errorf("Seq of %q = %d, want %d", c.String(), got.Seq(), c.Seq())
		}
	}
}

// FuzzParseCursor feeds Last-Event-ID values as an attacker would: parsing never panics, a
// value accepted is exactly what String gives back (so nothing else reaches Redis keys or the
// SSE framing), and anything that could break a header, a key or a frame is refused.
//
// Run longer with: go test ./internal/stream -run '^$' -fuzz '^FuzzParseCursor$' -fuzztime 30s
func FuzzParseCursor(f *testing.F) {
	for _, s := range []string{
		"ses_0123456789abcdef:0a1b2c3d:1700000000000-42",
		"ses_x:00000000:0-0",
		"ses_x:00000000:18446744073709551615-18446744073709551615",
		"ses_x:00000000:18446744073709551616-1",
		"ses_x:00000000:1-1\nevent: x",
		"ses_x:00000000:1-1\r\n\r\ndata: injected",
		"ses_x:0000000\x00:1-1",
		"ses_x:00000000:1-1 ",
		"ses_x:ABCDEF12:1-1",
		"ses_x:00000000:+1-1",
		"ses_:00000000:1-1",
		"ses_x::1-1",
		":::",
		"",
		strings.Repeat("ses_x:", 30),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, ok := ParseCursor(s)
		if !ok {
			if c != (Cursor{}) {
				t.Fatalf("ParseCursor(%q) refused it but returned %+v", s, c)
			}
			return
		}
		if strings.ContainsAny(s, "\r\n\x00 ") {
			t.Fatalf("ParseCursor accepted %q, which holds CR, LF, NUL or space", s)
		}
		if len(s) > 100 || !strings.HasPrefix(c.SessionID, "ses_") || !streamgate.ValidID(c.SessionID) {
			t.Fatalf("ParseCursor accepted %q with session %q", s, c.SessionID)
		}
		if c.String() != s || c.Prefix()+c.LastID != s {
			t.Fatalf("ParseCursor(%q) = %+v, which encodes as %q", s, c, c.String())
		}
		again, ok := ParseCursor(c.String())
		if !ok || again != c {
			t.Fatalf("round trip of %q: %+v, %v", s, again, ok)
		}
		if _, seq, ok := ParseID(c.LastID); !ok || seq != c.Seq() {
			t.Fatalf("ParseCursor(%q): event id %q does not parse back", s, c.LastID)
		}
	})
}
