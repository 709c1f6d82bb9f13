package httpapi

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// notYetServed lists the operations openapi.json documents ahead of the branch that serves
// them. Each merge that brings one in must remove it here: the test fails while a served
// operation is still listed.
var notYetServed = []string{}

// staticFiles are routes that serve the files of a web page, not API operations.
var staticFiles = []string{
	"GET /admin/assets/{*}",
	"GET /docs/assets/{*}",
	"GET /client/{*}",
}

// openAPI is the part of the document the tests read.
type openAPI struct {
	OpenAPI    string                                `json:"openapi"`
	Paths      map[string]map[string]json.RawMessage `json:"paths"`
	Components struct {
		Schemas map[string]json.RawMessage `json:"schemas"`
	} `json:"components"`
}

func loadOpenAPI(t *testing.T) openAPI {
	t.Helper()
	var doc openAPI
	dec := json.NewDecoder(bytes.NewReader(openAPIDocument))
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if doc.OpenAPI != "3.1.0" {
		t.Fatalf("openapi.json is OpenAPI %q, want 3.1.0", doc.OpenAPI)
	}
	return doc
}

var httpMethods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

// routeKey writes a route as "METHOD /path" with its parameters unnamed, so that gin's
// "/v1/jobs/:id" and OpenAPI's "/v1/jobs/{id}" compare equal, and a catch-all is {*}.
func routeKey(method, path string) string {
	segs := strings.Split(path, "/")
	for i, s := range segs {
		switch {
		case strings.HasPrefix(s, ":"), strings.HasPrefix(s, "{") && strings.HasSuffix(s, "}"):
			segs[i] = "{}"
		case strings.HasPrefix(s, "*"):
			segs[i] = "{*}"
		}
	}
	return strings.ToUpper(method) + " " + strings.Join(segs, "/")
}

// routeTable is an edge built with nothing behind it: enough to list its routes and serve the
// static ones.
func routeTable() *Server {
	return New(Config{NodeID: "test"}, slog.New(slog.NewTextHandler(io.Discard, nil)), Deps{Metrics: http.NotFoundHandler()})
}

// TestOpenAPICoversEveryRoute walks gin's route table: every route is documented, every
// documented operation is served (or listed in notYetServed), and notYetServed holds nothing
// that is served by now.
func TestOpenAPICoversEveryRoute(t *testing.T) {
	t.Parallel()
	doc := loadOpenAPI(t)
	documented := map[string]string{} // key → "METHOD /path" as documented
	for path, item := range doc.Paths {
		for method := range item {
			if slices.Contains(httpMethods, method) {
				documented[routeKey(method, path)] = strings.ToUpper(method) + " " + path
			}
		}
	}
	served := map[string]string{}
	for _, r := range routeTable().router().Routes() {
		served[routeKey(r.Method, r.Path)] = r.Method + " " + r.Path
	}
	static := map[string]bool{}
	for _, s := range staticFiles {
		static[s] = true
		if served[s] == "" {
			t.Errorf("staticFiles lists %s, which is not served", s)
		}
	}
	pending := map[string]bool{}
	for _, op := range notYetServed {
		method, path, _ := strings.Cut(op, " ")
		k := routeKey(method, path)
		pending[k] = true
		if documented[k] == "" {
			t.Errorf("notYetServed lists %s, which openapi.json does not document", op)
		}
		if served[k] != "" {
			t.Errorf("%s is served now (%s): remove it from notYetServed", op, served[k])
		}
	}
	for k, route := range served {
		if documented[k] == "" && !static[k] {
			t.Errorf("%s is served but openapi.json does not document it", route)
		}
	}
	for k, op := range documented {
		if served[k] == "" && !pending[k] {
			t.Errorf("openapi.json documents %s, which is not served (nor listed in notYetServed)", op)
		}
	}
}

