// Package chartcheck tests the Helm chart in ../streamgate: it renders the chart with Helm's
// own packages, decodes the manifests into Kubernetes' types and checks them against what the
// api and the worker read, serve and export. It is a module of its own so that Helm and the
// Kubernetes client libraries stay out of Streamgate's go.mod; `make test-helm` runs it.
package chartcheck
