package main

import (
	"encoding/json"
	"errors"
	"strconv"
	"strings"
)

// payload is what sgbench carries in each event's data: the event's index in the run and the
// time it was sent. Receivers on the same machine take latency as their clock minus Sent, and
// account loss and duplicates by index.
type payload struct {
	Index int64 // 0-based, over the whole run; see plan.channelOfEvent
	Sent  int64 // unix nanoseconds, taken just before the request went out
}

// The data is {"sgb":1,"i":<index>,"t":<sent>,"pad":"xx…"}. The server compacts data without
// reordering keys, so receivers find the fields by their fixed prefix; parseMessage falls back
// to full JSON decoding should the layout ever change.
const (
	dataPrefix = `{"sgb":1,"i":`
	sentKey    = `,"t":`
	padKey     = `,"pad":"`
	msgPrefix  = `"data":{"sgb":1,"i":`
)

// errNotBench means an event's data is not an sgbench payload.
var errNotBench = errors.New("not an sgbench payload")

// appendData appends p as event data padded with "x" to size bytes, or as short as it can be
// when size is smaller than that.
func appendData(dst []byte, p payload, size int) []byte {
	start := len(dst)
	dst = append(dst, dataPrefix...)
	dst = strconv.AppendInt(dst, p.Index, 10)
	dst = append(dst, sentKey...)
	dst = strconv.AppendInt(dst, p.Sent, 10)
	if pad := size - (len(dst) - start) - len(padKey) - 2; pad >= 0 {
		dst = append(dst, padKey...)
		dst = append(dst, strings.Repeat("x", pad)...)
		dst = append(dst, '"')
	}
	return append(dst, '}')
}

// appendPublishBody appends the body of POST /v1/channels/{channel}/events carrying p.
func appendPublishBody(dst []byte, p payload, size int) []byte {
	dst = append(dst, `{"event":"sgbench","data":`...)
	dst = appendData(dst, p, size)
	return append(dst, '}')
}

// parseMessage reads the payload out of the data of an SSE message event,
// {"channel":…,"event":…,"data":{…},"published_at":…}. It returns errNotBench for events that
// some other publisher sent.
func parseMessage(msg string) (payload, error) {
	if i := strings.Index(msg, msgPrefix); i >= 0 {
		rest := msg[i+len(msgPrefix):]
		idx, rest, ok := leadingInt(rest)
		if ok && strings.HasPrefix(rest, sentKey) {
			if sent, _, ok := leadingInt(rest[len(sentKey):]); ok {
				return payload{Index: idx, Sent: sent}, nil
			}
		}
	}
	var m struct {
		Data struct {
			Sgb   int    `json:"sgb"`
			Index *int64 `json:"i"`
			Sent  *int64 `json:"t"`
		} `json:"data"`
	}
	if err := json.Unmarshal([]byte(msg), &m); err != nil {
		return payload{}, errNotBench
	}
	if m.Data.Sgb != 1 || m.Data.Index == nil || m.Data.Sent == nil || *m.Data.Index < 0 {
		return payload{}, errNotBench
	}
	return payload{Index: *m.Data.Index, Sent: *m.Data.Sent}, nil
}

// leadingInt parses the non-negative decimal integer at the start of b.
func leadingInt(b string) (n int64, rest string, ok bool) {
	i := 0
	for i < len(b) && i < 19 && b[i] >= '0' && b[i] <= '9' {
		n = n*10 + int64(b[i]-'0')
		i++
	}
	return n, b[i:], i > 0 && n >= 0 // n < 0: 19 digits past MaxInt64
}
