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

	"github.com/streamgate/streamgate/internal/session"
	"github.com/streamgate/streamgate/internal/stream"
	"github.com/streamgate/streamgate/internal/tenant"
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

// The contract's codes.
const (
	codeInvalid         = "invalid_request"
	codeReserved        = "reserved_channel"
	codeUnauthorized    = "unauthorized"
	codeForbidden       = "forbidden"
	codeLimitExceeded   = "limit_exceeded"
	codeNotFound        = "not_found"
	codeMethod          = "method_not_allowed"
	codeTooLarge        = "payload_too_large"
	codeMediaType       = "unsupported_media_type"
	codeRateLimited     = "rate_limited"
	codeUnavailable     = "unavailable"
	codeInternal        = "internal_error"
	messageUnavailable  = "the service cannot reach its data store right now; nothing was accepted, retry shortly"
	messageInternal     = "something went wrong on our side; nothing was accepted"
	messageShuttingDown = "this node is shutting down; retry on another"
)

// errShuttingDown refuses new work while the node drains.
var errShuttingDown = &Error{Status: http.StatusServiceUnavailable, Code: codeUnavailable, Message: messageShuttingDown}

// sentinels is the one table mapping package errors to the contract. The wrapped message (the
// part before the sentinel) becomes the response message.
var sentinels = []struct {
	err    error
	status int
	code   string
}{
	{tenant.ErrInvalid, http.StatusBadRequest, codeInvalid},
	{tenant.ErrNoSigningKey, http.StatusBadRequest, codeInvalid},
	{tenant.ErrUnauthorized, http.StatusUnauthorized, codeUnauthorized},
	{tenant.ErrSuspended, http.StatusForbidden, codeForbidden},
	{tenant.ErrNotFound, http.StatusNotFound, codeNotFound},
	{session.ErrLimitExceeded, http.StatusForbidden, codeLimitExceeded},
	{session.ErrNotFound, http.StatusNotFound, codeNotFound},
	{stream.ErrUnavailable, http.StatusServiceUnavailable, codeUnavailable},
	{stream.ErrNoReply, http.StatusServiceUnavailable, codeUnavailable},
}

// remoteStatus gives the status of a refusal another node sent back.
var remoteStatus = map[string]int{
	codeInvalid: http.StatusBadRequest, codeForbidden: http.StatusForbidden, codeLimitExceeded: http.StatusForbidden,
	codeNotFound: http.StatusNotFound, codeUnavailable: http.StatusServiceUnavailable, codeInternal: http.StatusInternalServerError,
}

// toError maps any error to the contract's shape. Errors it does not know are logged (without
// request data) and answered with a generic 500.
func toError(log *slog.Logger, err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	var re *stream.RemoteError
	if errors.As(err, &re) {
		status, ok := remoteStatus[re.Code]
		if !ok {
			status = http.StatusInternalServerError
		}
		return &Error{Status: status, Code: re.Code, Message: re.Message}
	}
	for _, s := range sentinels {
		if errors.Is(err, s.err) {
			msg := err.Error()
			if s.status == http.StatusServiceUnavailable {
				msg = messageUnavailable
			} else if before, ok := strings.CutSuffix(msg, ": "+s.err.Error()); ok {
				msg = before
			}
			return &Error{Status: s.status, Code: s.code, Message: sentence(msg)}
		}
	}
	if redisDown(err) {
		log.Warn("redis unavailable", "err", err)
		return &Error{Status: http.StatusServiceUnavailable, Code: codeUnavailable, Message: messageUnavailable}
	}
	log.Error("unhandled error", "err", err)
	return &Error{Status: http.StatusInternalServerError, Code: codeInternal, Message: messageInternal}
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
		for _, p := range []string{"LOADING", "MASTERDOWN", "CLUSTERDOWN", "READONLY", "TRYAGAIN", "BUSY"} {
			if strings.HasPrefix(rerr.Error(), p) {
				return true
			}
		}
	}
	return false
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
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}
