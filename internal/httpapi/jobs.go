package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"

	"math"
	"net/http"
	"strconv"
	"unicode/utf8"

	"github.com/gin-gonic/gin"
	"go.opentelemetry.io/otel/propagation"

	streamgate "github.com/streamgate/streamgate"
	"github.com/streamgate/streamgate/internal/delivery"
	"github.com/streamgate/streamgate/internal/jobs"
)

// The statuses of the contract.
var (
	jobStatuses      = map[string]bool{"queued": true, "running": true, "succeeded": true, "failed": true, "cancelled": true}
	workflowStatuses = map[string]bool{"pending": true, "running": true, "waiting": true, "succeeded": true, "failed": true, "cancelled": true}
	stepStatuses     = map[string]bool{"pending": true, "running": true, "succeeded": true, "failed": true, "skipped": true}
)

// maxText bounds message, error and waiting_for.
const maxText = 4096

// updateFields collects an update's set fields as JSON texts. JSON null counts as not set:
// unset fields keep their value.
type updateFields struct {
	fields map[string]json.RawMessage
	err    *Error
}

func (u *updateFields) fail(format string, args ...any) {
	if u.err == nil {
		u.err = errorf(http.StatusBadRequest, CodeInvalid, format, args...)
	}
}

func present(raw json.RawMessage) bool { return len(raw) > 0 && !bytes.Equal(raw, []byte("null")) }

func (u *updateFields) status(name string, raw json.RawMessage, allowed map[string]bool) {
	if !present(raw) {
		return
	}
	var s string
	if json.Unmarshal(raw, &s) != nil || !allowed[s] {
		u.fail("Field %q must be one of %s", name, keysOf(allowed))
		return
	}
	u.fields[name], _ = json.Marshal(s)
}

func (u *updateFields) text(name string, raw json.RawMessage) {
	if !present(raw) {
		return
	}
	var s string
	if json.Unmarshal(raw, &s) != nil || utf8.RuneCountInString(s) > maxText {
		u.fail("Field %q must be a string of at most %d characters", name, maxText)
		return
	}
	u.fields[name], _ = json.Marshal(s)
}

func (u *updateFields) name(field string, raw json.RawMessage) {
	if !present(raw) {
		return
	}
	var s string
	if json.Unmarshal(raw, &s) != nil || !streamgate.ValidID(s) {
		u.fail("Field %q must be 1 to 128 characters of A-Z a-z 0-9 _ - . :", field)
		return
	}
	u.fields[field], _ = json.Marshal(s)
}

func (u *updateFields) anyJSON(name string, raw json.RawMessage, limit int) {
	if !present(raw) {
		return
	}
	b, err := compactJSON(raw)
	if err != nil {
		u.fail("Field %q is not valid JSON", name)
		return
	}
	if len(b) > limit {
		u.err = errorf(http.StatusRequestEntityTooLarge, CodeTooLarge, "Field %q is %d bytes; this tenant's max_message_bytes is %d", name, len(b), limit)
		return
	}
	u.fields[name] = b
}

func (u *updateFields) progress(raw json.RawMessage) {
	if !present(raw) {
		return
	}
	var f float64
	if json.Unmarshal(raw, &f) != nil || math.IsNaN(f) || f < 0 || f > 100 {
		u.fail("Field \"progress\" must be a number from 0 to 100")
		return
	}
	u.fields["progress"] = []byte(strconv.FormatFloat(f, 'f', -1, 64))
}

func keysOf(m map[string]bool) string {
	order := []string{"queued", "pending", "running", "waiting", "succeeded", "failed", "cancelled", "skipped"}
	var b bytes.Buffer
	for _, k := range order {
		if m[k] {
			if b.Len() > 0 {
				b.WriteString(", ")
			}
			b.WriteString(k)
		}
	}
	return b.String()
}

type jobRequest struct {
	Status   json.RawMessage `json:"status"`
	Progress json.RawMessage `json:"progress"`
	Message  json.RawMessage `json:"message"`
	Output   json.RawMessage `json:"output"`
	Error    json.RawMessage `json:"error"`
}

type stepRequest struct {
	Name   json.RawMessage `json:"name"`
	Status json.RawMessage `json:"status"`
	Error  json.RawMessage `json:"error"`
}

type workflowRequest struct {
	Status     json.RawMessage `json:"status"`
	Step       json.RawMessage `json:"step"`
	WaitingFor json.RawMessage `json:"waiting_for"`
	Steps      []stepRequest   `json:"steps"`
	Output     json.RawMessage `json:"output"`
	Error      json.RawMessage `json:"error"`
}

// maxSteps bounds the steps of one workflow update.
const maxSteps = 100

func (s *Server) handlePutJob() gin.HandlerFunc {
	return func(c *gin.Context) {
		t := tenantOf(c)
		id := c.Param("id")
		idem, e := idempotencyKey(c.Request)
		if e != nil {
			s.abort(c, e)
			return
		}
		var req jobRequest
		if e := decodeJSON(c.Request, publishBodyLimit, &req, false); e != nil {
			s.abort(c, e)
			return
		}
		u := updateFields{fields: map[string]json.RawMessage{}}
		u.status("status", req.Status, jobStatuses)
		u.progress(req.Progress)
		u.text("message", req.Message)
		u.anyJSON("output", req.Output, t.Limits.MaxMessageBytes)
		u.text("error", req.Error)
		s.acceptUpdate(c, jobs.UpdateJob, id, idem, u)
	}
}

