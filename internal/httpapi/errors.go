package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"syscall"

	"github.com/redis/go-redis/v9"

	"github.com/streamgate/streamgate/internal/cluster"
	"github.com/streamgate/streamgate/internal/delivery"
	"github.com/streamgate/streamgate/internal/jobs"
	"github.com/streamgate/streamgate/internal/mercure"
	"github.com/streamgate/streamgate/internal/session"
	"github.com/streamgate/streamgate/internal/stream"
	"github.com/streamgate/streamgate/internal/tenant"
	"github.com/streamgate/streamgate/internal/webhook"
)

// Error is a refusal in the public contract's shape: a status, a snake_case code and a message
// a person can act on.
type Error struct {
	Status  int
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

func errorf(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// The contract's error codes.
const (
	CodeInvalid             = "invalid_request"
	CodeReserved            = "reserved_channel"
	CodeUnauthorized        = "unauthorized"
	CodeForbidden           = "forbidden"
	CodeLimitExceeded       = "limit_exceeded"
	CodeNotFound            = "not_found"
	CodeConflict            = "conflict"
	CodeIdempotencyMismatch = "idempotency_mismatch"
	CodeMethod              = "method_not_allowed"
	CodeTooLarge            = "payload_too_large"
	CodeMediaType           = "unsupported_media_type"
	CodeRateLimited         = "rate_limited"
	CodeUnavailable         = "unavailable"
	CodeInternal            = "internal_error"
)

const (
	messageUnavailable  = "the service cannot reach its data store right now; nothing was accepted, retry shortly"
	messageInternal     = "something went wrong on our side; nothing was accepted"
	messageShuttingDown = "this node is shutting down; retry on another"
)

// sentinels is the one table mapping package errors to the contract. The wrapped message (the
// part before the sentinel) becomes the response message.
var sentinels = []struct {
	err    error
	status int
	code   string
}{
	{tenant.ErrInvalid, http.StatusBadRequest, CodeInvalid},
	{tenant.ErrNoSigningKey, http.StatusBadRequest, CodeInvalid},
	{tenant.ErrUnauthorized, http.StatusUnauthorized, CodeUnauthorized},
	{tenant.ErrSuspended, http.StatusForbidden, CodeForbidden},
	{tenant.ErrNotFound, http.StatusNotFound, CodeNotFound},
	{tenant.ErrConflict, http.StatusConflict, CodeConflict},
	{tenant.ErrLimitExceeded, http.StatusForbidden, CodeLimitExceeded},
	{mercure.ErrInvalid, http.StatusBadRequest, CodeInvalid},
	{mercure.ErrUnauthorized, http.StatusUnauthorized, CodeUnauthorized},
	{mercure.ErrForbidden, http.StatusForbidden, CodeForbidden},
	{session.ErrLimitExceeded, http.StatusForbidden, CodeLimitExceeded},
	{session.ErrNotFound, http.StatusNotFound, CodeNotFound},
	{delivery.ErrInvalid, http.StatusBadRequest, CodeInvalid},
	{delivery.ErrForbidden, http.StatusForbidden, CodeForbidden},
	{delivery.ErrNotFound, http.StatusNotFound, CodeNotFound},
	{delivery.ErrShuttingDown, http.StatusServiceUnavailable, CodeUnavailable},
	{webhook.ErrInvalid, http.StatusBadRequest, CodeInvalid},
	{webhook.ErrNotFound, http.StatusNotFound, CodeNotFound},
	{webhook.ErrLimitExceeded, http.StatusForbidden, CodeLimitExceeded},
	{stream.ErrUnavailable, http.StatusServiceUnavailable, CodeUnavailable},
	{stream.ErrIdempotencyMismatch, http.StatusUnprocessableEntity, CodeIdempotencyMismatch},
	{jobs.ErrBacklogFull, http.StatusServiceUnavailable, CodeUnavailable},
	{cluster.ErrUnavailable, http.StatusServiceUnavailable, CodeUnavailable},
	{cluster.ErrNoReply, http.StatusServiceUnavailable, CodeUnavailable},
}

// toError maps any error to the contract's shape. Errors it does not know are logged (without
// request data) and answered with a generic 500.
func toError(log *slog.Logger, err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	for _, s := range sentinels {
		if errors.Is(err, s.err) {
			msg := err.Error()
			switch {
			case errors.Is(err, delivery.ErrShuttingDown):
				msg = messageShuttingDown
			case s.status == http.StatusServiceUnavailable:
				msg = messageUnavailable
			default:
				msg = strings.TrimSuffix(msg, ": "+s.err.Error())
			}
			return &Error{Status: s.status, Code: s.code, Message: sentence(msg)}
		}
	}
	if redisDown(err) {
		log.Warn("redis unavailable", "err", err)
		return &Error{Status: http.StatusServiceUnavailable, Code: CodeUnavailable, Message: messageUnavailable}
	}
	log.Error("unhandled error", "err", err)
	return &Error{Status: http.StatusInternalServerError, Code: CodeInternal, Message: messageInternal}
}

// redisDown reports whether err means Redis could not be reached or cannot serve now, as
// opposed to a bug: those answer 503 so clients retry.
func redisDown(err error) bool {
	var nerr net.Error
	switch {
	case errors.As(err, &nerr),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, redis.ErrClosed), errors.Is(err, redis.ErrPoolTimeout),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.Is(err, context.DeadlineExceeded):
		return true
	}
	var rerr redis.Error
	if errors.As(err, &rerr) {
		for _, p := range []string{"LOADING", "MASTERDOWN", "CLUSTERDOWN", "READONLY", "BUSY", "OOM"} {
			if strings.HasPrefix(rerr.Error(), p) {
				return true
			}
		}
	}
	// A cluster slot that kept changing hands through the client's redirections and retries.
	return stream.SlotMoving(err)
}

func sentence(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// writeError writes e as the contract's JSON error.
func writeError(w http.ResponseWriter, e *Error) {
	var body errorBody
	body.Error.Code, body.Error.Message = e.Code, e.Message
	writeJSON(w, e.Status, body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"error":{"code":"internal_error","message":"` + messageInternal + `"}}`)
	}
	writeJSONBytes(w, status, append(b, '\n'))
}

// writeJSONBytes writes b, a JSON document and a newline, as writeJSON does.
func writeJSONBytes(w http.ResponseWriter, status int, b []byte) {
	h := w.Header()
	// Both values in one array, as setRateHeaders does; the names are canonical already.
	v := []string{"application/json; charset=utf-8", "no-store"}
	h["Content-Type"], h["Cache-Control"] = v[0:1:1], v[1:2:2]
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
