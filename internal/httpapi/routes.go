package httpapi

import (
	"net/http"

	"github.com/gin-gonic/gin"
)

// Handler returns every route of the node. This is the one place to see the whole API.
func (s *Server) Handler() http.Handler {
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.HandleMethodNotAllowed = true
	r.RedirectTrailingSlash = false
	r.RedirectFixedPath = false
	r.Use(s.recoverer(), s.cors())
	r.NoRoute(func(c *gin.Context) {
		writeError(c.Writer, errorf(http.StatusNotFound, codeNotFound, "No route %s %s", c.Request.Method, c.Request.URL.Path))
	})
	r.NoMethod(func(c *gin.Context) {
		writeError(c.Writer, errorf(http.StatusMethodNotAllowed, codeMethod, "Method %s is not allowed on %s", c.Request.Method, c.Request.URL.Path))
	})

	r.GET("/healthz", s.handleHealth())
	r.GET("/readyz", s.handleReady())

	v1 := r.Group("/v1")
	v1.POST("/tenants", s.handleSignup())
	v1.GET("/stream", gin.WrapH(s.streamHandler()))

	key := v1.Group("", s.requireAPIKey())
	key.GET("/tenant", s.handleGetTenant())
	key.POST("/api-keys", s.handleCreateAPIKey())
	key.GET("/api-keys", s.handleListAPIKeys())
	key.DELETE("/api-keys/:id", s.handleRevokeAPIKey())
	key.POST("/signing-keys", s.handleCreateSigningKey())
	key.GET("/signing-keys", s.handleListSigningKeys())
	key.DELETE("/signing-keys/:id", s.handleDeleteSigningKey())
	key.POST("/tokens", s.handleMintToken())
	key.POST("/channels/:channel/events", s.handlePublish())
	key.POST("/events", s.handlePublishBatch())
	key.GET("/stats", s.handleTenantStats())
	return r
}
