package httpapi

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/streamgate/streamgate/internal/ratelimit"
	"github.com/streamgate/streamgate/internal/tenant"
)

// Bodies and paths the tables share.
var (
	longID     = strings.Repeat("i", 129)
	oversize   = `{"x":"` + strings.Repeat("z", 70<<10) + `"}` // over the 64 KiB of the small routes
	basicAuth  = http.Header{"Authorization": {"Basic " + base64.StdEncoding.EncodeToString([]byte("user:"+testAdminToken))}}
	plainText  = "text/plain"
	formURLEnc = "application/x-www-form-urlencoded"
)

func TestUnknownRoutesAndMethods(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, nil)
	s.runRefusals(t, []refusal{
		{"unknown route", call{method: "GET", path: "/v1/nothing"}, 404, CodeNotFound},
		{"root", call{method: "GET", path: "/"}, 404, CodeNotFound},
		{"trailing slash", call{method: "GET", path: "/v1/tenant/"}, 404, CodeNotFound},
		{"control character in path", call{method: "GET", path: "/v1/a%0Ab"}, 404, CodeNotFound},
		{"delete tenants", call{method: "DELETE", path: "/v1/tenants"}, 405, CodeMethod},
		{"put api keys", call{method: "PUT", path: "/v1/api-keys"}, 405, CodeMethod},
		{"patch job", call{method: "PATCH", path: "/v1/jobs/j"}, 405, CodeMethod},
		{"post stream", call{method: "POST", path: "/v1/stream"}, 405, CodeMethod},
		{"post admin stats", call{method: "POST", path: "/admin/api/stats"}, 405, CodeMethod},
		{"delete admin page", call{method: "DELETE", path: "/admin/"}, 405, CodeMethod},
		{"options without preflight", call{method: "OPTIONS", path: "/v1/tenant"}, 405, CodeMethod},
		{"missing dashboard file", call{method: "GET", path: "/admin/assets/nope.js"}, 404, CodeNotFound},
		{"dashboard folder", call{method: "GET", path: "/admin/assets/"}, 404, CodeNotFound},
		{"dashboard subfolder", call{method: "GET", path: "/admin/assets/vendor/"}, 404, CodeNotFound},
		{"dashboard subfolder without slash", call{method: "GET", path: "/admin/assets/vendor"}, 404, CodeNotFound},
		{"dashboard escape", call{method: "GET", path: "/admin/assets/../../go.mod"}, 404, CodeNotFound},
	})
	// A file that is there is served, so the refusals above are about the path alone.
	s.do(t, call{method: "GET", path: "/admin/assets/admin.css"}).want(t, 200)
}

func TestRefusedCORSPreflight(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, func(c *Config) { c.CORSOrigins = []string{"https://ok.example"} })
	preflight := func(origin string) call {
		return call{method: "OPTIONS", path: "/v1/channels/c/events", header: http.Header{
			"Origin": {origin}, "Access-Control-Request-Method": {"POST"},
		}}
	}
	s.do(t, preflight("https://evil.example")).want(t, 403, CodeForbidden)
	r := s.do(t, preflight("https://ok.example")).want(t, 204)
	if got := r.Header.Get("Access-Control-Allow-Origin"); got != "https://ok.example" {
		t.Errorf("allowed origin's preflight: Access-Control-Allow-Origin %q", got)
	}
}

func TestReadyzRefusal(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, nil)
	s.do(t, call{method: "GET", path: "/readyz"}).want(t, 200)
	s.ready.Store(false)
	s.do(t, call{method: "GET", path: "/readyz"}).want(t, 503, CodeUnavailable)
	s.do(t, call{method: "GET", path: "/healthz"}).want(t, 200)
}

// keyRoutes are the routes a tenant backend calls with its API key, each with a body it accepts.
var keyRoutes = []call{
	{method: "GET", path: "/v1/tenant"},
	{method: "POST", path: "/v1/api-keys"},
	{method: "GET", path: "/v1/api-keys"},
	{method: "DELETE", path: "/v1/api-keys/key_x"},
	{method: "POST", path: "/v1/signing-keys"},
	{method: "GET", path: "/v1/signing-keys"},
	{method: "DELETE", path: "/v1/signing-keys/sig_x"},
	{method: "POST", path: "/v1/tokens", body: `{"sub":"u"}`},
	{method: "POST", path: "/v1/channels/c/events", body: `{"data":1}`},
	{method: "POST", path: "/v1/events", body: `{"events":[{"channel":"c","data":1}]}`},
	{method: "GET", path: "/v1/stats"},
	{method: "PUT", path: "/v1/jobs/j", body: `{"progress":1}`},
	{method: "GET", path: "/v1/jobs/j"},
	{method: "PUT", path: "/v1/workflows/w", body: `{"status":"running"}`},
	{method: "GET", path: "/v1/workflows/w"},
	{method: "PUT", path: "/v1/workflows/w/steps/s", body: `{"status":"running"}`},
}

func TestAPIKeyRoutesRefuseOtherCredentials(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, nil)
	a := s.signup(t, "Acme")
	suspended := s.signup(t, "Gone")
	if _, err := s.tenants.Update(t.Context(), suspended.TenantID, tenant.LimitsPatch{}, ptr(true)); err != nil {
		t.Fatal(err)
	}
	endUser := s.token(t, a, "u", "*")

	var cases []refusal
	for _, r := range keyRoutes {
		for _, cred := range []struct {
			name   string
			auth   string
			header http.Header
			status int
			code   string
		}{
			{"no credential", "", nil, 401, CodeUnauthorized},
			{"basic auth", "", basicAuth, 401, CodeUnauthorized},
			{"unknown key", "sgk_" + strings.Repeat("0", 40), nil, 401, CodeUnauthorized},
			{"garbage", "not-a-key", nil, 401, CodeUnauthorized},
			{"end-user token", endUser, nil, 401, CodeUnauthorized},
			{"admin token", testAdminToken, nil, 401, CodeUnauthorized},
			{"suspended tenant's key", suspended.APIKey, nil, 403, CodeForbidden},
		} {
			c := r
			c.auth, c.header = cred.auth, cred.header
			cases = append(cases, refusal{r.method + " " + r.path + ": " + cred.name, c, cred.status, cred.code})
		}
	}
	s.runRefusals(t, cases)

	for _, acc := range []account{a, suspended} {
		s.wantKeys(t, acc, 1, 1)
		if entries, total := s.published(t, acc.TenantID, "c"); entries != 0 || total != 0 {
			t.Errorf("tenant %s: %d events in history, %d published after refusals only", acc.TenantID, entries, total)
		}
	}
	if n := s.updatesQueued(t); n != 0 {
		t.Errorf("%d job updates queued after refusals only", n)
	}
}

