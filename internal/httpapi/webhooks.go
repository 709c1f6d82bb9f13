package httpapi

import (
	"net/http"

	"github.com/gin-gonic/gin"

	streamgate "github.com/streamgate/streamgate"
	"github.com/streamgate/streamgate/internal/webhook"
)

// webhookID reads the {id} of a webhook route; a malformed one is a 400.
func (s *Server) webhookID(c *gin.Context) (string, bool) {
	id := c.Param("id")
	if !streamgate.ValidID(id) {
		s.abort(c, errorf(http.StatusBadRequest, CodeInvalid, "Webhook ids are 1 to 128 characters of A-Z a-z 0-9 _ - . :"))
		return "", false
	}
	return id, true
}

// handleCreateWebhook serves POST /v1/webhooks: the new endpoint and its secret, shown once.
func (s *Server) handleCreateWebhook() gin.HandlerFunc {
	type request struct {
		URL         *string  `json:"url"`
		Events      []string `json:"events"`
		Description string   `json:"description"`
	}
	return func(c *gin.Context) {
		var req request
		if e := decodeJSON(c.Request, smallBodyLimit, &req, false); e != nil {
			s.abort(c, e)
			return
		}
		if req.URL == nil {
			s.abort(c, errorf(http.StatusBadRequest, CodeInvalid, "Field \"url\" is required"))
			return
		}
		t := tenantOf(c)
		ep, secret, err := s.webhooks.Create(c.Request.Context(), t.ID, webhook.Input{URL: *req.URL, Events: req.Events, Description: req.Description})
		if err != nil {
			s.fail(c, err)
			return
		}
		s.log.Info("webhook created", "tenant", t.ID, "webhook", ep.ID)
		writeJSON(c.Writer, http.StatusCreated, gin.H{"webhook": ep, "secret": secret})
	}
}

// handleListWebhooks serves GET /v1/webhooks, without secrets.
func (s *Server) handleListWebhooks() gin.HandlerFunc {
	return func(c *gin.Context) {
		eps, err := s.webhooks.List(c.Request.Context(), tenantOf(c).ID)
		if err != nil {
			s.fail(c, err)
			return
		}
		writeJSON(c.Writer, http.StatusOK, gin.H{"webhooks": eps})
	}
}

// handlePatchWebhook serves PATCH /v1/webhooks/{id}: url, events, description, disabled.
func (s *Server) handlePatchWebhook() gin.HandlerFunc {
	type request struct {
		URL         *string   `json:"url"`
		Events      *[]string `json:"events"`
		Description *string   `json:"description"`
		Disabled    *bool     `json:"disabled"`
	}
	return func(c *gin.Context) {
		id, ok := s.webhookID(c)
		if !ok {
			return
		}
		var req request
		if e := decodeJSON(c.Request, smallBodyLimit, &req, false); e != nil {
			s.abort(c, e)
			return
		}
		if req.URL == nil && req.Events == nil && req.Description == nil && req.Disabled == nil {
			s.abort(c, errorf(http.StatusBadRequest, CodeInvalid, "Set at least one of \"url\", \"events\", \"description\" and \"disabled\""))
			return
		}
		ep, err := s.webhooks.Update(c.Request.Context(), tenantOf(c).ID, id,
			webhook.Patch{URL: req.URL, Events: req.Events, Description: req.Description, Disabled: req.Disabled})
		if err != nil {
			s.fail(c, err)
			return
		}
		writeJSON(c.Writer, http.StatusOK, ep)
	}
}

// handleDeleteWebhook serves DELETE /v1/webhooks/{id}: deliveries stop, queued ones are dropped.
func (s *Server) handleDeleteWebhook() gin.HandlerFunc {
	return func(c *gin.Context) {
		id, ok := s.webhookID(c)
		if !ok {
			return
		}
		t := tenantOf(c)
		if err := s.webhooks.Delete(c.Request.Context(), t.ID, id); err != nil {
			s.fail(c, err)
			return
		}
		s.log.Info("webhook deleted", "tenant", t.ID, "webhook", id)
		c.Status(http.StatusNoContent)
	}
}

// handleTestWebhook serves POST /v1/webhooks/{id}/test: a webhook.test delivery is queued.
func (s *Server) handleTestWebhook() gin.HandlerFunc {
	return func(c *gin.Context) {
		id, ok := s.webhookID(c)
		if !ok {
			return
		}
		if e := decodeJSON(c.Request, smallBodyLimit, &struct{}{}, true); e != nil {
			s.abort(c, e)
			return
		}
		deliveryID, err := s.webhooks.Test(c.Request.Context(), tenantOf(c).ID, id)
		if err != nil {
			s.fail(c, err)
			return
		}
		writeJSON(c.Writer, http.StatusAccepted, gin.H{"delivery_id": deliveryID})
	}
}

// handleWebhookDeliveries serves GET /v1/webhooks/{id}/deliveries: the last attempts, newest
// first; with ?status=dead, the dead deliveries still kept instead.
func (s *Server) handleWebhookDeliveries() gin.HandlerFunc {
	return func(c *gin.Context) {
		id, ok := s.webhookID(c)
		if !ok {
			return
		}
		var rows []webhook.Attempt
		var err error
		switch status := c.Query("status"); status {
		case "":
			rows, err = s.webhooks.Attempts(c.Request.Context(), tenantOf(c).ID, id)
		case webhook.StatusDead:
			rows, err = s.webhooks.Dead(c.Request.Context(), tenantOf(c).ID, id, webhook.HistoryRows)
		default:
			s.abort(c, errorf(http.StatusBadRequest, CodeInvalid, "Parameter \"status\" may only be \"dead\""))
			return
		}
		if err != nil {
			s.fail(c, err)
			return
		}
		writeJSON(c.Writer, http.StatusOK, gin.H{"deliveries": rows})
	}
}

// handleRotateWebhookSecret serves POST /v1/webhooks/{id}/rotate-secret: the new secret, shown
// once; the old one keeps signing beside it for a day.
func (s *Server) handleRotateWebhookSecret() gin.HandlerFunc {
	return func(c *gin.Context) {
		id, ok := s.webhookID(c)
		if !ok {
			return
		}
		if e := decodeJSON(c.Request, smallBodyLimit, &struct{}{}, true); e != nil {
			s.abort(c, e)
			return
		}
		t := tenantOf(c)
		secret, err := s.webhooks.RotateSecret(c.Request.Context(), t.ID, id)
		if err != nil {
			s.fail(c, err)
			return
		}
		s.log.Info("webhook secret rotated", "tenant", t.ID, "webhook", id)
		writeJSON(c.Writer, http.StatusOK, gin.H{"secret": secret})
	}
}
