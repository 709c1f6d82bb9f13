package httpapi

import (
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/streamgate/streamgate/internal/tenant"
)

func (s *Server) handleCreateIdentityProvider() gin.HandlerFunc {
	type request struct {
		Issuer        string `json:"issuer"`
		Audience      string `json:"audience"`
		JWKSURL       string `json:"jwks_url"`
		PublicKey     string `json:"public_key"`
		Algorithm     string `json:"algorithm"`
		ChannelsClaim string `json:"channels_claim"`
	}
	return func(c *gin.Context) {
		var req request
		if e := decodeJSON(c.Request, smallBodyLimit, &req, false); e != nil {
			s.abort(c, e)
			return
		}
		p, err := s.tenants.CreateIdentityProvider(c.Request.Context(), tenantOf(c).ID, tenant.IdentityProvider{
			Issuer: req.Issuer, Audience: req.Audience, JWKSURL: req.JWKSURL,
			PublicKey: req.PublicKey, Algorithm: req.Algorithm, ChannelsClaim: req.ChannelsClaim,
		})
		if err != nil {
			s.fail(c, err)
			return
		}
		writeJSON(c.Writer, http.StatusCreated, p)
	}
}

func (s *Server) handleListIdentityProviders() gin.HandlerFunc {
	return func(c *gin.Context) {
		ps, err := s.tenants.IdentityProviders(c.Request.Context(), tenantOf(c).ID)
		if err != nil {
			s.fail(c, err)
			return
		}
		writeJSON(c.Writer, http.StatusOK, gin.H{"identity_providers": ps})
	}
}

func (s *Server) handleDeleteIdentityProvider() gin.HandlerFunc {
	return func(c *gin.Context) {
		t := tenantOf(c)
		id := c.Param("id")
		if err := s.tenants.DeleteIdentityProvider(c.Request.Context(), t.ID, id); err != nil {
			s.fail(c, err)
			return
		}
		// This node closes its sessions now; the others hear it on the control channel.
		s.streams.Control(tenant.Event{Type: tenant.EventIdentityProviderDeleted, TenantID: t.ID, KeyID: id})
		c.Status(http.StatusNoContent)
	}
}
