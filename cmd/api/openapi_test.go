package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// contract is the OpenAPI document a node serves, ready to check its own answers against.
type contract struct {
	t        *testing.T
	doc      map[string]any
	compiler *jsonschema.Compiler
	routes   []contractRoute
}

type contractRoute struct {
	template string
	re       *regexp.Regexp
}

const contractBase = "https://streamgate.invalid/openapi.json"

func loadContract(t *testing.T, n *node) *contract {
	t.Helper()
	r := n.do(t, call{method: "GET", path: "/openapi.json"}).want(t, 200)
	root, err := jsonschema.UnmarshalJSON(bytes.NewReader(r.Body))
	if err != nil {
		t.Fatalf("GET /openapi.json: %v", err)
	}
	c := &contract{t: t, doc: root.(map[string]any), compiler: jsonschema.NewCompiler()}
	c.compiler.DefaultDraft(jsonschema.Draft2020)
	c.compiler.AssertFormat()
	if err := c.compiler.AddResource(contractBase, root); err != nil {
		t.Fatal(err)
	}
	for tmpl := range c.doc["paths"].(map[string]any) {
		re := "^" + regexp.MustCompile(`\\\{[^}]+\\\}`).ReplaceAllString(regexp.QuoteMeta(tmpl), `[^/]+`) + "$"
		c.routes = append(c.routes, contractRoute{template: tmpl, re: regexp.MustCompile(re)})
	}
	return c
}

// check fails the test unless the document lists the reply's status for the request's operation
// and the reply's JSON body matches the schema given there. It returns the reply.
func (c *contract) check(method, path string, r reply) reply {
	c.t.Helper()
	p := path
	if i := strings.IndexByte(p, '?'); i >= 0 {
		p = p[:i]
	}
	if u, err := url.PathUnescape(p); err == nil {
		p = u
	}
	var tmpl string
	for _, rt := range c.routes {
		// A literal path wins over a template that also matches it.
		if rt.re.MatchString(p) && (tmpl == "" || !strings.Contains(rt.template, "{")) {
			tmpl = rt.template
		}
	}
	op, _ := c.doc["paths"].(map[string]any)[tmpl].(map[string]any)[strings.ToLower(method)].(map[string]any)
	if op == nil {
		c.t.Fatalf("%s %s: no operation in the document", method, path)
	}
	status := fmt.Sprint(r.Status)
	resp, ok := op["responses"].(map[string]any)[status].(map[string]any)
	if !ok {
		c.t.Errorf("%s %s answered %d, which the document does not list: %s", method, tmpl, r.Status, r.Body)
		return r
	}
	ptr := "/paths/" + pointerEscape(tmpl) + "/" + strings.ToLower(method) + "/responses/" + status
	if ref, ok := resp["$ref"].(string); ok {
		ptr = strings.TrimPrefix(ref, "#")
		resp = c.doc["components"].(map[string]any)["responses"].(map[string]any)[ptr[len("/components/responses/"):]].(map[string]any)
	}
	content, _ := resp["content"].(map[string]any)
	if _, ok := content["application/json"]; !ok {
		if len(bytes.TrimSpace(r.Body)) > 0 && len(content) == 0 {
			c.t.Errorf("%s %s %d: a body the document does not describe: %s", method, tmpl, r.Status, r.Body)
		}
		return r
	}
	c.validate(fmt.Sprintf("%s %s %d", method, tmpl, r.Status), ptr+"/content/application~1json/schema", r.Body)
	return r
}

// event checks the data of an SSE event against its schema in components.
func (c *contract) event(schema string, data string) {
	c.t.Helper()
	c.validate("event "+schema, "/components/schemas/"+schema, []byte(data))
}