// TestOpenAPIOperationsAreComplete checks what a reader and a client generator need of every
// operation: an id, a tag, a summary, responses, the Error schema for every JSON error, and
// path parameters that match the path.
func TestOpenAPIOperationsAreComplete(t *testing.T) {
	t.Parallel()
	doc := loadOpenAPI(t)
	var raw map[string]any
	if err := json.Unmarshal(openAPIDocument, &raw); err != nil {
		t.Fatal(err)
	}
	ids := map[string]string{}
	pathParam := regexp.MustCompile(`\{([^}]+)\}`)
	for path, item := range doc.Paths {
		for method, rawOp := range item {
			if !slices.Contains(httpMethods, method) {
				continue
			}
			where := strings.ToUpper(method) + " " + path
			var op struct {
				OperationID string                     `json:"operationId"`
				Tags        []string                   `json:"tags"`
				Summary     string                     `json:"summary"`
				Security    *[]map[string][]string     `json:"security"`
				Parameters  []json.RawMessage          `json:"parameters"`
				Responses   map[string]json.RawMessage `json:"responses"`
			}
			if err := json.Unmarshal(rawOp, &op); err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			if op.OperationID == "" || ids[op.OperationID] != "" {
				t.Errorf("%s: operationId %q missing or already used by %s", where, op.OperationID, ids[op.OperationID])
			}
			ids[op.OperationID] = where
			if len(op.Tags) != 1 || op.Summary == "" || len(op.Responses) == 0 {
				t.Errorf("%s: wants one tag, a summary and responses", where)
			}
			if op.Security == nil {
				t.Errorf("%s: says nothing of security (use [] for none)", where)
			}
			var inPath []string
			for _, p := range op.Parameters {
				var param struct {
					Name string `json:"name"`
					In   string `json:"in"`
					Ref  string `json:"$ref"`
				}
				_ = json.Unmarshal(p, &param)
				if param.Ref != "" {
					_ = json.Unmarshal(mustJSON(t, resolve(t, raw, param.Ref)), &param)
				}
				if param.In == "path" {
					inPath = append(inPath, param.Name)
				}
			}
			var want []string
			for _, m := range pathParam.FindAllStringSubmatch(path, -1) {
				want = append(want, m[1])
			}
			slices.Sort(inPath)
			slices.Sort(want)
			if !slices.Equal(inPath, want) {
				t.Errorf("%s: path parameters %v, want %v", where, inPath, want)
			}
			for status, rawResp := range op.Responses {
				resp := map[string]any{}
				_ = json.Unmarshal(rawResp, &resp)
				if ref, ok := resp["$ref"].(string); ok {
					resp = resolve(t, raw, ref).(map[string]any)
				}
				if status[0] == '2' || status[0] == '3' {
					continue
				}
				content, _ := resp["content"].(map[string]any)
				media, ok := content["application/json"].(map[string]any)
				if !ok {
					continue // the Mercure hub answers plain text, by its protocol
				}
				if schema, _ := media["schema"].(map[string]any); schema["$ref"] != "#/components/schemas/Error" {
					t.Errorf("%s %s: the error is not the Error schema", where, status)
				}
			}
		}
	}
}

