// Package docs holds the API reference page: the OpenAPI document rendered by Scalar's
// standalone bundle (assets/standalone.js, vendored with its LICENSE), embedded into the api
// binary and served at /docs. Nothing is loaded from another origin.
//
// To update the renderer: npm pack @scalar/api-reference@<version>, copy the package's
// dist/browser/standalone.js over assets/standalone.js, and change the version in LICENSE and
// README.md.
package docs

import "embed"

// Files is the page: index.html and assets/.
//
//go:embed index.html assets
var Files embed.FS