func (c *contract) validate(where, ptr string, body []byte) {
	c.t.Helper()
	s, err := c.compiler.Compile(contractBase + "#" + ptr)
	if err != nil {
		c.t.Fatalf("%s: schema %s: %v", where, ptr, err)
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	if err != nil {
		c.t.Errorf("%s: body is not JSON: %s", where, body)
		return
	}
	if err := s.Validate(v); err != nil {
		c.t.Errorf("%s: the answer does not match the document: %v\nbody: %s", where, err, body)
	}
}

func pointerEscape(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

// TestAnswersMatchOpenAPI drives a node through every route it serves and checks each answer,
// and the stream's events, against the OpenAPI document the node serves: the status must be one
// the document lists and the body must match its schema.
func TestAnswersMatchOpenAPI(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil, map[string]string{"STREAMGATE_ALLOW_PRIVATE_URLS": "true"})
	c := loadContract(t, n)
	do := func(cl call) reply {
		t.Helper()
		return c.check(cl.method, cl.path, n.do(t, cl))
	}

	// Tenants, keys, tokens.
	var su struct {
		Tenant struct{ ID string }         `json:"tenant"`
		APIKey struct{ Secret string }     `json:"api_key"`
		Sign   struct{ ID, Secret string } `json:"signing_key"`
	}
	do(call{method: "POST", path: "/v1/tenants", body: map[string]string{"name": "Acme"}}).want(t, 201).decode(t, &su)
	key := su.APIKey.Secret
	do(call{method: "GET", path: "/v1/tenant", auth: key}).want(t, 200)
	var k struct{ ID string }
	do(call{method: "POST", path: "/v1/api-keys", auth: key}).want(t, 201).decode(t, &k)
	do(call{method: "GET", path: "/v1/api-keys", auth: key}).want(t, 200)
	do(call{method: "DELETE", path: "/v1/api-keys/" + k.ID, auth: key}).want(t, 204)
	do(call{method: "DELETE", path: "/v1/api-keys/" + k.ID, auth: key}).want(t, 404)
	do(call{method: "POST", path: "/v1/signing-keys", auth: key, body: "{}"}).want(t, 201).decode(t, &k)
	do(call{method: "GET", path: "/v1/signing-keys", auth: key}).want(t, 200)
	do(call{method: "DELETE", path: "/v1/signing-keys/" + k.ID, auth: key}).want(t, 204)
	var tok struct{ Token string }
	do(call{method: "POST", path: "/v1/tokens", auth: key, body: map[string]any{"sub": "u", "channels": []string{"chat.*", "job:*"}, "ttl_seconds": 600}}).want(t, 201).decode(t, &tok)

	// Identity providers.
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&ec.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pemKey := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	var idp struct{ ID string }
	do(call{method: "POST", path: "/v1/identity-providers", auth: key, body: map[string]any{"issuer": "https://idp.acme.example/", "audience": "streamgate", "public_key": pemKey, "algorithm": "ES256"}}).want(t, 201).decode(t, &idp)
	do(call{method: "GET", path: "/v1/identity-providers", auth: key}).want(t, 200)
	do(call{method: "DELETE", path: "/v1/identity-providers/" + idp.ID, auth: key}).want(t, 204)

	// A stream, its events and the sessions API.
	s := n.openStream(t, tok.Token, "chat.lobby", "job:ship-1")
	raw, _ := json.Marshal(s.connected)
	c.event("ConnectedEvent", string(raw))
	sse := n.do(t, call{method: "GET", path: "/v1/stream?channel=news&token=" + tok.Token})
	c.check("GET", "/v1/stream", sse).want(t, 403)
	do(call{method: "POST", path: "/v1/channels/chat.lobby/events", auth: key, body: map[string]any{"event": "chat.message", "data": map[string]string{"text": "hi"}}, header: map[string]string{"Idempotency-Key": "k1"}}).want(t, 202)
	do(call{method: "POST", path: "/v1/channels/chat.lobby/events", auth: key, body: map[string]any{"data": 2}, header: map[string]string{"Idempotency-Key": "k1"}}).want(t, 422)
	do(call{method: "POST", path: "/v1/channels/job:ship-1/events", auth: key, body: map[string]any{"data": 1}}).want(t, 400)
	do(call{method: "POST", path: "/v1/events", auth: key, body: map[string]any{"events": []map[string]any{{"channel": "chat.lobby", "data": 1}, {"channel": "chat.ops", "event": "x", "data": nil}}}}).want(t, 202)
	ev := s.next(10 * time.Second)
	c.event("MessageEvent", ev.Data)
	do(call{method: "POST", path: "/v1/sessions/" + s.connected.SessionID + "/subscriptions", auth: tok.Token, body: map[string]string{"channel": "chat.ops"}}).want(t, 201)
	for ev = s.next(10 * time.Second); ev.Event != "subscribed"; ev = s.next(10 * time.Second) {
		if ev.Event == "message" {
			c.event("MessageEvent", ev.Data)
		}
	}
	c.event("SubscriptionEvent", ev.Data)
	do(call{method: "DELETE", path: "/v1/sessions/" + s.connected.SessionID + "/subscriptions/chat.ops", auth: tok.Token}).want(t, 204)
	do(call{method: "POST", path: "/v1/sessions/ses_nope/subscriptions", auth: tok.Token, body: map[string]string{"channel": "chat.ops"}}).want(t, 404)
	do(call{method: "POST", path: "/v1/sessions/ses_nope/subscriptions", auth: "garbage", body: map[string]string{"channel": "chat.ops"}}).want(t, 401)

	// History, presence, settings, token refresh.
	do(call{method: "GET", path: "/v1/channels/chat.lobby/events?limit=10", auth: key}).want(t, 200)
	do(call{method: "GET", path: "/v1/channels/chat.lobby/events", auth: tok.Token}).want(t, 200)
	do(call{method: "GET", path: "/v1/channels/job:ship-1/events", auth: key}).want(t, 400)
	do(call{method: "GET", path: "/v1/channels/news/events", auth: tok.Token}).want(t, 403)
	do(call{method: "PUT", path: "/v1/settings", auth: key, body: map[string]any{"presence_channels": []string{"room.*"}}}).want(t, 200)
	do(call{method: "GET", path: "/v1/settings", auth: key}).want(t, 200)
	do(call{method: "GET", path: "/v1/channels/room.1/presence", auth: key}).want(t, 200)
	do(call{method: "GET", path: "/v1/channels/chat.lobby/presence", auth: tok.Token}).want(t, 200)
	var fresh struct{ Token string }
	do(call{method: "POST", path: "/v1/tokens", auth: key, body: map[string]any{"sub": "u", "channels": []string{"chat.*", "job:*"}}}).want(t, 201).decode(t, &fresh)
	do(call{method: "POST", path: "/v1/sessions/" + s.connected.SessionID + "/token", body: map[string]string{"token": fresh.Token}}).want(t, 200)
	do(call{method: "POST", path: "/v1/sessions/ses_nope/token", body: map[string]string{"token": fresh.Token}}).want(t, 404)
	do(call{method: "POST", path: "/v1/sessions/" + s.connected.SessionID + "/token", body: map[string]string{"token": "garbage"}}).want(t, 401)

	// Jobs and workflows (no worker runs here: the states are never applied).
	do(call{method: "PUT", path: "/v1/jobs/ship-1", auth: key, body: map[string]any{"status": "running", "progress": 10}}).want(t, 202)
	do(call{method: "PUT", path: "/v1/jobs/ship-1", auth: key, body: map[string]any{"status": "done"}}).want(t, 400)
	do(call{method: "GET", path: "/v1/jobs/ship-2", auth: key}).want(t, 404)
	do(call{method: "PUT", path: "/v1/jobs/ship-1", auth: key, body: map[string]any{"progress": 20}, header: map[string]string{"Idempotency-Key": "u1"}}).want(t, 202)
	do(call{method: "PUT", path: "/v1/jobs/ship-1", auth: key, body: map[string]any{"progress": 30}, header: map[string]string{"Idempotency-Key": "u1"}}).want(t, 422)
	do(call{method: "PUT", path: "/v1/workflows/order-1/steps/charge", auth: key, body: map[string]any{"status": "running"}, header: map[string]string{"Idempotency-Key": "u1"}}).want(t, 202)
	do(call{method: "PUT", path: "/v1/workflows/order-1/steps/charge", auth: key, body: map[string]any{"status": "failed"}, header: map[string]string{"Idempotency-Key": "u1"}}).want(t, 422)
	do(call{method: "PUT", path: "/v1/workflows/order-1", auth: key, body: map[string]any{"status": "running", "steps": []map[string]any{{"name": "charge"}}}}).want(t, 202)
	do(call{method: "PUT", path: "/v1/workflows/order-1/steps/charge", auth: key, body: map[string]any{"status": "succeeded"}}).want(t, 202)
	do(call{method: "GET", path: "/v1/workflows/order-2", auth: key}).want(t, 404)
	do(call{method: "GET", path: "/v1/stats", auth: key}).want(t, 200)

	// Webhooks.
	var wh struct {
		Webhook struct{ ID string } `json:"webhook"`
	}
	do(call{method: "POST", path: "/v1/webhooks", auth: key, body: map[string]any{"url": "http://127.0.0.1:1/hook", "events": []string{"job.finished"}, "description": "test"}}).want(t, 201).decode(t, &wh)
	do(call{method: "GET", path: "/v1/webhooks", auth: key}).want(t, 200)
	do(call{method: "PATCH", path: "/v1/webhooks/" + wh.Webhook.ID, auth: key, body: map[string]any{"events": []string{"job.finished", "channel.occupied"}}}).want(t, 200)
	do(call{method: "POST", path: "/v1/webhooks/" + wh.Webhook.ID + "/test", auth: key}).want(t, 202)
	do(call{method: "GET", path: "/v1/webhooks/" + wh.Webhook.ID + "/deliveries", auth: key}).want(t, 200)
	do(call{method: "POST", path: "/v1/webhooks/" + wh.Webhook.ID + "/rotate-secret", auth: key}).want(t, 200)
	do(call{method: "GET", path: "/admin/api/tenants/" + su.Tenant.ID + "/webhooks", auth: testAdminToken}).want(t, 200)
	do(call{method: "DELETE", path: "/v1/webhooks/" + wh.Webhook.ID, auth: key}).want(t, 204)

	// Admin.
	do(call{method: "GET", path: "/admin/api/stats", auth: testAdminToken}).want(t, 200)
	do(call{method: "GET", path: "/admin/api/tenants/" + su.Tenant.ID, auth: testAdminToken}).want(t, 200)
	do(call{method: "PATCH", path: "/admin/api/tenants/" + su.Tenant.ID, auth: testAdminToken, body: map[string]any{"limits": map[string]int{"max_connections": 500}}}).want(t, 200)
	do(call{method: "GET", path: "/admin/api/tenants/" + su.Tenant.ID + "/sessions", auth: testAdminToken}).want(t, 200)
	do(call{method: "GET", path: "/admin/api/tenants/" + su.Tenant.ID + "/presence", auth: testAdminToken}).want(t, 200)
	do(call{method: "GET", path: "/admin/api/tenants/tn_nope/webhooks", auth: testAdminToken}).want(t, 404)
	do(call{method: "GET", path: "/admin/api/tenants/tn_nope", auth: testAdminToken}).want(t, 404)
	do(call{method: "GET", path: "/admin/api/stats", auth: "wrong-admin-token-000"}).want(t, 401)
	do(call{method: "DELETE", path: "/admin/api/sessions/" + s.connected.SessionID, auth: testAdminToken}).want(t, 204)

	// Operations, and the refusals every route shares.
	do(call{method: "GET", path: "/healthz"}).want(t, 200)
	do(call{method: "GET", path: "/readyz"}).want(t, 200)
	do(call{method: "GET", path: "/v1/tenant", auth: "sgk_nope"}).want(t, 401)
	do(call{method: "POST", path: "/v1/tenants", body: `{"name":`}).want(t, 400)
	do(call{method: "POST", path: "/v1/tenants", body: `{"name":"x"}`, header: map[string]string{"Content-Type": "text/plain"}}).want(t, 415)
}
