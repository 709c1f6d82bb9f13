package httpapi

import (
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/streamgate/streamgate/internal/tenant"
)

type tenantView struct {
	ID        string        `json:"id"`
	Name      string        `json:"name"`
	CreatedAt time.Time     `json:"created_at"`
	Limits    tenant.Limits `json:"limits"`
}

type keyView struct {
	ID        string    `json:"id"`
	Secret    string    `json:"secret"`
	CreatedAt time.Time `json:"created_at"`
}

func viewTenant(t tenant.Tenant) tenantView {
	return tenantView{ID: t.ID, Name: t.Name, CreatedAt: t.CreatedAt, Limits: t.Limits}
}

func (s *Server) handleSignup() gin.HandlerFunc {
	type request struct {
		Name *string `json:"name"`
	}
	return func(c *gin.Context) {
		admin := s.isAdmin(c.Request)
		if !s.cfg.SignupOpen && !admin {
			s.abort(c, errorf(http.StatusUnauthorized, CodeUnauthorized, "Signup is closed: only the operator's admin token may create tenants"))
			return
		}
		// The operator's own signups are not limited.
		if !admin {
			if e := s.limitSignup(c); e != nil {
				s.abort(c, e)
				return
			}
		}
		var req request
		if e := decodeJSON(c.Request, smallBodyLimit, &req, false); e != nil {
			s.abort(c, e)
			return
		}
		if req.Name == nil {
			s.abort(c, errorf(http.StatusBadRequest, CodeInvalid, "Field \"name\" is required"))
			return
		}
		su, err := s.tenants.Create(c.Request.Context(), *req.Name)
		if err != nil {
			s.fail(c, err)
			return
		}
		s.log.Info("tenant signed up", "tenant", su.Tenant.ID)
		writeJSON(c.Writer, http.StatusCreated, gin.H{
			"tenant":      viewTenant(su.Tenant),
			"api_key":     keyView{ID: su.APIKey.ID, Secret: su.APIKey.Secret, CreatedAt: su.APIKey.CreatedAt},
			"signing_key": keyView{ID: su.SigningKey.ID, Secret: su.SigningKey.Secret, CreatedAt: su.SigningKey.CreatedAt},
		})
	}
}

func (s *Server) handleGetTenant() gin.HandlerFunc {
	return func(c *gin.Context) {
		t := tenantOf(c)
		conns, subs, err := s.streams.Usage(c.Request.Context(), t.ID)
		if err != nil {
			s.fail(c, err)
			return
		}
		writeJSON(c.Writer, http.StatusOK, gin.H{
			"id": t.ID, "name": t.Name, "created_at": t.CreatedAt, "limits": t.Limits,
			"usage": gin.H{"connections": conns, "subscriptions": subs},
		})
	}
}

func (s *Server) handleCreateAPIKey() gin.HandlerFunc {
	return func(c *gin.Context) {
		if e := decodeJSON(c.Request, smallBodyLimit, &struct{}{}, true); e != nil {
			s.abort(c, e)
			return
		}
		k, err := s.tenants.CreateAPIKey(c.Request.Context(), tenantOf(c).ID)
		if err != nil {
			s.fail(c, err)
			return
		}
		writeJSON(c.Writer, http.StatusCreated, keyView{ID: k.ID, Secret: k.Secret, CreatedAt: k.CreatedAt})
	}
}

func (s *Server) handleListAPIKeys() gin.HandlerFunc {
	return func(c *gin.Context) {
		ks, err := s.tenants.APIKeys(c.Request.Context(), tenantOf(c).ID)
		if err != nil {
			s.fail(c, err)
			return
		}
		writeJSON(c.Writer, http.StatusOK, gin.H{"api_keys": ks})
	}
}

func (s *Server) handleRevokeAPIKey() gin.HandlerFunc {
	return func(c *gin.Context) {
		if err := s.tenants.RevokeAPIKey(c.Request.Context(), tenantOf(c).ID, c.Param("id")); err != nil {
			s.fail(c, err)
			return
		}
		c.Status(http.StatusNoContent)
	}
}

func (s *Server) handleCreateSigningKey() gin.HandlerFunc {
	return func(c *gin.Context) {
		if e := decodeJSON(c.Request, smallBodyLimit, &struct{}{}, true); e != nil {
			s.abort(c, e)
			return
		}
		k, err := s.tenants.CreateSigningKey(c.Request.Context(), tenantOf(c).ID)
		if err != nil {
			s.fail(c, err)
			return
		}
		writeJSON(c.Writer, http.StatusCreated, keyView{ID: k.ID, Secret: k.Secret, CreatedAt: k.CreatedAt})
	}
}

func (s *Server) handleListSigningKeys() gin.HandlerFunc {
	return func(c *gin.Context) {
		ks, err := s.tenants.SigningKeys(c.Request.Context(), tenantOf(c).ID)
		if err != nil {
			s.fail(c, err)
			return
		}
		writeJSON(c.Writer, http.StatusOK, gin.H{"signing_keys": ks})
	}
}

