// Package sseclient reads Server-Sent Events streams the way a browser's EventSource does. The
// tests and the load tool use it to see exactly what an end user sees.
package sseclient

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// Event is one dispatched event. Comments (": ping") are reported with Comment set.
type Event struct {
	ID      string
	Event   string // "message" when the stream named none
	Data    string
	Retry   int
	Comment string
}

// Stream is an open event stream.
type Stream struct {
	Response *http.Response
	r        *bufio.Reader
	lastID   string
}

// Connect opens url with the given headers. A non-200 answer is returned as the response with
// a nil stream, its body unread, so callers can check refusals.
func Connect(ctx context.Context, client *http.Client, url string, header http.Header) (*Stream, *http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, nil, err
	}
	for k, vs := range header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	req.Header.Set("Accept", "text/event-stream")
	resp, err := client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, resp, nil
	}
	return NewStream(resp), resp, nil
}

// NewStream reads events from resp's body.
func NewStream(resp *http.Response) *Stream {
	return &Stream{Response: resp, r: bufio.NewReaderSize(resp.Body, 64<<10)}
}

// Close closes the underlying body.
func (s *Stream) Close() error { return s.Response.Body.Close() }

// LastID is the last event id seen, which EventSource would send as Last-Event-ID.
func (s *Stream) LastID() string { return s.lastID }

// Next returns the next event or comment. io.EOF means the server closed the stream.
func (s *Stream) Next() (Event, error) {
	var (
		ev      Event
		data    bytes.Buffer
		hasData bool
		any     bool
	)
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			if errors.Is(err, io.EOF) && line == "" {
				return Event{}, io.EOF
			}
			return Event{}, err
		}
		line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
		if line == "" {
			if !any {
				continue
			}
			if !hasData && ev.Comment == "" {
				// The spec dispatches nothing for an event without data (a bare retry or id).
				ev, any = Event{Retry: ev.Retry}, false
				if ev.Retry > 0 {
					return ev, nil
				}
				continue
			}
			ev.Data = data.String()
			if ev.Event == "" && ev.Comment == "" {
				ev.Event = "message"
			}
			return ev, nil
		}
		any = true
		if line[0] == ':' {
			ev.Comment = strings.TrimPrefix(line[1:], " ")
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "id":
			ev.ID, s.lastID = value, value
		case "event":
			ev.Event = value
		case "data":
			if hasData {
				data.WriteByte('\n')
			}
			data.WriteString(value)
			hasData = true
		case "retry":
			n, err := strconv.Atoi(value)
			if err != nil {
				return Event{}, fmt.Errorf("bad retry field %q", value)
			}
			ev.Retry = n
		}
	}
}

// NextEvent returns the next event, skipping comments.
func (s *Stream) NextEvent() (Event, error) {
	for {
		ev, err := s.Next()
		if err != nil || (ev.Comment == "" && ev.Event != "") {
			return ev, err
		}
	}
}
