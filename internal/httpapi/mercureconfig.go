package httpapi

import (
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/streamgate/streamgate/internal/tenant"
)

// handlePutMercure serves PUT /v1/mercure: the tenant's Mercure hub, replaced whole.
func (s *Server) handlePutMercure() gin.HandlerFunc {
	type request struct {
		Hosts            []string `json:"hosts"`
		PublisherKey     *string  `json:"publisher_jwt_key"`
		SubscriberKey    *string  `json:"subscriber_jwt_key"`
		Algorithm        *string  `json:"jwt_algorithm"`
		Anonymous        *bool    `json:"anonymous"`
		SubscriptionsAPI *bool    `json:"subscriptions_api"`
		CORSOrigins      []string `json:"cors_origins"`
	}
	return func(c *gin.Context) {
		t := tenantOf(c)
		var req request
		if e := decodeJSON(c.Request, smallBodyLimit, &req, false); e != nil {
			s.abort(c, e)
			return
		}
		if req.PublisherKey == nil {
			s.abort(c, errorf(http.StatusBadRequest, CodeInvalid, "Field \"publisher_jwt_key\" is required"))
			return
		}
		cfg := tenant.MercureConfig{
			Hosts:        req.Hosts,
			PublisherKey: *req.PublisherKey,
			CORSOrigins:  req.CORSOrigins,
		}
		if req.SubscriberKey != nil {
			cfg.SubscriberKey = *req.SubscriberKey
		}
		if req.Algorithm != nil {
			if *req.Algorithm == "" {
				s.abort(c, errorf(http.StatusBadRequest, CodeInvalid, "Field \"jwt_algorithm\" must be one of HS256, HS512, RS256, ES256"))
				return
			}
			cfg.Algorithm = *req.Algorithm
		}
		if req.Anonymous != nil {
			cfg.Anonymous = *req.Anonymous
		}
		if req.SubscriptionsAPI != nil {
			cfg.SubscriptionsAPI = *req.SubscriptionsAPI
		}
		out, err := s.tenants.SetMercure(c.Request.Context(), t.ID, cfg)
		if err != nil {
			s.fail(c, err)
			return
		}
		s.log.Info("mercure hub configured", "tenant", t.ID, "hosts", len(out.Hosts))
		writeJSON(c.Writer, http.StatusOK, out)
	}
}

// handleGetMercure serves GET /v1/mercure: the configuration without its keys.
func (s *Server) handleGetMercure() gin.HandlerFunc {
	return func(c *gin.Context) {
		cfg, err := s.tenants.Mercure(c.Request.Context(), tenantOf(c).ID)
		if err != nil {
			s.fail(c, err)
			return
		}
		writeJSON(c.Writer, http.StatusOK, cfg)
	}
}

// handleDeleteMercure serves DELETE /v1/mercure: the hub is turned off and its subscribers closed.
func (s *Server) handleDeleteMercure() gin.HandlerFunc {
	return func(c *gin.Context) {
		t := tenantOf(c)
		if err := s.tenants.DeleteMercure(c.Request.Context(), t.ID); err != nil {
			s.fail(c, err)
			return
		}
		s.log.Info("mercure hub turned off", "tenant", t.ID)
		c.Status(http.StatusNoContent)
	}
}
