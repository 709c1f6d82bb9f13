package chartcheck

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// repoRoot is the main module's directory. What the programs read, serve and export is taken
// from their source: this module cannot import the main module's commands.
const repoRoot = "../../.."

// parseDir parses the non-test Go files of a directory of the main module.
func parseDir(t testing.TB, dir string) []*ast.File {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(repoRoot, dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	var files []*ast.File
	for _, p := range paths {
		if strings.HasSuffix(p, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, p, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	if len(files) == 0 {
		t.Fatalf("no Go files in %s", dir)
	}
	return files
}

// stringLit returns the value of a string literal, or false.
func stringLit(e ast.Expr) (string, bool) {
	lit, ok := e.(*ast.BasicLit)
	if !ok || lit.Kind != token.STRING {
		return "", false
	}
	s, err := strconv.Unquote(lit.Value)
	return s, err == nil
}

// apiVariables returns the variables the api reads, each with the default it documents: the
// envVars list of cmd/api/vars.go, which the api's own tests keep complete.
func apiVariables(t testing.TB) map[string]string {
	t.Helper()
	vars := map[string]string{}
	for _, f := range parseDir(t, "cmd/api") {
		ast.Inspect(f, func(n ast.Node) bool {
			spec, ok := n.(*ast.ValueSpec)
			if !ok || len(spec.Names) != 1 || spec.Names[0].Name != "envVars" || len(spec.Values) != 1 {
				return true
			}
			list, ok := spec.Values[0].(*ast.CompositeLit)
			if !ok {
				t.Fatal("cmd/api: envVars is no composite literal")
			}
			for _, elt := range list.Elts {
				entry, ok := elt.(*ast.CompositeLit)
				if !ok {
					continue
				}
				fields := map[string]string{}
				for _, e := range entry.Elts {
					if kv, ok := e.(*ast.KeyValueExpr); ok {
						if key, ok := kv.Key.(*ast.Ident); ok {
							if s, ok := stringLit(kv.Value); ok {
								fields[key.Name] = s
							}
						}
					}
				}
				if fields["Name"] != "" {
					vars[fields["Name"]] = fields["Default"]
				}
			}
			return false
		})
	}
	if len(vars) < 20 || vars["REDIS_URL"] == "" || vars["STREAMGATE_DRAIN_DELAY"] == "" {
		t.Fatalf("the api's variables were not found in cmd/api/vars.go: %v", vars)
	}
	return vars
}

// workerVariables returns the variables the worker reads: the names spelled out in its command
// and in the configuration and telemetry packages it shares with the api.
func workerVariables(t testing.TB) map[string]bool {
	t.Helper()
	name := regexp.MustCompile(`^(?:STREAMGATE|REDIS|OTEL)_[A-Z0-9_]+$`)
	vars := map[string]bool{}
	for _, dir := range []string{"cmd/worker", "internal/config", "internal/telemetry"} {
		for _, f := range parseDir(t, dir) {
			ast.Inspect(f, func(n ast.Node) bool {
				if e, ok := n.(ast.Expr); ok {
					if s, ok := stringLit(e); ok && name.MatchString(s) {
						vars[s] = true
					}
				}
				return true
			})
		}
	}
	for _, v := range []string{"REDIS_URL", "REDIS_CLUSTER_ADDRS", "STREAMGATE_WORKER_CLAIM_IDLE", "STREAMGATE_SECRET_KEY"} {
		if !vars[v] {
			t.Fatalf("the worker's variables were not found (no %s): %v", v, vars)
		}
	}
	return vars
}

// apiRoutes returns the paths internal/httpapi registers for GET.
func apiRoutes(t testing.TB) map[string]bool {
	t.Helper()
	routes := map[string]bool{}
	for _, f := range parseDir(t, "internal/httpapi") {
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || len(call.Args) == 0 {
				return true
			}
			if sel, ok := call.Fun.(*ast.SelectorExpr); ok && sel.Sel.Name == "GET" {
				if p, ok := stringLit(call.Args[0]); ok {
					routes[p] = true
				}
			}
			return true
		})
	}
	if !routes["/healthz"] {
		t.Fatalf("the api's routes were not found in internal/httpapi: %v", routes)
	}
	return routes
}

// exportedGauges returns the Prometheus names of the gauges internal/telemetry declares with no
// unit or an annotation unit ({connection}): the exporter writes their names with dots as
// underscores and adds no suffix (the api's TestMetrics scrapes them by those names).
func exportedGauges(t testing.TB) map[string]bool {
	t.Helper()
	files := parseDir(t, "internal/telemetry")
	consts := map[string]string{}
	for _, f := range files {
		ast.Inspect(f, func(n ast.Node) bool {
			if spec, ok := n.(*ast.ValueSpec); ok && len(spec.Names) == len(spec.Values) {
				for i, id := range spec.Names {
					if s, ok := stringLit(spec.Values[i]); ok {
						consts[id.Name] = s
					}
				}
			}
			return true
		})
	}
	gauges := map[string]bool{}
	for _, f := range files {
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || len(call.Args) == 0 {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok || !strings.HasSuffix(sel.Sel.Name, "Gauge") {
				return true
			}
			id, ok := call.Args[0].(*ast.Ident)
			if !ok || consts[id.Name] == "" {
				return true
			}
			for _, opt := range call.Args[1:] {
				if o, ok := opt.(*ast.CallExpr); ok && len(o.Args) == 1 {
					if s, ok := o.Fun.(*ast.SelectorExpr); ok && s.Sel.Name == "WithUnit" {
						if unit, _ := stringLit(o.Args[0]); !strings.HasPrefix(unit, "{") {
							return true
						}
					}
				}
			}
			gauges[strings.ReplaceAll(consts[id.Name], ".", "_")] = true
			return true
		})
	}
	if !gauges["streamgate_node_subscriptions"] {
		t.Fatalf("the api's gauges were not found in internal/telemetry: %v", gauges)
	}
	return gauges
}

