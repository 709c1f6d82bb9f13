package mercure

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"time"

	streamgate "github.com/streamgate/streamgate"
)

// Bounds of an update's fields besides its data (which the tenant's max_message_bytes bounds).
const (
	MaxIDLen   = 1024
	MaxTypeLen = 256
)

// maxRetry is the largest reconnection delay kept as given: beyond it a delay is a delay.
const maxRetry = math.MaxInt64 / int64(time.Millisecond)

// reservedTopic marks the topics of the hub's own updates (subscription events): no publisher
// may forge one.
const reservedTopic = "/.well-known/mercure"

// Update is what a publisher sends and subscribers receive: the first topic is the canonical
// one, the others alternates; a subscriber gets it when one of its selectors matches any topic,
// and, when Private, only if its token's mercure.subscribe matches one too. It is stored in the
// tenant's Mercure log as this JSON.
type Update struct {
	ID      string   `json:"id"`
	Topics  []string `json:"topics"`
	Private bool     `json:"private,omitempty"`
	Type    string   `json:"type,omitempty"`
	// Retry is the reconnection delay in milliseconds, 0 for none.
	Retry int64  `json:"retry,omitempty"`
	Data  string `json:"data"`
}

// Validate checks a publisher's update: 1 to MaxSelectors topics of at most MaxSelectorLen
// bytes, none in the hub's reserved namespace (ErrForbidden), and an id and type that cannot
// break the SSE framing. An empty ID is left for AssignID. Other refusals wrap ErrInvalid.
func (u *Update) Validate() error {
	if len(u.Topics) == 0 {
		return fmt.Errorf(`missing "topic" parameter: %w`, ErrInvalid)
	}
	if len(u.Topics) > MaxSelectors {
		return fmt.Errorf(`at most %d "topic" parameters: %w`, MaxSelectors, ErrInvalid)
	}
	for _, t := range u.Topics {
		if t == "" || len(t) > MaxSelectorLen {
			return fmt.Errorf(`a "topic" is 1 to %d bytes: %w`, MaxSelectorLen, ErrInvalid)
		}
		if strings.Contains(t, reservedTopic) {
			return fmt.Errorf("topics under %s are the hub's own: %w", reservedTopic, ErrForbidden)
		}
	}
	if len(u.ID) > MaxIDLen || strings.ContainsAny(u.ID, "\r\n\x00") {
		return fmt.Errorf(`"id" is at most %d bytes, without line breaks or NUL: %w`, MaxIDLen, ErrInvalid)
	}
	if len(u.Type) > MaxTypeLen || strings.ContainsAny(u.Type, "\r\n\x00") {
		return fmt.Errorf(`"type" is at most %d bytes, without line breaks or NUL: %w`, MaxTypeLen, ErrInvalid)
	}
	if u.Retry < 0 {
		return fmt.Errorf(`"retry" is a number of milliseconds: %w`, ErrInvalid)
	}
	u.Retry = min(u.Retry, maxRetry)
	return nil
}

// AssignID gives an update without an id a fresh urn:uuid (version 7: time-ordered).
func (u *Update) AssignID() {
	if u.ID == "" {
		u.ID = "urn:uuid:" + newUUIDv7(time.Now())
	}
}

// Encode returns the update as stored in the log.
func (u *Update) Encode() []byte {
	b, err := json.Marshal(u)
	if err != nil {
		panic("mercure: encode update: " + err.Error()) // strings and numbers always encode
	}
	return b
}

// DecodeUpdate reads an update as stored in the log.
func DecodeUpdate(data string) (Update, bool) {
	var u Update
	if err := json.Unmarshal([]byte(data), &u); err != nil || len(u.Topics) == 0 {
		return Update{}, false
	}
	return u, true
}

// Frame encodes the update once as the SSE event every subscriber gets: its id is the update's
// own (the frame's ID is its place in the tenant's log, which orders it and which a stream
// resumes from internally).
func (u *Update) Frame(channel, entryID string, seq uint64) *streamgate.Frame {
	body := streamgate.AppendIDEvent(make([]byte, 0, len(u.ID)+len(u.Type)+len(u.Data)+48),
		u.ID, u.Type, time.Duration(u.Retry)*time.Millisecond, u.Data)
	return &streamgate.Frame{ID: entryID, Seq: seq, Channel: channel, Body: body, Message: true}
}

// newUUIDv7 returns an RFC 9562 version 7 UUID: 48 bits of Unix milliseconds, then random bits.
func newUUIDv7(now time.Time) string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err))
	}
	ms := uint64(now.UnixMilli())
	for i := range 6 {
		b[i] = byte(ms >> (40 - 8*i))
	}
	b[6] = b[6]&0x0f | 0x70
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
