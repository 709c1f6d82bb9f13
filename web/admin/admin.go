// Package admin holds the operator dashboard: static HTML, CSS and JavaScript modules, embedded
// into the api binary and served at /admin/. There is no build step.
package admin

import "embed"

// Files is the dashboard: index.html and assets/.
//
//go:embed index.html assets
var Files embed.FS
