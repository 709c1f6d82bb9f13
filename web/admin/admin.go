// Package admin holds the operator dashboard: static HTML, CSS and JavaScript modules, embedded
// into the api binary and served at /admin/. There is no build step.
package admin

import "embed"

// Files is the dashboard: index.html and, under assets/, the stylesheet, main.js (the entry)
// with the modules it imports, render/ (the views' DOM code) and vendor/ (uPlot).
//
//go:embed index.html assets/*.css assets/*.js assets/render/*.js assets/vendor
var Files embed.FS