// adminRoutes are the operator's routes, each with a body it accepts.
func adminRoutes(tenantID string) []call {
	return []call{
		{method: "GET", path: "/admin/api/stats"},
		{method: "GET", path: "/admin/api/stats/stream"},
		{method: "GET", path: "/admin/api/tenants/" + tenantID},
		{method: "PATCH", path: "/admin/api/tenants/" + tenantID, body: `{"suspended":true}`},
		{method: "GET", path: "/admin/api/tenants/" + tenantID + "/sessions"},
		{method: "GET", path: "/admin/api/tenants/" + tenantID + "/presence"},
		{method: "GET", path: "/admin/api/tenants/" + tenantID + "/webhooks"},
		{method: "DELETE", path: "/admin/api/sessions/ses_x"},
	}
}

func TestAdminRoutesRefuseOtherCredentials(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, nil)
	a := s.signup(t, "Acme")
	var cases []refusal
	for _, r := range adminRoutes(a.TenantID) {
		for _, cred := range []struct {
			name   string
			auth   string
			header http.Header
		}{
			{"no credential", "", nil},
			{"basic auth with the admin token", "", basicAuth},
			{"API key", a.APIKey, nil},
			{"end-user token", s.token(t, a, "u", "*"), nil},
			{"wrong admin token", testAdminToken + "x", nil},
			{"admin token prefix", testAdminToken[:10], nil},
		} {
			c := r
			c.auth, c.header = cred.auth, cred.header
			cases = append(cases, refusal{r.method + " " + r.path + ": " + cred.name, c, 401, CodeUnauthorized})
		}
	}
	s.runRefusals(t, cases)
	got, err := s.tenants.Get(t.Context(), a.TenantID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Suspended {
		t.Error("a refused PATCH suspended the tenant")
	}

	// Without an admin token configured, no token is the admin's.
	closed := newTestServer(t, func(c *Config) { c.AdminToken = "" })
	closed.do(t, call{method: "GET", path: "/admin/api/stats", auth: testAdminToken}).want(t, 401, CodeUnauthorized)
	closed.do(t, call{method: "GET", path: "/admin/api/stats"}).want(t, 401, CodeUnauthorized)
}

func TestSignupRefusals(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, nil)
	signup := func(body string) call { return call{method: "POST", path: "/v1/tenants", body: body} }
	s.runRefusals(t, []refusal{
		{"empty body", call{method: "POST", path: "/v1/tenants"}, 400, CodeInvalid},
		{"malformed JSON", signup(`{"name":`), 400, CodeInvalid},
		{"not an object", signup(`["Acme"]`), 400, CodeInvalid},
		{"two objects", signup(`{"name":"A"}{"name":"B"}`), 400, CodeInvalid},
		{"unknown field", signup(`{"name":"Acme","plan":"pro"}`), 400, CodeInvalid},
		{"no name", signup(`{}`), 400, CodeInvalid},
		{"null name", signup(`{"name":null}`), 400, CodeInvalid},
		{"name of another type", signup(`{"name":7}`), 400, CodeInvalid},
		{"empty name", signup(`{"name":""}`), 400, CodeInvalid},
		{"blank name", signup(`{"name":"   "}`), 400, CodeInvalid},
		{"long name", signup(fmt.Sprintf(`{"name":%q}`, strings.Repeat("n", 101))), 400, CodeInvalid},
		{"text body", call{method: "POST", path: "/v1/tenants", body: `{"name":"Acme"}`, contentType: plainText}, 415, CodeMediaType},
		{"form body", call{method: "POST", path: "/v1/tenants", body: "name=Acme", contentType: formURLEnc}, 415, CodeMediaType},
		{"oversize body", signup(oversize), 413, CodeTooLarge},
		{"oversize body without length", call{method: "POST", path: "/v1/tenants", body: oversize, unsized: true}, 413, CodeTooLarge},
	})
	s.wantTenants(t, 0)

	t.Run("closed", func(t *testing.T) {
		t.Parallel()
		closed := newTestServer(t, func(c *Config) { c.SignupOpen = false })
		for _, auth := range []string{"", "sgk_" + strings.Repeat("0", 40), testAdminToken + "x"} {
			closed.do(t, call{method: "POST", path: "/v1/tenants", auth: auth, body: `{"name":"Acme"}`}).want(t, 401, CodeUnauthorized)
		}
		closed.wantTenants(t, 0)
	})

	t.Run("rate limited", func(t *testing.T) {
		t.Parallel()
		limited := newTestServer(t, func(c *Config) { c.Rates.Signup = ratelimit.Rate{Limit: 1, Period: time.Hour} })
		limited.do(t, call{method: "POST", path: "/v1/tenants", body: `{"name":"Acme"}`}).want(t, 201)
		r := limited.do(t, call{method: "POST", path: "/v1/tenants", body: `{"name":"Globex"}`}).want(t, 429, CodeRateLimited)
		if r.Header.Get("Retry-After") == "" || r.Header.Get("X-RateLimit-Remaining") != "0" {
			t.Errorf("429 without Retry-After or X-RateLimit-Remaining: 0: %v", r.Header)
		}
		limited.wantTenants(t, 1)
	})
}