func (s *Server) handlePutWorkflow() gin.HandlerFunc {
	return func(c *gin.Context) {
		t := tenantOf(c)
		id := c.Param("id")
		idem, e := idempotencyKey(c.Request)
		if e != nil {
			s.abort(c, e)
			return
		}
		var req workflowRequest
		if e := decodeJSON(c.Request, publishBodyLimit, &req, false); e != nil {
			s.abort(c, e)
			return
		}
		u := updateFields{fields: map[string]json.RawMessage{}}
		u.status("status", req.Status, workflowStatuses)
		u.name("step", req.Step)
		u.text("waiting_for", req.WaitingFor)
		u.anyJSON("output", req.Output, t.Limits.MaxMessageBytes)
		u.text("error", req.Error)
		if req.Steps != nil {
			if len(req.Steps) > maxSteps {
				u.fail("Field \"steps\" holds at most %d steps", maxSteps)
			}
			steps := make([]map[string]json.RawMessage, 0, len(req.Steps))
			for i, st := range req.Steps {
				su := updateFields{fields: map[string]json.RawMessage{}}
				su.name("name", st.Name)
				su.status("status", st.Status, stepStatuses)
				su.text("error", st.Error)
				if su.err == nil && su.fields["name"] == nil {
					su.fail("Field \"name\" is required")
				}
				if su.err != nil {
					u.fail("steps[%d]: %s", i, su.err.Message)
				}
				steps = append(steps, su.fields)
			}
			u.fields["steps"], _ = json.Marshal(steps)
		}
		s.acceptUpdate(c, jobs.UpdateWorkflow, id, idem, u)
	}
}

func (s *Server) handlePutStep() gin.HandlerFunc {
	type request struct {
		Status json.RawMessage `json:"status"`
		Error  json.RawMessage `json:"error"`
	}
	return func(c *gin.Context) {
		id, step := c.Param("id"), c.Param("name")
		idem, e := idempotencyKey(c.Request)
		if e != nil {
			s.abort(c, e)
			return
		}
		var req request
		if e := decodeJSON(c.Request, publishBodyLimit, &req, false); e != nil {
			s.abort(c, e)
			return
		}
		u := updateFields{fields: map[string]json.RawMessage{}}
		u.status("status", req.Status, stepStatuses)
		u.text("error", req.Error)
		if u.err == nil && len(u.fields) == 0 {
			u.fail("The update is empty: send at least one field")
		}
		u.fields["name"], _ = json.Marshal(step)
		s.acceptUpdate(c, jobs.UpdateStep, id, idem, u)
	}
}

// acceptUpdate appends a validated update to the update stream: 202 once it is durable there.
// A retry with the request's Idempotency-Key gets the same 202 and appends nothing.
func (s *Server) acceptUpdate(c *gin.Context, kind, id, idem string, u updateFields) {
	if u.err != nil {
		s.abort(c, u.err)
		return
	}
	if len(u.fields) == 0 {
		s.abort(c, errorf(http.StatusBadRequest, CodeInvalid, "The update is empty: send at least one field"))
		return
	}
	t := tenantOf(c)
	// Updates share the tenant's publish_per_second with publishes: one tenant cannot flood the
	// update stream that every tenant's jobs go through. Unlike a publish, an update is counted
	// in a round trip of its own: it is appended to an update partition, in another hash slot
	// than the tenant's count, so the append's script cannot count it too.
	if e := s.limitPublish(c, t.ID, t.Limits.PublishPerSecond, 1); e != nil {
		s.abort(c, e)
		return
	}
	// The update carries this request's span context, so the worker's handling of it continues
	// the request's trace.
	carrier := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(c.Request.Context(), carrier)
	err := s.updates.Append(c.Request.Context(), jobs.Update{
		TenantID: t.ID, Kind: kind, ID: id, Fields: u.fields, Window: delivery.Window(t),
		Trace: carrier.Get("traceparent"), TraceState: carrier.Get("tracestate"), IdempotencyKey: idem,
	})
	if err != nil {
		s.fail(c, err)
		return
	}
	writeJSON(c.Writer, http.StatusAccepted, gin.H{"accepted": true})
}

func (s *Server) handleGetJob() gin.HandlerFunc {
	return s.getState("job", func(c *gin.Context, tenantID, id string) (json.RawMessage, error) {
		return s.jobStates.Job(c.Request.Context(), tenantID, id)
	})
}

func (s *Server) handleGetWorkflow() gin.HandlerFunc {
	return s.getState("workflow", func(c *gin.Context, tenantID, id string) (json.RawMessage, error) {
		return s.jobStates.Workflow(c.Request.Context(), tenantID, id)
	})
}

func (s *Server) getState(what string, read func(c *gin.Context, tenantID, id string) (json.RawMessage, error)) gin.HandlerFunc {
	return func(c *gin.Context) {
		id := c.Param("id")
		obj, err := read(c, tenantOf(c).ID, id)
		if errors.Is(err, jobs.ErrNotFound) {
			s.abort(c, errorf(http.StatusNotFound, CodeNotFound, "No %s %s (state is kept for a while after it finishes)", what, id))
			return
		}
		if err != nil {
			s.fail(c, err)
			return
		}
		c.Writer.Header().Set("Content-Type", "application/json; charset=utf-8")
		c.Writer.Header().Set("Cache-Control", "no-store")
		c.Writer.WriteHeader(http.StatusOK)
		_, _ = c.Writer.Write(append(obj, '\n'))
	}
}