// TestOpenAPIExamplesMatchSchemas validates every example in the document (request and
// response bodies, error examples, schemas' own examples) against its schema, as JSON Schema
// 2020-12, which OpenAPI 3.1 uses; formats (date-time, uri) are asserted.
func TestOpenAPIExamplesMatchSchemas(t *testing.T) {
	t.Parallel()
	const base = "https://streamgate.invalid/openapi.json"
	root, err := jsonschema.UnmarshalJSON(bytes.NewReader(openAPIDocument))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	if err := c.AddResource(base, root); err != nil {
		t.Fatal(err)
	}
	compile := func(ptr string) *jsonschema.Schema {
		t.Helper()
		s, err := c.Compile(base + "#" + ptr)
		if err != nil {
			t.Fatalf("schema at %s: %v", ptr, err)
		}
		return s
	}
	validated := 0
	check := func(where, schemaPtr string, example any) {
		t.Helper()
		validated++
		if err := compile(schemaPtr).Validate(example); err != nil {
			t.Errorf("%s: the example does not match its schema: %v", where, err)
		}
	}

	doc := root.(map[string]any)
	components := doc["components"].(map[string]any)
	for name, s := range components["schemas"].(map[string]any) {
		ptr := "/components/schemas/" + escapePointer(name)
		compile(ptr) // every schema compiles, referenced or not
		for i, ex := range asList(s.(map[string]any)["examples"]) {
			check("schema "+name+" example "+strconv.Itoa(i), ptr, ex)
		}
	}
	// Media types: a request body, a response (inline or shared).
	walkMedia := func(where, ptr string, content map[string]any) {
		for mt, m := range content {
			media := m.(map[string]any)
			if _, ok := media["schema"]; !ok {
				t.Errorf("%s %s: no schema", where, mt)
				continue
			}
			sptr := ptr + "/content/" + escapePointer(mt) + "/schema"
			if !strings.Contains(mt, "json") {
				continue
			}
			if ex, ok := media["example"]; ok {
				check(where+" "+mt, sptr, ex)
			}
			if exs, ok := media["examples"].(map[string]any); ok {
				for name, ex := range exs {
					check(where+" "+mt+" example "+name, sptr, ex.(map[string]any)["value"])
				}
			}
			_, one := media["example"]
			_, many := media["examples"]
			if !one && !many && where != "GET /openapi.json 200" {
				t.Errorf("%s %s: no example", where, mt)
			}
		}
	}
	for name, r := range components["responses"].(map[string]any) {
		content, _ := r.(map[string]any)["content"].(map[string]any)
		walkMedia("response "+name, "/components/responses/"+escapePointer(name), content)
	}
	for path, item := range doc["paths"].(map[string]any) {
		for method, o := range item.(map[string]any) {
			op := o.(map[string]any)
			where := strings.ToUpper(method) + " " + path
			ptr := "/paths/" + escapePointer(path) + "/" + method
			if rb, ok := op["requestBody"].(map[string]any); ok {
				walkMedia(where+" request", ptr+"/requestBody", rb["content"].(map[string]any))
			}
			for status, r := range op["responses"].(map[string]any) {
				if content, ok := r.(map[string]any)["content"].(map[string]any); ok {
					walkMedia(where+" "+status, ptr+"/responses/"+status, content)
				}
			}
		}
	}
	if validated < 80 {
		t.Errorf("only %d examples validated; the walk missed some", validated)
	}
}

// TestOpenAPISchemasRefuseWrongExamples makes sure the validation above can fail: the
// schemas are strict enough to catch a wrong field, type or value.
func TestOpenAPISchemasRefuseWrongExamples(t *testing.T) {
	t.Parallel()
	const base = "https://streamgate.invalid/openapi.json"
	root, err := jsonschema.UnmarshalJSON(bytes.NewReader(openAPIDocument))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	if err := c.AddResource(base, root); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ schema, value string }{
		{"Error", `{"error":{"code":"teapot","message":"no"}}`},
		{"Error", `{"error":{"code":"not_found"}}`},
		{"PublishRequest", `{"event":"x"}`},
		{"PublishRequest", `{"data":1,"channel":"c"}`},
		{"TokenRequest", `{"sub":"u","ttl_seconds":86401}`},
		{"JobUpdate", `{"status":"done"}`},
		{"JobUpdate", `{}`},
		{"Job", `{"job_id":"j","status":"running","progress":40,"message":null,"output":null,"error":null,"updated_at":"yesterday"}`},
		{"BatchRequest", `{"events":[]}`},
		{"Channel", `"has space"`},
		{"IdentityProviderRequest", `{"issuer":"i","audience":"a","jwks_url":"https://x/","public_key":"k","algorithm":"RS256"}`},
		{"Settings", `{"presence_channels":"room.*"}`},
	} {
		s, err := c.Compile(base + "#/components/schemas/" + tc.schema)
		if err != nil {
			t.Fatal(err)
		}
		var v any
		if err := json.Unmarshal([]byte(tc.value), &v); err != nil {
			t.Fatal(err)
		}
		if s.Validate(v) == nil {
			t.Errorf("%s accepts %s", tc.schema, tc.value)
		}
	}
}

