package httpapi

import (
	"context"
	"net"
	"net/http"

	"github.com/gin-gonic/gin"
)

// Handler returns every route of the node. Serve it with ConnContext as the http.Server's
// ConnContext: a stream then takes its connection's socket without hijacking it.
func (s *Server) Handler() http.Handler {
	router := s.router()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		router.ServeHTTP(w, r)
		if h := heldConnOf(r); h != nil && h.taken() {
			// A stream holds the socket through a descriptor of its own: net/http closes its
			// side without writing anything, and keeps its buffers for the next connection.
			panic(http.ErrAbortHandler)
		}
	})
}

// ConnContext records each connection in its requests' context, for a stream to take its
// socket: set it as the http.Server's ConnContext.
func (s *Server) ConnContext(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, heldConnKey{}, &heldConn{conn: c})
}

// router lists every route of the node. This is the one place to see the whole API; the
// OpenAPI document (openapi.json) describes each public one.
func (s *Server) router() *gin.Engine {
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	// X-Forwarded-For names the client only when a trusted proxy sent it; gin trusts every
	// proxy unless told otherwise.
	if err := r.SetTrustedProxies(s.cfg.TrustedProxies); err != nil {
		s.log.Error("trusted proxies ignored: trusting none", "err", err)
		_ = r.SetTrustedProxies(nil)
	}
	r.HandleMethodNotAllowed = true
	r.RedirectTrailingSlash = false
	r.RedirectFixedPath = false
	r.Use(s.observe(), s.recoverer(), s.bodyDeadline(), s.cors())
	r.NoRoute(func(c *gin.Context) {
		if isMercurePath(c.Request.URL.Path) {
			s.mercureRest(c) // a path below a hub: its own rules
			return
		}
		writeError(c.Writer, errorf(http.StatusNotFound, CodeNotFound, "No route %s %s", c.Request.Method, c.Request.URL.EscapedPath()))
	})
	r.NoMethod(func(c *gin.Context) {
		if isMercurePath(c.Request.URL.Path) {
			s.mercureRest(c) // CORS preflights, and Mercure's own 405
			return
		}
		writeError(c.Writer, errorf(http.StatusMethodNotAllowed, CodeMethod, "Method %s is not allowed on %s", c.Request.Method, c.Request.URL.EscapedPath()))
	})

	r.GET("/healthz", s.handleHealth())
	r.GET("/readyz", s.handleReady())
	if s.metricsHandler != nil {
		r.GET("/metrics", gin.WrapH(s.metricsHandler))
	}
	r.GET("/openapi.json", s.handleOpenAPI())
	r.GET("/docs", s.handleDocsPage())
	r.GET("/docs/assets/*file", s.handleDocsAssets())
	r.GET("/client/*file", s.handleClientFiles())

	v1 := r.Group("/v1")
	v1.POST("/tenants", s.handleSignup())
	v1.GET("/stream", withClientIP(), gin.WrapH(s.streamHandler()))

	v1.POST("/sessions/:id/subscriptions", s.handleSubscribe())
	v1.DELETE("/sessions/:id/subscriptions/:channel", s.handleUnsubscribe())
	v1.POST("/sessions/:id/token", s.handleRefreshToken())
	// Reads of a channel take the API key or an end-user token that grants the channel.
	v1.GET("/channels/:channel/events", s.handleReadHistory())
	v1.GET("/channels/:channel/presence", s.handleReadPresence())

	key := v1.Group("", s.requireAPIKey(), s.checkIDs())
	key.GET("/tenant", s.handleGetTenant())
	key.POST("/api-keys", s.handleCreateAPIKey())
	key.GET("/api-keys", s.handleListAPIKeys())
	key.DELETE("/api-keys/:id", s.handleRevokeAPIKey())
	key.POST("/signing-keys", s.handleCreateSigningKey())
	key.GET("/signing-keys", s.handleListSigningKeys())
	key.DELETE("/signing-keys/:id", s.handleDeleteSigningKey())
	key.POST("/identity-providers", s.handleCreateIdentityProvider())
	key.GET("/identity-providers", s.handleListIdentityProviders())
	key.DELETE("/identity-providers/:id", s.handleDeleteIdentityProvider())
	key.POST("/tokens", s.handleMintToken())
	key.POST("/channels/:channel/events", s.handlePublish())
	key.POST("/events", s.handlePublishBatch())
	key.GET("/stats", s.handleTenantStats())
	key.GET("/settings", s.handleGetSettings())
	key.PUT("/settings", s.handlePutSettings())
	key.PUT("/jobs/:id", s.handlePutJob())
	key.GET("/jobs/:id", s.handleGetJob())
	key.PUT("/workflows/:id", s.handlePutWorkflow())
	key.GET("/workflows/:id", s.handleGetWorkflow())
	key.PUT("/workflows/:id/steps/:name", s.handlePutStep())
	key.POST("/webhooks", s.handleCreateWebhook())
	key.GET("/webhooks", s.handleListWebhooks())
	key.PATCH("/webhooks/:id", s.handlePatchWebhook())
	key.DELETE("/webhooks/:id", s.handleDeleteWebhook())
	key.POST("/webhooks/:id/test", s.handleTestWebhook())
	key.GET("/webhooks/:id/deliveries", s.handleWebhookDeliveries())
	key.POST("/webhooks/:id/rotate-secret", s.handleRotateWebhookSecret())
	key.PUT("/mercure", s.handlePutMercure())
	key.GET("/mercure", s.handleGetMercure())
	key.DELETE("/mercure", s.handleDeleteMercure())

	// Each tenant's Mercure hub: on the hosts it claims, and for everyone under its tenant id.
	// The paths below a hub that a route cannot name (the subscriptions API's escaped topics
	// hold slashes once decoded), other methods and CORS preflights reach mercureRest through
	// NoRoute and NoMethod.
	r.GET(mercurePath, withClientIP(), s.mercureByHost())
	r.POST(mercurePath, withClientIP(), s.mercureByHost())
	r.GET(mercurePath+"/subscriptions", withClientIP(), s.mercureByHost())
	r.GET("/mercure/:tenant"+mercurePath, withClientIP(), s.mercureByPath())
	r.POST("/mercure/:tenant"+mercurePath, withClientIP(), s.mercureByPath())

	r.GET("/admin", func(c *gin.Context) { c.Redirect(http.StatusMovedPermanently, "/admin/") })
	r.GET("/admin/", s.handleAdminPage())
	r.GET("/admin/assets/*file", s.handleAdminAssets())
	admin := r.Group("/admin/api", s.requireAdmin(), s.checkIDs())
	admin.GET("/stats", s.handleAdminStats())
	admin.GET("/stats/stream", gin.WrapH(s.adminStatsStream()))
	admin.GET("/tenants/:id", s.handleAdminTenant())
	admin.PATCH("/tenants/:id", s.handleAdminPatchTenant())
	admin.GET("/tenants/:id/sessions", s.handleAdminSessions())
	admin.GET("/tenants/:id/presence", s.handleAdminPresence())
	admin.GET("/tenants/:id/webhooks", s.handleAdminWebhooks())
	admin.DELETE("/sessions/:id", s.handleAdminEvict())
	return r
}
