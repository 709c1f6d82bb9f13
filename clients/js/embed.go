// Package jsclient embeds the JavaScript client, @streamgate/client, so that the api can serve
// it: a tenant's page imports it from the api's /client/index.js, and the operator dashboard
// reads its own event stream with the client's parser and backoff.
package jsclient

import "embed"

// Files holds the package's modules and types, as published: index.js, index.d.ts and src/.
//
//go:embed index.js index.d.ts src/*.js
var Files embed.FS
