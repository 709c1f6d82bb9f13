package httpapi

import (
	"net/http"

	"github.com/gin-gonic/gin"

	streamgate "github.com/streamgate/streamgate"
	"github.com/streamgate/streamgate/internal/tenant"
)

// handleSubscribe serves POST /v1/sessions/{id}/subscriptions for the session's own end user,
// on any node: the node holding the stream applies it.
func (s *Server) handleSubscribe() gin.HandlerFunc {
	type request struct {
		Channel *string `json:"channel"`
	}
	return func(c *gin.Context) {
		claims, t, ok := s.endUser(c)
		if !ok {
			return
		}
		if e := pathIDs(c); e != nil {
			s.abort(c, e)
			return
		}
		var req request
		if e := decodeJSON(c.Request, smallBodyLimit, &req, false); e != nil {
			s.abort(c, e)
			return
		}
		if req.Channel == nil || !streamgate.ValidChannel(*req.Channel) {
			s.abort(c, errorf(http.StatusBadRequest, CodeInvalid, "Field \"channel\" must be a channel name: 1 to 200 characters of A-Z a-z 0-9 _ - . : @ = ,"))
			return
		}
		if err := s.streams.Subscribe(c.Request.Context(), claims, t, c.Param("id"), *req.Channel); err != nil {
			s.fail(c, err)
			return
		}
		c.Status(http.StatusCreated)
	}
}

// handleUnsubscribe serves DELETE /v1/sessions/{id}/subscriptions/{channel}. Removing a channel
// the session does not have is not an error: retries stay harmless.
func (s *Server) handleUnsubscribe() gin.HandlerFunc {
	return func(c *gin.Context) {
		claims, t, ok := s.endUser(c)
		if !ok {
			return
		}
		if e := pathIDs(c); e != nil {
			s.abort(c, e)
			return
		}
		ch := c.Param("channel")
		if !streamgate.ValidChannel(ch) {
			s.abort(c, errorf(http.StatusBadRequest, CodeInvalid, "Channel names are 1 to 200 characters of A-Z a-z 0-9 _ - . : @ = ,"))
			return
		}
		if err := s.streams.Unsubscribe(c.Request.Context(), claims, t, c.Param("id"), ch); err != nil {
			s.fail(c, err)
			return
		}
		c.Status(http.StatusNoContent)
	}
}

// handleRefreshToken serves POST /v1/sessions/{id}/token: the new token in the body is the only
// credential, and must be of the session's tenant and user. Any node answers.
func (s *Server) handleRefreshToken() gin.HandlerFunc {
	type request struct {
		Token *string `json:"token"`
	}
	return func(c *gin.Context) {
		var req request
		if e := decodeJSON(c.Request, smallBodyLimit, &req, false); e != nil {
			s.abort(c, e)
			return
		}
		if req.Token == nil || *req.Token == "" {
			s.abort(c, errorf(http.StatusBadRequest, CodeInvalid, "Field \"token\" is required: the new end-user token"))
			return
		}
		ctx := c.Request.Context()
		claims, err := s.tenants.VerifyToken(ctx, *req.Token)
		if err != nil {
			s.fail(c, err)
			return
		}
		t, err := s.tenants.Cached(ctx, claims.TenantID)
		if err != nil {
			s.fail(c, err)
			return
		}
		if err := s.streams.RefreshToken(ctx, claims, t, c.Param("id")); err != nil {
			s.fail(c, err)
			return
		}
		writeJSON(c.Writer, http.StatusOK, gin.H{"expires_at": claims.ExpiresAt.UTC()})
	}
}

// endUser verifies the end-user token of a request; on a refusal it answers and ok is false.
func (s *Server) endUser(c *gin.Context) (claims tenant.Claims, t tenant.Tenant, ok bool) {
	ctx := c.Request.Context()
	raw := bearer(c.Request)
	if raw == "" {
		s.abort(c, errorf(http.StatusUnauthorized, CodeUnauthorized, "Send the end-user token of the session as Authorization: Bearer <token>"))
		return claims, t, false
	}
	claims, err := s.tenants.VerifyToken(ctx, raw)
	if err != nil {
		s.fail(c, err)
		return claims, t, false
	}
	t, err = s.tenants.Cached(ctx, claims.TenantID)
	if err != nil {
		s.fail(c, err)
		return claims, t, false
	}
	return claims, t, true
}