func TestKeyRefusals(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, nil)
	a, b := s.signup(t, "Acme"), s.signup(t, "Globex")
	bKeys, err := s.tenants.APIKeys(t.Context(), b.TenantID)
	if err != nil {
		t.Fatal(err)
	}
	var cases []refusal
	for _, path := range []string{"/v1/api-keys", "/v1/signing-keys"} {
		create := func(body string) call { return call{method: "POST", path: path, auth: a.APIKey, body: body} }
		cases = append(cases,
			refusal{"create " + path + ": unknown field", create(`{"name":"ci"}`), 400, CodeInvalid},
			refusal{"create " + path + ": malformed JSON", create(`{`), 400, CodeInvalid},
			refusal{"create " + path + ": not an object", create(`[]`), 400, CodeInvalid},
			refusal{"create " + path + ": two objects", create(`{}{}`), 400, CodeInvalid},
			refusal{"create " + path + ": text body", call{method: "POST", path: path, auth: a.APIKey, body: "key please", contentType: plainText}, 415, CodeMediaType},
			refusal{"create " + path + ": oversize body", create(oversize), 413, CodeTooLarge},
			refusal{"create " + path + ": oversize body without length", call{method: "POST", path: path, auth: a.APIKey, body: oversize, unsized: true}, 413, CodeTooLarge},
		)
	}
	for _, d := range []struct{ path, unknown, others string }{
		{"/v1/api-keys/", "key_nope", bKeys[0].ID},
		{"/v1/signing-keys/", "sig_nope", b.SigningKeyID},
	} {
		del := func(id string) call { return call{method: "DELETE", path: d.path + id, auth: a.APIKey} }
		cases = append(cases,
			refusal{"delete " + d.path + ": unknown id", del(d.unknown), 404, CodeNotFound},
			refusal{"delete " + d.path + ": another tenant's key", del(d.others), 404, CodeNotFound},
			refusal{"delete " + d.path + ": id with a space", del("a%20b"), 400, CodeInvalid},
			refusal{"delete " + d.path + ": id with a newline", del("a%0Ab"), 400, CodeInvalid},
			refusal{"delete " + d.path + ": long id", del(longID), 400, CodeInvalid},
			refusal{"delete " + d.path + ": no id", del(""), 404, CodeNotFound},
		)
	}
	s.runRefusals(t, cases)

	s.wantKeys(t, a, 1, 1)
	s.wantKeys(t, b, 1, 1)
	s.do(t, call{method: "GET", path: "/v1/tenant", auth: b.APIKey}).want(t, 200)
	if _, _, err := s.tenants.MintToken(t.Context(), b.TenantID, "u", nil, time.Minute); err != nil {
		t.Errorf("the other tenant's signing key no longer signs: %v", err)
	}
}

func TestTokenRefusals(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, nil)
	a := s.signup(t, "Acme")
	mint := func(body string) call { return call{method: "POST", path: "/v1/tokens", auth: a.APIKey, body: body} }
	s.runRefusals(t, []refusal{
		{"empty body", call{method: "POST", path: "/v1/tokens", auth: a.APIKey}, 400, CodeInvalid},
		{"malformed JSON", mint(`{"sub":`), 400, CodeInvalid},
		{"unknown field", mint(`{"sub":"u","scope":"all"}`), 400, CodeInvalid},
		{"no sub", mint(`{"channels":["a"]}`), 400, CodeInvalid},
		{"empty sub", mint(`{"sub":""}`), 400, CodeInvalid},
		{"long sub", mint(fmt.Sprintf(`{"sub":%q}`, strings.Repeat("u", 257))), 400, CodeInvalid},
		{"sub of another type", mint(`{"sub":42}`), 400, CodeInvalid},
		{"ttl zero", mint(`{"sub":"u","ttl_seconds":0}`), 400, CodeInvalid},
		{"ttl negative", mint(`{"sub":"u","ttl_seconds":-5}`), 400, CodeInvalid},
		{"ttl over a day", mint(`{"sub":"u","ttl_seconds":86401}`), 400, CodeInvalid},
		{"ttl a fraction", mint(`{"sub":"u","ttl_seconds":1.5}`), 400, CodeInvalid},
		{"ttl a string", mint(`{"sub":"u","ttl_seconds":"60"}`), 400, CodeInvalid},
		{"channels not a list", mint(`{"sub":"u","channels":"chat.*"}`), 400, CodeInvalid},
		{"bad pattern", mint(`{"sub":"u","channels":["a b"]}`), 400, CodeInvalid},
		{"pattern with a newline", mint(`{"sub":"u","channels":["a\nb"]}`), 400, CodeInvalid},
		{"text body", call{method: "POST", path: "/v1/tokens", auth: a.APIKey, body: `{"sub":"u"}`, contentType: plainText}, 415, CodeMediaType},
		{"oversize body", mint(`{"sub":"` + strings.Repeat("u", 70<<10) + `"}`), 413, CodeTooLarge},
	})
	s.wantKeys(t, a, 1, 1)
}