// staticGetter serves the route table and returns a GET that sends header and reads the
// whole answer.
func staticGetter(t *testing.T, header http.Header) func(path string) (*http.Response, []byte) {
	srv := httptest.NewServer(routeTable().Handler())
	t.Cleanup(srv.Close)
	return func(path string) (*http.Response, []byte) {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		maps.Copy(req.Header, header)
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, b
	}
}

// TestOpenAPIAndDocsAreServed fetches the document and the reference page as a browser would:
// the page and its script come from this node, under a policy that allows no other origin.
func TestOpenAPIAndDocsAreServed(t *testing.T) {
	t.Parallel()
	get := staticGetter(t, nil)

	resp, b := get("/openapi.json")
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") || !bytes.Equal(b, openAPIDocument) {
		t.Fatalf("GET /openapi.json: %d %s, %d bytes", resp.StatusCode, resp.Header.Get("Content-Type"), len(b))
	}

	resp, page := get("/docs")
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET /docs: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	csp := resp.Header.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'self'", "connect-src 'self'", "script-src 'self'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("GET /docs: policy %q lacks %q", csp, want)
		}
	}
	if strings.Contains(csp, "http") || strings.Contains(csp, "unsafe-eval") {
		t.Errorf("GET /docs: policy %q allows another origin or eval", csp)
	}
	refs := regexp.MustCompile(`(?:src|href|data-url)="([^"]+)"`).FindAllSubmatch(page, -1)
	if len(refs) < 2 {
		t.Fatalf("GET /docs: the page loads %d things, want the document and the renderer:\n%s", len(refs), page)
	}
	for _, m := range refs {
		ref := string(m[1])
		if strings.HasPrefix(ref, "data:") {
			continue // inline, such as the empty favicon
		}
		if !strings.HasPrefix(ref, "/") || strings.HasPrefix(ref, "//") {
			t.Errorf("GET /docs: the page loads %s, which is not on this node", ref)
			continue
		}
		if r, body := get(ref); r.StatusCode != 200 || len(body) == 0 {
			t.Errorf("GET /docs loads %s, which answers %d", ref, r.StatusCode)
		}
	}
	if r, _ := get("/docs/assets/nothing.js"); r.StatusCode != 404 {
		t.Errorf("GET /docs/assets/nothing.js: %d, want 404", r.StatusCode)
	}
}

// TestClientIsServed: a tenant's page on any origin imports the JavaScript client from a node,
// and the dashboard loads the same files from its own folder.
func TestClientIsServed(t *testing.T) {
	t.Parallel()
	get := staticGetter(t, http.Header{"Origin": {"https://app.acme.example"}})
	for _, path := range []string{"/client/index.js", "/client/src/client.js", "/admin/assets/client/src/sse.js"} {
		resp, body := get(path)
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/javascript") || !bytes.Contains(body, []byte("export ")) {
			t.Errorf("GET %s: %d %s, %d bytes; want a JavaScript module", path, resp.StatusCode, resp.Header.Get("Content-Type"), len(body))
		}
		if strings.HasPrefix(path, "/client/") && resp.Header.Get("Access-Control-Allow-Origin") != "*" {
			t.Errorf("GET %s: Access-Control-Allow-Origin %q, want * (a module from another origin needs it)", path, resp.Header.Get("Access-Control-Allow-Origin"))
		}
	}
	for _, path := range []string{"/client/nothing.js", "/client/src/", "/client/", "/client/../go.mod"} {
		resp, body := get(path)
		if resp.StatusCode != 404 || !bytes.Contains(body, []byte(`"code":"not_found"`)) {
			t.Errorf("GET %s: %d %s, want 404 not_found", path, resp.StatusCode, body)
		}
	}
}

func resolve(t *testing.T, root map[string]any, ref string) any {
	t.Helper()
	var v any = root
	for _, p := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
		p = strings.ReplaceAll(strings.ReplaceAll(p, "~1", "/"), "~0", "~")
		m, ok := v.(map[string]any)
		if !ok || m[p] == nil {
			t.Fatalf("$ref %s does not resolve", ref)
		}
		v = m[p]
	}
	return v
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func escapePointer(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

func asList(v any) []any {
	l, _ := v.([]any)
	return l
}
