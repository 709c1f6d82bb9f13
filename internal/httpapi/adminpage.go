package httpapi

import (
	"io/fs"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	admin "github.com/streamgate/streamgate/web/admin"
)

// The dashboard loads only its own files and talks only to this origin.
const adminCSP = "default-src 'self'; connect-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

func (s *Server) handleAdminPage() gin.HandlerFunc {
	return embeddedPage(admin.Files, "web/admin", adminCSP)
}

// embeddedPage serves the index.html of an embedded web folder (named by dir in the panic
// that a build without it deserves), under the given content security policy.
func embeddedPage(files fs.ReadFileFS, dir, csp string) gin.HandlerFunc {
	page, err := files.ReadFile("index.html")
	if err != nil {
		panic(dir + ": index.html missing from the embedded files: " + err.Error())
	}
	return func(c *gin.Context) {
		h := c.Writer.Header()
		h.Set("Content-Security-Policy", csp)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-cache")
		c.Data(http.StatusOK, "text/html; charset=utf-8", page)
	}
}

func (s *Server) handleAdminAssets() gin.HandlerFunc {
	return embeddedFiles(admin.Files, "assets", "/admin/assets/", "dashboard", map[string]string{
		"Content-Security-Policy": adminCSP,
		"Cache-Control":           "no-cache",
	})
}

// embeddedFiles serves the files under folder dir of an embedded file system at the route
// prefix (whose last segment is the *file parameter), with the given headers. what names the
// files in the 404 answer.
func embeddedFiles(files fs.FS, dir, prefix, what string, headers map[string]string) gin.HandlerFunc {
	sub, err := fs.Sub(files, dir)
	if err != nil {
		panic(what + ": " + dir + " missing from the embedded files: " + err.Error())
	}
	server := http.StripPrefix(prefix, http.FileServer(http.FS(sub)))
	return func(c *gin.Context) {
		// Only files: the file server would list a folder and answer a missing file in plain
		// text, outside the contract's error shape.
		if fi, err := fs.Stat(sub, strings.TrimPrefix(c.Param("file"), "/")); err != nil || fi.IsDir() {
			writeError(c.Writer, errorf(http.StatusNotFound, CodeNotFound, "No %s file at %s", what, c.Request.URL.EscapedPath()))
			return
		}
		h := c.Writer.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		for k, v := range headers {
			h.Set(k, v)
		}
		server.ServeHTTP(c.Writer, c.Request)
	}
}
