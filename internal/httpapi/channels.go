package httpapi

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	streamgate "github.com/streamgate/streamgate"
	"github.com/streamgate/streamgate/internal/delivery"
	"github.com/streamgate/streamgate/internal/tenant"
)

// Bounds of a history read's page.
const (
	defaultHistoryLimit = 100
	maxHistoryLimit     = 1000
)

// reader authenticates a read of a channel: the tenant's API key, or an end user's token (its
// grants are checked by the read itself). On a refusal it answers and ok is false.
func (s *Server) reader(c *gin.Context) (r delivery.Reader, ok bool) {
	ctx := c.Request.Context()
	raw := bearer(c.Request)
	switch {
	case raw == "":
		s.abort(c, errorf(http.StatusUnauthorized, CodeUnauthorized, "Send your API key, or an end-user token that grants the channel, as Authorization: Bearer <credential>"))
		return r, false
	case strings.HasPrefix(raw, "sgk_"):
		t, _, err := s.tenants.Authenticate(ctx, raw)
		if errors.Is(err, tenant.ErrSuspended) {
			s.abort(c, errorf(http.StatusForbidden, CodeForbidden, "The tenant is suspended; contact the operator"))
			return r, false
		}
		if err != nil {
			s.fail(c, err)
			return r, false
		}
		return delivery.Reader{Tenant: t}, true
	default:
		claims, t, ok := s.endUser(c)
		if !ok {
			return r, false
		}
		return delivery.Reader{Tenant: t, Claims: &claims}, true
	}
}

// readableChannel checks the channel of a read's path; reserved channels carry state, not
// history.
func readableChannel(ch string) *Error {
	if !streamgate.ValidChannel(ch) {
		return errorf(http.StatusBadRequest, CodeInvalid, "Channel names are 1 to 200 characters of A-Z a-z 0-9 _ - . : @ = ,")
	}
	if streamgate.Reserved(ch) {
		return errorf(http.StatusBadRequest, CodeReserved, "Channels starting with job: or workflow: carry job and workflow state; read it with GET /v1/jobs/{id} or /v1/workflows/{id}")
	}
	return nil
}

type historyEvent struct {
	ID          string          `json:"id"`
	Event       string          `json:"event"`
	Data        json.RawMessage `json:"data"`
	PublishedAt string          `json:"published_at"`
}

// handleReadHistory serves GET /v1/channels/{channel}/events: a page of the channel's history
// window, for the tenant's backend or an end user whose token grants the channel.
func (s *Server) handleReadHistory() gin.HandlerFunc {
	return func(c *gin.Context) {
		ch := c.Param("channel")
		if e := readableChannel(ch); e != nil {
			s.abort(c, e)
			return
		}
		q := c.Request.URL.Query()
		limit := defaultHistoryLimit
		if v, ok := q["limit"]; ok {
			n, err := strconv.Atoi(v[0])
			if len(v) != 1 || err != nil || n < 1 || n > maxHistoryLimit {
				s.abort(c, errorf(http.StatusBadRequest, CodeInvalid, "Parameter \"limit\" must be a number from 1 to %d", maxHistoryLimit))
				return
			}
			limit = n
		}
		after := q.Get("after")
		if len(q["after"]) > 1 {
			s.abort(c, errorf(http.StatusBadRequest, CodeInvalid, "Parameter \"after\" may be given once"))
			return
		}
		r, ok := s.reader(c)
		if !ok {
			return
		}
		page, err := s.streams.ReadHistory(c.Request.Context(), r, ch, after, limit)
		if err != nil {
			s.fail(c, err)
			return
		}
		events := make([]historyEvent, len(page.Messages))
		next := after
		for i, m := range page.Messages {
			events[i] = historyEvent{ID: m.ID, Event: m.Event, Data: m.Data, PublishedAt: m.PublishedAt}
			next = m.ID
		}
		writeJSON(c.Writer, http.StatusOK, gin.H{"events": events, "next": next, "truncated": page.Truncated})
	}
}

type presenceMember struct {
	Sub      string          `json:"sub"`
	Info     json.RawMessage `json:"info"`
	Sessions int             `json:"sessions"`
	JoinedAt time.Time       `json:"joined_at"`
}

// handleReadPresence serves GET /v1/channels/{channel}/presence: who is on the channel now, for
// the tenant's backend or an end user whose token grants the channel.
func (s *Server) handleReadPresence() gin.HandlerFunc {
	return func(c *gin.Context) {
		ch := c.Param("channel")
		if !streamgate.ValidChannel(ch) {
			s.abort(c, errorf(http.StatusBadRequest, CodeInvalid, "Channel names are 1 to 200 characters of A-Z a-z 0-9 _ - . : @ = ,"))
			return
		}
		r, ok := s.reader(c)
		if !ok {
			return
		}
		l, err := s.streams.ReadPresence(c.Request.Context(), r, ch)
		if err != nil {
			s.fail(c, err)
			return
		}
		members := make([]presenceMember, len(l.Members))
		for i, m := range l.Members {
			members[i] = presenceMember{Sub: m.Sub, Info: m.Info, Sessions: m.Sessions, JoinedAt: m.JoinedAt}
		}
		writeJSON(c.Writer, http.StatusOK, gin.H{"channel": ch, "count": l.Count, "members": members, "truncated": l.Truncated})
	}
}