func TestPublishRefusals(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, nil)
	a := s.signup(t, "Acme")
	const path = "/v1/channels/chat.x/events"
	pub := func(body string) call { return call{method: "POST", path: path, auth: a.APIKey, body: body} }
	to := func(channel string) call {
		return call{method: "POST", path: "/v1/channels/" + channel + "/events", auth: a.APIKey, body: `{"data":1}`}
	}
	idem := func(vals ...string) call {
		c := pub(`{"data":1}`)
		c.header = http.Header{"Idempotency-Key": vals}
		return c
	}
	s.runRefusals(t, []refusal{
		{"empty body", call{method: "POST", path: path, auth: a.APIKey}, 400, CodeInvalid},
		{"malformed JSON", pub(`{"data":`), 400, CodeInvalid},
		{"JSON ending early", pub(`{"data":[1,`), 400, CodeInvalid},
		{"not an object", pub(`[1,2]`), 400, CodeInvalid},
		{"two objects", pub(`{"data":1}{"data":2}`), 400, CodeInvalid},
		{"unknown field", pub(`{"data":1,"colour":"red"}`), 400, CodeInvalid},
		{"channel in the body", pub(`{"channel":"chat.x","data":1}`), 400, CodeInvalid},
		{"no data", pub(`{"event":"x"}`), 400, CodeInvalid},
		{"event of another type", pub(`{"event":7,"data":1}`), 400, CodeInvalid},
		{"empty event", pub(`{"event":"","data":1}`), 400, CodeInvalid},
		{"event with a newline", pub(`{"event":"a\nb","data":1}`), 400, CodeInvalid},
		{"event with a space", pub(`{"event":"a b","data":1}`), 400, CodeInvalid},
		{"long event", pub(fmt.Sprintf(`{"event":%q,"data":1}`, strings.Repeat("e", 101))), 400, CodeInvalid},
		{"deep nesting", pub(`{"data":` + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + `}`), 400, CodeInvalid},
		{"channel with a space", to("bad%20name"), 400, CodeInvalid},
		{"channel with a newline", to("a%0Ab"), 400, CodeInvalid},
		{"channel with a star", to("chat.*"), 400, CodeInvalid},
		{"long channel", to(strings.Repeat("c", 201)), 400, CodeInvalid},
		{"job channel", to("job:1"), 400, CodeReserved},
		{"workflow channel", to("workflow:1"), 400, CodeReserved},
		{"long idempotency key", idem(strings.Repeat("k", 201)), 400, CodeInvalid},
		{"two idempotency keys", idem("a", "b"), 400, CodeInvalid},
		{"idempotency key with a space", idem("a b"), 400, CodeInvalid},
		{"empty idempotency key", idem(""), 400, CodeInvalid},
		{"text body", call{method: "POST", path: path, auth: a.APIKey, body: `{"data":1}`, contentType: plainText}, 415, CodeMediaType},
		{"no content type", call{method: "POST", path: path, auth: a.APIKey, body: `{"data":1}`, header: http.Header{"Content-Type": {""}}}, 415, CodeMediaType},
		{"data over max_message_bytes", pub(fmt.Sprintf(`{"data":%q}`, strings.Repeat("d", 70000))), 413, CodeTooLarge},
		{"body over the route's limit", pub(`{"data":"` + strings.Repeat("z", 2<<20) + `"}`), 413, CodeTooLarge},
		{"body over the route's limit without length", call{method: "POST", path: path, auth: a.APIKey, body: `{"data":"` + strings.Repeat("z", 2<<20) + `"}`, unsized: true}, 413, CodeTooLarge},
	})
	if entries, total := s.published(t, a.TenantID, "chat.x", "job:1", "workflow:1"); entries != 0 || total != 0 {
		t.Errorf("%d events in history, %d published after refusals only", entries, total)
	}
}

func TestBatchRefusals(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, nil)
	a := s.signup(t, "Acme")
	batch := func(body string) call { return call{method: "POST", path: "/v1/events", auth: a.APIKey, body: body} }
	ok := `{"channel":"ok","data":1}`
	many := strings.Repeat(ok+",", 100) + ok
	s.runRefusals(t, []refusal{
		{"empty body", call{method: "POST", path: "/v1/events", auth: a.APIKey}, 400, CodeInvalid},
		{"no events", batch(`{}`), 400, CodeInvalid},
		{"empty events", batch(`{"events":[]}`), 400, CodeInvalid},
		{"101 events", batch(`{"events":[` + many + `]}`), 400, CodeInvalid},
		{"events not a list", batch(`{"events":{"channel":"ok","data":1}}`), 400, CodeInvalid},
		{"unknown field", batch(`{"events":[` + ok + `],"atomic":true}`), 400, CodeInvalid},
		{"unknown field in an event", batch(`{"events":[{"channel":"ok","data":1,"ttl":5}]}`), 400, CodeInvalid},
		{"event without channel", batch(`{"events":[` + ok + `,{"data":1}]}`), 400, CodeInvalid},
		{"event without data", batch(`{"events":[` + ok + `,{"channel":"ok"}]}`), 400, CodeInvalid},
		{"bad channel after a good event", batch(`{"events":[` + ok + `,{"channel":"a b","data":1}]}`), 400, CodeInvalid},
		{"reserved channel after a good event", batch(`{"events":[` + ok + `,{"channel":"job:1","data":1}]}`), 400, CodeReserved},
		{"bad event name", batch(`{"events":[` + ok + `,{"channel":"ok","event":"a\nb","data":1}]}`), 400, CodeInvalid},
		{"data over max_message_bytes", batch(fmt.Sprintf(`{"events":[%s,{"channel":"ok","data":%q}]}`, ok, strings.Repeat("d", 70000))), 413, CodeTooLarge},
		{"text body", call{method: "POST", path: "/v1/events", auth: a.APIKey, body: `{"events":[` + ok + `]}`, contentType: plainText}, 415, CodeMediaType},
		{"body over the route's limit", batch(`{"events":[{"channel":"ok","data":"` + strings.Repeat("z", 5<<20) + `"}]}`), 413, CodeTooLarge},
	})
	if entries, total := s.published(t, a.TenantID, "ok", "job:1"); entries != 0 || total != 0 {
		t.Errorf("%d events in history, %d published after refusals only", entries, total)
	}

	t.Run("over publish_per_second at once", func(t *testing.T) {
		one := 1
		slow := s.signup(t, "Slow")
		if _, err := s.tenants.Update(t.Context(), slow.TenantID, tenant.LimitsPatch{PublishPerSecond: &one}, nil); err != nil {
			t.Fatal(err)
		}
		r := s.do(t, call{method: "POST", path: "/v1/events", auth: slow.APIKey, body: `{"events":[` + ok + `,` + ok + `]}`}).want(t, 429, CodeRateLimited)
		if r.Header.Get("Retry-After") == "" {
			t.Error("429 without Retry-After")
		}
		if entries, total := s.published(t, slow.TenantID, "ok"); entries != 0 || total != 0 {
			t.Errorf("%d events in history, %d published after a refused batch", entries, total)
		}
	})
}

