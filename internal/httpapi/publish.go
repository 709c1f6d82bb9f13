package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	streamgate "github.com/streamgate/streamgate"
	"github.com/streamgate/streamgate/internal/delivery"
	"github.com/streamgate/streamgate/internal/ratelimit"
	"github.com/streamgate/streamgate/internal/stream"
	"github.com/streamgate/streamgate/internal/tenant"
)

const maxBatch = 100

type eventRequest struct {
	Channel *string         `json:"channel,omitempty"`
	Event   *string         `json:"event"`
	Data    json.RawMessage `json:"data"`
}

func (s *Server) handlePublish() gin.HandlerFunc {
	return func(c *gin.Context) {
		t := tenantOf(c)
		channel := c.Param("channel")
		idem, e := idempotencyKey(c.Request)
		if e != nil {
			s.abort(c, e)
			return
		}
		var req eventRequest
		if e := decodeJSON(c.Request, publishBodyLimit, &req, false); e != nil {
			s.abort(c, e)
			return
		}
		if req.Channel != nil {
			s.abort(c, errorf(http.StatusBadRequest, CodeInvalid, "Unknown field \"channel\": the channel is in the path"))
			return
		}
		ev, e := validateEvent(t, channel, req, -1)
		if e != nil {
			s.abort(c, e)
			return
		}
		ids, ok := s.publish(c, t, []stream.Event{ev}, idem)
		if !ok {
			return
		}
		writeIDs(c.Writer, `{"id":`, ids[0], "}\n")
	}
}

func (s *Server) handlePublishBatch() gin.HandlerFunc {
	type request struct {
		Events []eventRequest `json:"events"`
	}
	return func(c *gin.Context) {
		t := tenantOf(c)
		idem, e := idempotencyKey(c.Request)
		if e != nil {
			s.abort(c, e)
			return
		}
		var req request
		if e := decodeJSON(c.Request, batchBodyLimit, &req, false); e != nil {
			s.abort(c, e)
			return
		}
		if len(req.Events) < 1 || len(req.Events) > maxBatch {
			s.abort(c, errorf(http.StatusBadRequest, CodeInvalid, "Field \"events\" must hold 1 to %d events", maxBatch))
			return
		}
		// Every event is checked before any is published: one bad event publishes nothing.
		events := make([]stream.Event, len(req.Events))
		for i, r := range req.Events {
			if r.Channel == nil {
				s.abort(c, errorf(http.StatusBadRequest, CodeInvalid, "events[%d]: Field \"channel\" is required", i))
				return
			}
			ev, e := validateEvent(t, *r.Channel, r, i)
			if e != nil {
				s.abort(c, e)
				return
			}
			events[i] = ev
		}
		ids, ok := s.publish(c, t, events, idem)
		if !ok {
			return
		}
		writeIDs(c.Writer, `{"ids":[`, strings.Join(ids, `","`), "]}\n")
	}
}

// publish publishes the tenant's events, counting each against its publish_per_second in the
// same script (one Redis round trip), and sets the X-RateLimit-* headers. It returns the events'
// ids, or answers the refusal or failure itself and returns false. Over the rate, nothing is
// published and the take counts all the same; a repeat (Idempotency-Key, or the Redis client's
// retry of a request id) is neither counted nor refused: it publishes nothing.
func (s *Server) publish(c *gin.Context, t tenant.Tenant, events []stream.Event, idem string) ([]string, bool) {
	ctx := c.Request.Context()
	rate := s.scriptRate(ratelimit.PerSecond(t.Limits.PublishPerSecond))
	res, err := s.publisher.Publish(ctx, t.ID, delivery.Window(t), rate, events, idem)
	h := c.Writer.Header()
	if errors.Is(err, stream.ErrRateLimited) { // res.Rate is Reached: a 429
		s.abort(c, rateAnswer(h, res.Rate, int64(len(events)), rate, publishRateName))
		return nil, false
	}
	if err != nil {
		s.fail(c, err)
		return nil, false
	}
	if rate.Limit > 0 {
		setRateHeaders(h, res.Rate)
	}
	s.countPublished(ctx, t.ID, len(events))
	return res.IDs, true
}