func (s *Server) handleDeleteSigningKey() gin.HandlerFunc {
	return func(c *gin.Context) {
		t := tenantOf(c)
		id := c.Param("id")
		if err := s.tenants.DeleteSigningKey(c.Request.Context(), t.ID, id); err != nil {
			s.fail(c, err)
			return
		}
		// This node closes its sessions now; the others hear it on the control channel.
		s.streams.Control(tenant.Event{Type: tenant.EventSigningKeyDeleted, TenantID: t.ID, KeyID: id})
		c.Status(http.StatusNoContent)
	}
}

func (s *Server) handleMintToken() gin.HandlerFunc {
	type request struct {
		Sub        *string  `json:"sub"`
		Channels   []string `json:"channels"`
		TTLSeconds *int     `json:"ttl_seconds"`
	}
	return func(c *gin.Context) {
		if e := s.limitTokens(c, tenantOf(c).ID); e != nil {
			s.abort(c, e)
			return
		}
		var req request
		if e := decodeJSON(c.Request, smallBodyLimit, &req, false); e != nil {
			s.abort(c, e)
			return
		}
		if req.Sub == nil {
			s.abort(c, errorf(http.StatusBadRequest, CodeInvalid, "Field \"sub\" is required"))
			return
		}
		ttl := tenant.DefaultTokenTTL
		if req.TTLSeconds != nil {
			ttl = time.Duration(*req.TTLSeconds) * time.Second
			if *req.TTLSeconds < 1 || *req.TTLSeconds > 86400 {
				s.abort(c, errorf(http.StatusBadRequest, CodeInvalid, "Field \"ttl_seconds\" must be between 1 and 86400"))
				return
			}
		}
		tok, exp, err := s.tenants.MintToken(c.Request.Context(), tenantOf(c).ID, *req.Sub, req.Channels, ttl)
		if err != nil {
			s.fail(c, err)
			return
		}
		writeJSON(c.Writer, http.StatusCreated, gin.H{"token": tok, "expires_at": exp})
	}
}

func (s *Server) handleGetSettings() gin.HandlerFunc {
	return func(c *gin.Context) {
		writeJSON(c.Writer, http.StatusOK, viewSettings(tenantOf(c).Settings))
	}
}

// handlePutSettings replaces the tenant's settings; every node applies them to new
// subscriptions within the tenant cache's time.
func (s *Server) handlePutSettings() gin.HandlerFunc {
	type request struct {
		PresenceChannels []string `json:"presence_channels"`
	}
	return func(c *gin.Context) {
		var req request
		if e := decodeJSON(c.Request, smallBodyLimit, &req, false); e != nil {
			s.abort(c, e)
			return
		}
		t, err := s.tenants.PutSettings(c.Request.Context(), tenantOf(c).ID, tenant.Settings{PresenceChannels: req.PresenceChannels})
		if err != nil {
			s.fail(c, err)
			return
		}
		writeJSON(c.Writer, http.StatusOK, viewSettings(t.Settings))
	}
}

func viewSettings(st tenant.Settings) tenant.Settings {
	if st.PresenceChannels == nil {
		st.PresenceChannels = []string{}
	}
	return st
}

// handleTenantStats reports the tenant's figures over the whole cluster: live usage from the
// nodes' heartbeats, totals from Redis. At most two seconds old.
func (s *Server) handleTenantStats() gin.HandlerFunc {
	return func(c *gin.Context) {
		ctx := c.Request.Context()
		t := tenantOf(c)
		v, err := s.adminTenantView(ctx, t)
		if err != nil {
			s.fail(c, err)
			return
		}
		nodes, err := s.cluster.Nodes(ctx)
		if err != nil {
			s.fail(c, err)
			return
		}
		writeJSON(c.Writer, http.StatusOK, gin.H{
			"connections": v.Usage.Connections, "subscriptions": v.Usage.Subscriptions,
			"published_total": v.PublishedTotal, "delivered_total": v.Delivered,
			"dropped_total": v.Dropped, "evicted_total": v.Evicted, "nodes": len(nodes),
			"presence_channels": v.PresenceChannels,
		})
	}
}

func (s *Server) handleHealth() gin.HandlerFunc {
	return func(c *gin.Context) { writeJSON(c.Writer, http.StatusOK, gin.H{"status": "ok"}) }
}

func (s *Server) handleReady() gin.HandlerFunc {
	return func(c *gin.Context) {
		if s.stopped() {
			writeError(c.Writer, &Error{Status: http.StatusServiceUnavailable, Code: CodeUnavailable, Message: messageShuttingDown})
			return
		}
		if s.ready != nil && !s.ready() {
			writeError(c.Writer, &Error{Status: http.StatusServiceUnavailable, Code: CodeUnavailable, Message: "Redis is not answering"})
			return
		}
		writeJSON(c.Writer, http.StatusOK, gin.H{"status": "ready"})
	}
}
