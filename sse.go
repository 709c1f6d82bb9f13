package streamgate

import (
	"encoding/json"
	"strconv"
	"strings"
	"time"
)

// This file is the SSE encoder: the one place that writes the wire format's field names. Every
// stream, notice, reset and the admin stats stream goes through it, so that no input can start
// a line of its own: event names and ids lose their line breaks, and data is written as one
// "data:" field per line, which a client joins back with "\n".

// SSE event names of the public contract.
const (
	EventConnected     = "connected"
	EventMessage       = "message"
	EventJob           = "job"
	EventWorkflow      = "workflow"
	EventSubscribed    = "subscribed"
	EventUnsubscribed  = "unsubscribed"
	EventReset         = "reset"
	EventLagging       = "lagging"
	EventAuthFailed    = "auth_failed"
	EventDisconnect    = "disconnect"
	EventPresence      = "presence"
	EventTokenExpiring = "token_expiring"
	// EventStats is the admin stats stream's event.
	EventStats = "stats"
)

// Reasons the server gives in lagging, auth_failed, disconnect and reset events.
const (
	ReasonLagging          = "client too slow: buffer full"
	ReasonTokenExpired     = "token expired"
	ReasonKeyDeleted       = "signing key deleted"
	ReasonProviderDeleted  = "identity provider deleted"
	ReasonShutdown         = "node shutting down"
	ReasonEvicted          = "evicted by the operator"
	ReasonSuspended        = "tenant suspended"
	ReasonResumedElsewhere = "session resumed elsewhere"
	ReasonMissedEvents     = "missed events: resume"
	ReasonWindowExceeded   = "history window exceeded"
	ReasonLogRestarted     = "event log restarted"
	ReasonSessionExpired   = "session expired"
	ReasonReconfigured     = "hub reconfigured"
)

var idField = []byte("id: ")

// IDField returns the bytes that start an event's id line. A writer emits them, then the
// session's cursor prefix, then the Body of a frame with an ID. The slice is shared: never
// modify it.
func IDField() []byte { return idField }

// AppendEvent appends an event without an id: its name and its data, then the blank line that
// dispatches it.
func AppendEvent(dst []byte, event, data string) []byte {
	dst = appendLine(dst, "event: ", event)
	dst = AppendData(dst, data)
	return append(dst, '\n')
}

// AppendIDEvent appends an event that carries its own id rather than a cursor (a Mercure
// update's): the id, the event name unless empty (the client's default, "message"), the
// reconnection delay unless zero, and the data.
func AppendIDEvent(dst []byte, id, event string, retry time.Duration, data string) []byte {
	dst = appendLine(dst, "id: ", id)
	if event != "" {
		dst = appendLine(dst, "event: ", event)
	}
	if retry > 0 {
		dst = append(dst, "retry: "...)
		dst = strconv.AppendInt(dst, retry.Milliseconds(), 10)
		dst = append(dst, '\n')
	}
	dst = AppendData(dst, data)
	return append(dst, '\n')
}

// AppendData appends data as "data:" fields, one per line of data (a CR, LF or CRLF ends a
// line), so that a client reassembles it exactly, with "\n" between lines.
func AppendData(dst []byte, data string) []byte {
	for {
		i := strings.IndexAny(data, "\r\n")
		if i < 0 {
			dst = append(dst, "data: "...)
			dst = append(dst, data...)
			return append(dst, '\n')
		}
		dst = append(dst, "data: "...)
		dst = append(dst, data[:i]...)
		dst = append(dst, '\n')
		if data[i] == '\r' && i+1 < len(data) && data[i+1] == '\n' {
			i++
		}
		data = data[i+1:]
	}
}

// AppendRetry appends the reconnection delay a client should use.
func AppendRetry(dst []byte, d time.Duration) []byte {
	dst = append(dst, "retry: "...)
	dst = strconv.AppendInt(dst, d.Milliseconds(), 10)
	return append(dst, '\n', '\n')
}

// AppendComment appends a comment, which clients ignore: heartbeats and diagnostics.
func AppendComment(dst []byte, text string) []byte {
	return append(appendLine(dst, ": ", text), '\n')
}

// appendLine appends one field line, with every line break and NUL of value left out.
func appendLine(dst []byte, field, value string) []byte {
	dst = append(dst, field...)
	for {
		i := strings.IndexAny(value, "\r\n\x00")
		if i < 0 {
			break
		}
		dst = append(dst, value[:i]...)
		value = value[i+1:]
	}
	dst = append(dst, value...)
	return append(dst, '\n')
}

// Ping is the heartbeat comment written to idle streams.
var Ping = &Frame{Body: AppendComment(nil, "ping")}

// NewEventFrame encodes one event of channel with an id: its Body is the id line's value, then
// the event and its data. A writer puts IDField and the session's cursor prefix before it.
// seq is the sequence part of id (see Frame.Seq).
func NewEventFrame(channel, id string, seq uint64, event, data string) *Frame {
	body := make([]byte, 0, len(id)+len(event)+len(data)+len("\nevent: \ndata: \n\n"))
	body = appendLine(body, "", id)
	body = AppendEvent(body, event, data)
	return &Frame{ID: id, Seq: seq, Channel: channel, Body: body, Message: true}
}

// Notice encodes an event without an id whose data is v as JSON: lagging, auth_failed,
// disconnect, reset, subscribed and the like. v must be a plain struct that always encodes.
func Notice(event string, v any) *Frame {
	data, err := json.Marshal(v)
	if err != nil {
		panic("streamgate: encode " + event + " notice: " + err.Error())
	}
	return &Frame{Body: AppendEvent(nil, event, string(data)), Event: event}
}