// writeIDs writes the 202 of a publish: head, the ids quoted (ids are digits and a dash, which
// need no escaping), tail; what writeJSON would make of {"id": …} or {"ids": […]}.
func writeIDs(w http.ResponseWriter, head, ids, tail string) {
	b := make([]byte, 0, len(head)+len(ids)+len(tail)+2)
	b = append(append(append(append(append(b, head...), '"'), ids...), '"'), tail...)
	writeJSONBytes(w, http.StatusAccepted, b)
}

// validateEvent checks one event against the names rules and the tenant's limits, and returns
// it with compact data. i is the event's place in a batch, which its refusals name, or -1.
func validateEvent(t tenant.Tenant, channel string, r eventRequest, i int) (stream.Event, *Error) {
	if !streamgate.ValidChannel(channel) {
		return stream.Event{}, errorf(http.StatusBadRequest, CodeInvalid,
			"%sChannel names are 1 to 200 characters of A-Z a-z 0-9 _ - . : @ = ,", where(i))
	}
	if streamgate.Reserved(channel) {
		return stream.Event{}, errorf(http.StatusBadRequest, CodeReserved,
			"%sChannels starting with job: or workflow: carry job and workflow state; report progress with PUT /v1/jobs/{id} or /v1/workflows/{id}", where(i))
	}
	name := "message"
	if r.Event != nil {
		name = *r.Event
		if !streamgate.ValidEventName(name) {
			return stream.Event{}, errorf(http.StatusBadRequest, CodeInvalid,
				"%sField \"event\" must be 1 to 100 printable characters without spaces", where(i))
		}
	}
	if r.Data == nil {
		return stream.Event{}, errorf(http.StatusBadRequest, CodeInvalid, "%sField \"data\" is required (any JSON value)", where(i))
	}
	data, err := compactJSON(r.Data)
	if err != nil {
		return stream.Event{}, errorf(http.StatusBadRequest, CodeInvalid, "%sField \"data\" is not valid JSON", where(i))
	}
	if len(data) > t.Limits.MaxMessageBytes {
		return stream.Event{}, errorf(http.StatusRequestEntityTooLarge, CodeTooLarge,
			"%sField \"data\" is %d bytes; this tenant's max_message_bytes is %d", where(i), len(data), t.Limits.MaxMessageBytes)
	}
	return stream.Event{Channel: channel, Event: name, Data: data}, nil
}

// where is the start of a refusal of event i of a batch ("events[3]: "), or "" for -1.
func where(i int) string {
	if i < 0 {
		return ""
	}
	return fmt.Sprintf("events[%d]: ", i)
}

// compact reports whether v, a JSON value the decoder has checked, holds no whitespace outside
// its strings: what json.Compact would return unchanged, so the event can keep v's bytes.
// compactJSON returns raw without whitespace outside strings: raw itself when it has none, the
// common case, which is then neither copied nor parsed again.
func compactJSON(raw []byte) ([]byte, error) {
	if compact(raw) {
		return raw, nil
	}
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func compact(v []byte) bool {
	inString := false
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case inString && c == '\\':
			i++ // the escaped character, a quote included
		case c == '"':
			inString = !inString
		case !inString && (c == ' ' || c == '\t' || c == '\n' || c == '\r'):
			return false
		}
	}
	return true
}

func idempotencyKey(r *http.Request) (string, *Error) {
	vals := r.Header.Values("Idempotency-Key")
	if len(vals) == 0 {
		return "", nil
	}
	k := vals[0]
	ok := len(vals) == 1 && len(k) >= 1 && len(k) <= 200
	for i := 0; ok && i < len(k); i++ {
		ok = k[i] > ' ' && k[i] < 0x7f
	}
	if !ok {
		return "", errorf(http.StatusBadRequest, CodeInvalid, "Idempotency-Key must be one value of 1 to 200 printable characters")
	}
	return k, nil
}