func TestJobAndWorkflowRefusals(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, nil)
	a := s.signup(t, "Acme")
	put := func(path, body string) call { return call{method: "PUT", path: path, auth: a.APIKey, body: body} }
	get := func(path string) call { return call{method: "GET", path: path, auth: a.APIKey} }
	job := func(body string) call { return put("/v1/jobs/j1", body) }
	wf := func(body string) call { return put("/v1/workflows/w1", body) }
	step := func(body string) call { return put("/v1/workflows/w1/steps/build", body) }
	hundredOne := strings.TrimSuffix(strings.Repeat(`{"name":"s"},`, 101), ",")
	idem := func(c call, vals ...string) call {
		c.header = http.Header{"Idempotency-Key": vals}
		return c
	}
	s.runRefusals(t, []refusal{
		{"job: empty body", call{method: "PUT", path: "/v1/jobs/j1", auth: a.APIKey}, 400, CodeInvalid},
		{"job: empty update", job(`{}`), 400, CodeInvalid},
		{"job: only nulls", job(`{"status":null,"progress":null}`), 400, CodeInvalid},
		{"job: malformed JSON", job(`{"status":`), 400, CodeInvalid},
		{"job: unknown field", job(`{"status":"running","eta":5}`), 400, CodeInvalid},
		{"job: unknown status", job(`{"status":"done"}`), 400, CodeInvalid},
		{"job: a workflow status", job(`{"status":"waiting"}`), 400, CodeInvalid},
		{"job: progress over 100", job(`{"progress":101}`), 400, CodeInvalid},
		{"job: negative progress", job(`{"progress":-1}`), 400, CodeInvalid},
		{"job: progress a string", job(`{"progress":"50"}`), 400, CodeInvalid},
		{"job: message a number", job(`{"message":5}`), 400, CodeInvalid},
		{"job: long message", job(fmt.Sprintf(`{"message":%q}`, strings.Repeat("m", maxText+1))), 400, CodeInvalid},
		{"job: output over max_message_bytes", job(fmt.Sprintf(`{"output":%q}`, strings.Repeat("o", 70000))), 413, CodeTooLarge},
		{"job: id with a space", put("/v1/jobs/a%20b", `{"progress":1}`), 400, CodeInvalid},
		{"job: id with a slash", put("/v1/jobs/a%2Fb", `{"progress":1}`), 404, CodeNotFound},
		{"job: long id", put("/v1/jobs/"+longID, `{"progress":1}`), 400, CodeInvalid},
		{"job: text body", call{method: "PUT", path: "/v1/jobs/j1", auth: a.APIKey, body: `{"progress":1}`, contentType: plainText}, 415, CodeMediaType},
		{"job: body over the route's limit", job(`{"output":"` + strings.Repeat("z", 2<<20) + `"}`), 413, CodeTooLarge},
		{"job: long idempotency key", idem(job(`{"progress":1}`), strings.Repeat("k", 201)), 400, CodeInvalid},
		{"job: two idempotency keys", idem(job(`{"progress":1}`), "a", "b"), 400, CodeInvalid},
		{"job: empty idempotency key", idem(job(`{"progress":1}`), ""), 400, CodeInvalid},
		{"job: get unknown", get("/v1/jobs/j-unknown"), 404, CodeNotFound},
		{"job: get bad id", get("/v1/jobs/a%20b"), 400, CodeInvalid},
		{"job: get long id", get("/v1/jobs/" + longID), 400, CodeInvalid},

		{"workflow: empty update", wf(`{}`), 400, CodeInvalid},
		{"workflow: a job status", wf(`{"status":"queued"}`), 400, CodeInvalid},
		{"workflow: bad step name", wf(`{"step":"a b"}`), 400, CodeInvalid},
		{"workflow: waiting_for a number", wf(`{"waiting_for":7}`), 400, CodeInvalid},
		{"workflow: steps not a list", wf(`{"steps":{"name":"a"}}`), 400, CodeInvalid},
		{"workflow: 101 steps", wf(`{"steps":[` + hundredOne + `]}`), 400, CodeInvalid},
		{"workflow: step without name", wf(`{"steps":[{"status":"running"}]}`), 400, CodeInvalid},
		{"workflow: step with a bad status", wf(`{"steps":[{"name":"a","status":"waiting"}]}`), 400, CodeInvalid},
		{"workflow: step with an unknown field", wf(`{"steps":[{"name":"a","owner":"me"}]}`), 400, CodeInvalid},
		{"workflow: bad id", put("/v1/workflows/a%20b", `{"status":"running"}`), 400, CodeInvalid},
		{"workflow: idempotency key with a space", idem(wf(`{"status":"running"}`), "a b"), 400, CodeInvalid},
		{"workflow: get unknown", get("/v1/workflows/w-unknown"), 404, CodeNotFound},
		{"workflow: get bad id", get("/v1/workflows/" + longID), 400, CodeInvalid},

		{"step: empty update", step(`{}`), 400, CodeInvalid},
		{"step: a workflow status", step(`{"status":"waiting"}`), 400, CodeInvalid},
		{"step: name in the body", step(`{"name":"other","status":"running"}`), 400, CodeInvalid},
		{"step: error a number", step(`{"error":1}`), 400, CodeInvalid},
		{"step: bad step name", put("/v1/workflows/w1/steps/a%20b", `{"status":"running"}`), 400, CodeInvalid},
		{"step: long step name", put("/v1/workflows/w1/steps/"+longID, `{"status":"running"}`), 400, CodeInvalid},
		{"step: bad workflow id", put("/v1/workflows/a%20b/steps/build", `{"status":"running"}`), 400, CodeInvalid},
		{"step: idempotency key with a tab", idem(step(`{"status":"running"}`), "a\tb"), 400, CodeInvalid},
	})
	if n := s.updatesQueued(t); n != 0 {
		t.Errorf("%d updates queued after refusals only", n)
	}
}

