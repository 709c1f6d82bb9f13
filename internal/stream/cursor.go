package stream

import (
	"strconv"
	"strings"

	streamgate "github.com/streamgate/streamgate"
)

// Cursor is where a stream stands: its session, the tenant's epoch when the session last
// received something, and the id of the last event it received. It travels as the SSE id
// "<session>:<epoch>:<ms>-<seq>", so one cursor serves any number of channels: ids are one
// order per tenant.
type Cursor struct {
	SessionID string
	Epoch     string
	LastID    string
}

// String encodes the cursor as the SSE event id.
func (c Cursor) String() string { return c.SessionID + ":" + c.Epoch + ":" + c.LastID }

// Prefix is the part of the cursor shared by all of a session's events.
func (c Cursor) Prefix() string { return c.SessionID + ":" + c.Epoch + ":" }

// Seq is the sequence part of LastID.
func (c Cursor) Seq() uint64 {
	_, seq, _ := ParseID(c.LastID)
	return seq
}

// ParseCursor reads a cursor sent back as Last-Event-ID. It accepts only what the server
// writes: a session id, 8 hex characters and an event id.
func ParseCursor(s string) (Cursor, bool) {
	if len(s) > 100 {
		return Cursor{}, false
	}
	sid, rest, ok := strings.Cut(s, ":")
	if !ok || !strings.HasPrefix(sid, "ses_") || !streamgate.ValidID(sid) {
		return Cursor{}, false
	}
	epoch, last, ok := strings.Cut(rest, ":")
	if !ok || len(epoch) != 8 || strings.Trim(epoch, "0123456789abcdef") != "" {
		return Cursor{}, false
	}
	if _, _, ok := ParseID(last); !ok {
		return Cursor{}, false
	}
	return Cursor{SessionID: sid, Epoch: epoch, LastID: last}, true
}

// ParseID splits an event id "<ms>-<seq>".
func ParseID(id string) (ms, seq uint64, ok bool) {
	a, b, found := strings.Cut(id, "-")
	if !found {
		return 0, 0, false
	}
	ms, err1 := strconv.ParseUint(a, 10, 64)
	seq, err2 := strconv.ParseUint(b, 10, 64)
	return ms, seq, err1 == nil && err2 == nil
}
