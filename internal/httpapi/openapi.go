package httpapi

import (
	_ "embed"
	jsclient "github.com/streamgate/streamgate/clients/js"
	"net/http"

	"github.com/gin-gonic/gin"

	docs "github.com/streamgate/streamgate/web/docs"
)

// openAPIDocument describes every public route: GET /openapi.json serves it and /docs renders
// it. TestOpenAPICoversEveryRoute holds it to the routes of Handler.
//
//go:embed openapi.json
var openAPIDocument []byte

// The reference page runs only its own script, and talks only to this origin (its "try it"
// calls included). The renderer sets styles inline and may start workers from blobs.
const docsCSP = "default-src 'self'; connect-src 'self'; img-src 'self' data: blob:; font-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'; worker-src 'self' blob:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

func (s *Server) handleOpenAPI() gin.HandlerFunc {
	return func(c *gin.Context) {
		h := c.Writer.Header()
		h.Set("Cache-Control", "no-cache")
		h.Set("X-Content-Type-Options", "nosniff")
		c.Data(http.StatusOK, "application/json; charset=utf-8", openAPIDocument)
	}
}

func (s *Server) handleDocsPage() gin.HandlerFunc {
	return embeddedPage(docs.Files, "web/docs", docsCSP)
}

func (s *Server) handleDocsAssets() gin.HandlerFunc {
	return embeddedFiles(docs.Files, "assets", "/docs/assets/", "reference page", map[string]string{
		"Content-Security-Policy": docsCSP,
		"Cache-Control":           "no-cache",
	})
}

// handleClientFiles serves the JavaScript client, so that a tenant's page on any origin can
// import it: import { connect } from "https://<node>/client/index.js". It is public code: no
// credentials, any origin.
func (s *Server) handleClientFiles() gin.HandlerFunc {
	return embeddedFiles(jsclient.Files, ".", "/client/", "client", map[string]string{
		"Access-Control-Allow-Origin": "*",
		"Cache-Control":               "public, max-age=300",
	})
}