// A job or workflow update retried with its Idempotency-Key gets the first answer and is queued
// once; the key with another update of that job or workflow is refused, and queues nothing.
func TestJobAndWorkflowIdempotencyKey(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, nil)
	a := s.signup(t, "Acme")
	put := func(path, key, body string) reply {
		return s.do(t, call{method: "PUT", path: path, auth: a.APIKey, body: body, header: http.Header{"Idempotency-Key": {key}}})
	}
	for _, tc := range []struct {
		name, path, key, body string
		status                int
		code                  string
		queued                int64
	}{
		{"job", "/v1/jobs/j1", "k1", `{"status":"running","progress":10}`, 202, "", 1},
		{"job retried", "/v1/jobs/j1", "k1", `{"status":"running","progress":10}`, 202, "", 1},
		{"job retried, fields in another order", "/v1/jobs/j1", "k1", `{"progress":10,"status":"running"}`, 202, "", 1},
		{"job, same key, another update", "/v1/jobs/j1", "k1", `{"status":"running","progress":20}`, 422, CodeIdempotencyMismatch, 1},
		{"job, another key", "/v1/jobs/j1", "k2", `{"status":"running","progress":10}`, 202, "", 2},
		{"another job, same key", "/v1/jobs/j2", "k1", `{"status":"running","progress":10}`, 202, "", 3},
		{"workflow", "/v1/workflows/w1", "wk", `{"status":"running"}`, 202, "", 4},
		{"workflow retried", "/v1/workflows/w1", "wk", `{"status":"running"}`, 202, "", 4},
		{"its step with the workflow's key", "/v1/workflows/w1/steps/build", "wk", `{"status":"running"}`, 422, CodeIdempotencyMismatch, 4},
		{"step", "/v1/workflows/w1/steps/build", "sk", `{"status":"running"}`, 202, "", 5},
		{"step retried", "/v1/workflows/w1/steps/build", "sk", `{"status":"running"}`, 202, "", 5},
		{"another step, same key", "/v1/workflows/w1/steps/test", "sk", `{"status":"running"}`, 422, CodeIdempotencyMismatch, 5},
	} {
		var code []string
		if tc.code != "" {
			code = append(code, tc.code)
		}
		r := put(tc.path, tc.key, tc.body).want(t, tc.status, code...)
		if tc.status == 202 && strings.TrimSpace(string(r.Body)) != `{"accepted":true}` {
			t.Errorf("%s: body %s, want {\"accepted\":true}", tc.name, r.Body)
		}
		if n := s.updatesQueued(t); n != tc.queued {
			t.Errorf("%s: %d updates queued, want %d", tc.name, n, tc.queued)
		}
	}
}

func TestStreamRefusals(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, nil)
	a := s.signup(t, "Acme")
	gone := s.signup(t, "Gone")
	goneTok := s.token(t, gone, "u", "*")
	if _, err := s.tenants.Update(t.Context(), gone.TenantID, tenant.LimitsPatch{}, ptr(true)); err != nil {
		t.Fatal(err)
	}
	alice := s.token(t, a, "alice", "chat.*")
	star := s.token(t, a, "alice", "*")
	bob := s.openStream(t, s.token(t, a, "bob", "chat.*"), "chat.a")

	open := func(q url.Values, auth string, header http.Header) call {
		return call{method: "GET", path: "/v1/stream?" + q.Encode(), auth: auth, header: header}
	}
	chat := url.Values{"channel": {"chat.a"}}
	withToken := func(tok string, channels ...string) url.Values {
		return url.Values{"channel": channels, "token": {tok}}
	}
	var tooMany []string
	for i := range 101 {
		tooMany = append(tooMany, fmt.Sprint("c", i))
	}
	s.runRefusals(t, []refusal{
		{"no token", open(chat, "", nil), 401, CodeUnauthorized},
		{"basic auth", open(chat, "", basicAuth), 401, CodeUnauthorized},
		{"garbage token", open(withToken("abc.def.ghi", "chat.a"), "", nil), 401, CodeUnauthorized},
		{"API key as token", open(withToken(a.APIKey, "chat.a"), "", nil), 401, CodeUnauthorized},
		{"API key as bearer", open(chat, a.APIKey, nil), 401, CodeUnauthorized},
		{"admin token", open(chat, testAdminToken, nil), 401, CodeUnauthorized},
		{"token with a changed signature", open(chat, alice[:len(alice)-2]+"xx", nil), 401, CodeUnauthorized},
		{"suspended tenant's token", open(chat, goneTok, nil), 401, CodeUnauthorized},
		{"channel not granted", open(url.Values{"channel": {"news"}}, alice, nil), 403, CodeForbidden},
		{"one channel of two not granted", open(url.Values{"channel": {"chat.a", "news"}}, alice, nil), 403, CodeForbidden},
		{"more channels than the tenant allows", open(url.Values{"channel": tooMany}, star, nil), 403, CodeLimitExceeded},
		{"channel with a newline", open(withToken(alice, "a\nb"), "", nil), 400, CodeInvalid},
		{"empty channel", open(withToken(alice, ""), "", nil), 400, CodeInvalid},
		{"long channel", open(withToken(star, strings.Repeat("c", 201)), "", nil), 400, CodeInvalid},
		{"last_event_id not a cursor", open(url.Values{"channel": {"chat.a"}, "last_event_id": {"garbage"}}, alice, nil), 400, CodeInvalid},
		{"Last-Event-ID not a cursor", open(chat, alice, http.Header{"Last-Event-Id": {"1-0"}}), 400, CodeInvalid},
		{"another user's cursor", open(chat, alice, http.Header{"Last-Event-Id": {bob.Cursor}}), 403, CodeForbidden},
	})

	var tn struct {
		Usage struct{ Connections, Subscriptions int } `json:"usage"`
	}
	s.do(t, call{method: "GET", path: "/v1/tenant", auth: a.APIKey}).want(t, 200).decode(t, &tn)
	if tn.Usage.Connections != 1 || tn.Usage.Subscriptions != 1 {
		t.Errorf("usage %+v after refusals, want bob's one stream on one channel", tn.Usage)
	}
	s.wantSessionChannels(t, a, bob.SessionID, "chat.a")
}