// workerRoutes returns the paths cmd/worker serves for GET on its metrics address.
func workerRoutes(t testing.TB) map[string]bool {
	t.Helper()
	routes := map[string]bool{}
	for _, f := range parseDir(t, "cmd/worker") {
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || len(call.Args) == 0 {
				return true
			}
			if sel, ok := call.Fun.(*ast.SelectorExpr); ok && (sel.Sel.Name == "Handle" || sel.Sel.Name == "HandleFunc") {
				if p, ok := stringLit(call.Args[0]); ok {
					if route, ok := strings.CutPrefix(p, "GET "); ok {
						routes[route] = true
					}
				}
			}
			return true
		})
	}
	return routes
}

// imageCommands returns the paths of the programs the Dockerfile puts in the image: every
// command under cmd/, built into one folder that is copied into the image.
func imageCommands(t testing.TB) map[string]bool {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	build := regexp.MustCompile(`(?m)^RUN .*go build .*-o (\S+/) \./cmd/\.\.\.$`).FindStringSubmatch(string(raw))
	if build == nil {
		t.Fatal("the Dockerfile builds no ./cmd/... into a folder")
	}
	cp := regexp.MustCompile(`(?m)^COPY --from=\S+ ` + regexp.QuoteMeta(build[1]) + ` (\S+/)$`).FindStringSubmatch(string(raw))
	if cp == nil {
		t.Fatalf("the Dockerfile does not copy %s into the image", build[1])
	}
	dirs, err := os.ReadDir(filepath.Join(repoRoot, "cmd"))
	if err != nil {
		t.Fatal(err)
	}
	cmds := map[string]bool{}
	for _, d := range dirs {
		if d.IsDir() {
			cmds[cp[1]+d.Name()] = true
		}
	}
	return cmds
}