func TestSessionRefusals(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, nil)
	a := s.signup(t, "Acme")
	aliceTok, bobTok := s.token(t, a, "alice", "chat.*"), s.token(t, a, "bob", "chat.*")
	alice := s.openStream(t, aliceTok, "chat.a")
	s.openStream(t, bobTok, "chat.b")

	capped := s.signup(t, "Capped")
	one := 1
	if _, err := s.tenants.Update(t.Context(), capped.TenantID, tenant.LimitsPatch{MaxSubscriptionsPerSession: &one}, nil); err != nil {
		t.Fatal(err)
	}
	carolTok := s.token(t, capped, "carol", "*")
	carol := s.openStream(t, carolTok, "x")

	subs := "/v1/sessions/" + alice.SessionID + "/subscriptions"
	sub := func(auth, body string) call { return call{method: "POST", path: subs, auth: auth, body: body} }
	unsub := func(path, auth string) call { return call{method: "DELETE", path: path, auth: auth} }
	s.runRefusals(t, []refusal{
		{"subscribe: no token", sub("", `{"channel":"chat.b"}`), 401, CodeUnauthorized},
		{"subscribe: no token and a bad body", sub("", `{"channel":`), 401, CodeUnauthorized},
		{"subscribe: basic auth", call{method: "POST", path: subs, header: basicAuth, body: `{"channel":"chat.b"}`}, 401, CodeUnauthorized},
		{"subscribe: API key", sub(a.APIKey, `{"channel":"chat.b"}`), 401, CodeUnauthorized},
		{"subscribe: admin token", sub(testAdminToken, `{"channel":"chat.b"}`), 401, CodeUnauthorized},
		{"subscribe: empty body", call{method: "POST", path: subs, auth: aliceTok}, 400, CodeInvalid},
		{"subscribe: malformed JSON", sub(aliceTok, `{"channel":`), 400, CodeInvalid},
		{"subscribe: no channel", sub(aliceTok, `{}`), 400, CodeInvalid},
		{"subscribe: channel of another type", sub(aliceTok, `{"channel":["chat.b"]}`), 400, CodeInvalid},
		{"subscribe: bad channel", sub(aliceTok, `{"channel":"a b"}`), 400, CodeInvalid},
		{"subscribe: unknown field", sub(aliceTok, `{"channel":"chat.b","replay":true}`), 400, CodeInvalid},
		{"subscribe: text body", call{method: "POST", path: subs, auth: aliceTok, body: `{"channel":"chat.b"}`, contentType: plainText}, 415, CodeMediaType},
		{"subscribe: oversize body", sub(aliceTok, oversize), 413, CodeTooLarge},
		{"subscribe: channel not granted", sub(aliceTok, `{"channel":"news"}`), 403, CodeForbidden},
		{"subscribe: another user's session", sub(bobTok, `{"channel":"chat.b"}`), 403, CodeForbidden},
		{"subscribe: another tenant's session", call{method: "POST", path: "/v1/sessions/" + carol.SessionID + "/subscriptions", auth: aliceTok, body: `{"channel":"chat.b"}`}, 404, CodeNotFound},
		{"subscribe: unknown session", call{method: "POST", path: "/v1/sessions/ses_nope/subscriptions", auth: aliceTok, body: `{"channel":"chat.b"}`}, 404, CodeNotFound},
		{"subscribe: bad session id", call{method: "POST", path: "/v1/sessions/a%20b/subscriptions", auth: aliceTok, body: `{"channel":"chat.b"}`}, 400, CodeInvalid},
		{"subscribe: over the subscription cap", call{method: "POST", path: "/v1/sessions/" + carol.SessionID + "/subscriptions", auth: carolTok, body: `{"channel":"y"}`}, 403, CodeLimitExceeded},

		{"unsubscribe: no token", unsub(subs+"/chat.a", ""), 401, CodeUnauthorized},
		{"unsubscribe: API key", unsub(subs+"/chat.a", a.APIKey), 401, CodeUnauthorized},
		{"unsubscribe: bad channel", unsub(subs+"/a%20b", aliceTok), 400, CodeInvalid},
		{"unsubscribe: long channel", unsub(subs+"/"+strings.Repeat("c", 201), aliceTok), 400, CodeInvalid},
		{"unsubscribe: another user's session", unsub(subs+"/chat.a", bobTok), 403, CodeForbidden},
		{"unsubscribe: unknown session", unsub("/v1/sessions/ses_nope/subscriptions/chat.a", aliceTok), 404, CodeNotFound},
		{"unsubscribe: bad session id", unsub("/v1/sessions/"+longID+"/subscriptions/chat.a", aliceTok), 400, CodeInvalid},
	})
	s.wantSessionChannels(t, a, alice.SessionID, "chat.a")
	s.wantSessionChannels(t, capped, carol.SessionID, "x")
}

func TestAdminRefusals(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, nil)
	a := s.signup(t, "Acme")
	tenantPath := "/admin/api/tenants/" + a.TenantID
	admin := func(method, path, body string) call {
		return call{method: method, path: path, auth: testAdminToken, body: body}
	}
	patch := func(body string) call { return admin("PATCH", tenantPath, body) }
	s.runRefusals(t, []refusal{
		{"get unknown tenant", admin("GET", "/admin/api/tenants/tn_nope", ""), 404, CodeNotFound},
		{"get bad tenant id", admin("GET", "/admin/api/tenants/a%0Ab", ""), 400, CodeInvalid},
		{"sessions of unknown tenant", admin("GET", "/admin/api/tenants/tn_nope/sessions", ""), 404, CodeNotFound},
		{"sessions of bad tenant id", admin("GET", "/admin/api/tenants/"+longID+"/sessions", ""), 400, CodeInvalid},
		{"presence of unknown tenant", admin("GET", "/admin/api/tenants/tn_nope/presence", ""), 404, CodeNotFound},
		{"presence of bad tenant id", admin("GET", "/admin/api/tenants/a%0Ab/presence", ""), 400, CodeInvalid},
		{"webhooks of unknown tenant", admin("GET", "/admin/api/tenants/tn_nope/webhooks", ""), 404, CodeNotFound},
		{"webhooks of bad tenant id", admin("GET", "/admin/api/tenants/"+longID+"/webhooks", ""), 400, CodeInvalid},
		{"post to presence", admin("POST", tenantPath+"/presence", "{}"), 405, CodeMethod},
		{"evict unknown session", admin("DELETE", "/admin/api/sessions/ses_nope", ""), 404, CodeNotFound},
		{"evict bad session id", admin("DELETE", "/admin/api/sessions/a%20b", ""), 400, CodeInvalid},
		{"patch unknown tenant", admin("PATCH", "/admin/api/tenants/tn_nope", `{"suspended":true}`), 404, CodeNotFound},
		{"patch bad tenant id", admin("PATCH", "/admin/api/tenants/a%20b", `{"suspended":true}`), 400, CodeInvalid},
		{"patch empty body", admin("PATCH", tenantPath, ""), 400, CodeInvalid},
		{"patch nothing", patch(`{}`), 400, CodeInvalid},
		{"patch malformed JSON", patch(`{"limits":`), 400, CodeInvalid},
		{"patch unknown field", patch(`{"plan":"pro"}`), 400, CodeInvalid},
		{"patch unknown limit", patch(`{"limits":{"max_conns":5}}`), 400, CodeInvalid},
		{"patch limits not an object", patch(`{"limits":5}`), 400, CodeInvalid},
		{"patch suspended a string", patch(`{"suspended":"yes"}`), 400, CodeInvalid},
		{"patch zero connections", patch(`{"limits":{"max_connections":0}}`), 400, CodeInvalid},
		{"patch negative connections", patch(`{"limits":{"max_connections":-1}}`), 400, CodeInvalid},
		{"patch connections over the bound", patch(`{"limits":{"max_connections":10000001}}`), 400, CodeInvalid},
		{"patch history over a week", patch(`{"limits":{"history_seconds":604801}}`), 400, CodeInvalid},
		{"patch message bytes over 1 MiB", patch(`{"limits":{"max_message_bytes":1048577}}`), 400, CodeInvalid},
		{"patch limit a fraction", patch(`{"limits":{"publish_per_second":1.5}}`), 400, CodeInvalid},
		{"patch one good limit and one bad", patch(`{"limits":{"max_connections":5,"publish_per_second":0},"suspended":true}`), 400, CodeInvalid},
		{"patch text body", call{method: "PATCH", path: tenantPath, auth: testAdminToken, body: `{"suspended":true}`, contentType: plainText}, 415, CodeMediaType},
		{"patch oversize body", patch(oversize), 413, CodeTooLarge},
	})
	got, err := s.tenants.Get(t.Context(), a.TenantID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Suspended || got.Limits != tenant.DefaultLimits() {
		t.Errorf("tenant after refused patches: suspended %v, limits %+v; want unchanged", got.Suspended, got.Limits)
	}
	s.do(t, call{method: "GET", path: "/v1/tenant", auth: a.APIKey}).want(t, 200)
}

func ptr[T any](v T) *T { return &v }

// wantTenants checks how many tenants exist.
func (s *testServer) wantTenants(t testing.TB, want int) {
	t.Helper()
	all, err := s.tenants.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != want {
		t.Errorf("%d tenants, want %d", len(all), want)
	}
}

// wantKeys checks how many API and signing keys the tenant has.
func (s *testServer) wantKeys(t testing.TB, a account, apiKeys, signingKeys int) {
	t.Helper()
	ks, err := s.tenants.APIKeys(t.Context(), a.TenantID)
	if err != nil {
		t.Fatal(err)
	}
	sks, err := s.tenants.SigningKeys(t.Context(), a.TenantID)
	if err != nil {
		t.Fatal(err)
	}
	if len(ks) != apiKeys || len(sks) != signingKeys {
		t.Errorf("tenant %s has %d API keys and %d signing keys, want %d and %d", a.TenantID, len(ks), len(sks), apiKeys, signingKeys)
	}
}

// wantSessionChannels checks a live session's channels as the operator sees them.
func (s *testServer) wantSessionChannels(t testing.TB, a account, sessionID string, want ...string) {
	t.Helper()
	var list struct {
		Sessions []struct {
			ID       string   `json:"id"`
			Channels []string `json:"channels"`
		} `json:"sessions"`
	}
	s.do(t, call{method: "GET", path: "/admin/api/tenants/" + a.TenantID + "/sessions", auth: testAdminToken}).want(t, 200).decode(t, &list)
	for _, ses := range list.Sessions {
		if ses.ID == sessionID {
			if !slices.Equal(ses.Channels, want) {
				t.Errorf("session %s has channels %v, want %v", sessionID, ses.Channels, want)
			}
			return
		}
	}
	t.Errorf("session %s is not live any more", sessionID)
}
