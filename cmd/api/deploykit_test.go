package main

import (
	"bufio"
	"encoding/json"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// Prometheus's own series, which no exporter writes.
var prometheusSeries = []string{"up"}

// exportedMetricNames scrapes url and returns the name of every sample in it.
func exportedMetricNames(t testing.TB, url string) map[string]bool {
	t.Helper()
	resp, err := testClient.Get(url)
	if err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape %s: %d", url, resp.StatusCode)
	}
	names := map[string]bool{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if i := strings.IndexAny(line, "{ "); i > 0 {
			names[line[:i]] = true
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	return names
}

var (
	promString   = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'`)
	promMatchers = regexp.MustCompile(`\{[^{}]*\}`)
	promRange    = regexp.MustCompile(`\[[^\[\]]*\]`)
	promVariable = regexp.MustCompile(`\$\{[^}]*\}|\$\w+`)
	promGrouping = regexp.MustCompile(`(?i)\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)`)
	promLabelVal = regexp.MustCompile(`\blabel_values\(\s*([^,()]+?)\s*(?:,[^()]*)?\)`)
	promIdent    = regexp.MustCompile(`[A-Za-z_:][A-Za-z0-9_:]*`)
	promKeywords = map[string]bool{
		"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
		"bool": true, "and": true, "or": true, "unless": true, "offset": true, "inf": true, "nan": true,
	}
)

// promMetrics returns the metric names a PromQL expression (or a Grafana label_values query)
// selects: identifiers outside label matchers, strings, ranges, groupings and variables, that are
// neither keywords nor function calls.
func promMetrics(expr string) []string {
	e := promLabelVal.ReplaceAllString(expr, "$1")
	e = promString.ReplaceAllString(e, `""`)
	e = promVariable.ReplaceAllString(e, "")
	e = promMatchers.ReplaceAllString(e, "")
	e = promRange.ReplaceAllString(e, "")
	e = promGrouping.ReplaceAllString(e, "")
	var out []string
	for _, loc := range promIdent.FindAllStringIndex(e, -1) {
		word := e[loc[0]:loc[1]]
		rest := strings.TrimLeft(e[loc[1]:], " \t\n")
		if promKeywords[strings.ToLower(word)] || strings.HasPrefix(rest, "(") {
			continue
		}
		if loc[0] > 0 && (e[loc[0]-1] >= '0' && e[loc[0]-1] <= '9' || e[loc[0]-1] == '.') {
			continue // the exponent or unit of a number: 1e3
		}
		out = append(out, word)
	}
	return out
}

func TestPromMetrics(t *testing.T) {
	t.Parallel()
	for expr, want := range map[string][]string{
		`histogram_quantile(0.99, sum by (instance, le) (rate(a_seconds_bucket{instance=~"$instance",x!="y"}[$__rate_interval])))`: {"a_seconds_bucket"},
		`topk($topn, sum by (tenant) (b))`:                                     {"b"},
		`sum(rate(c_total[5m])) / clamp_min(sum(rate(d_total[5m])), 1) > 0.01`: {"c_total", "d_total"},
		`up{job=~".*x.*"} == 0 and on (instance) e offset 5m`:                  {"up", "e"},
		`label_values(f, instance)`:                                            {"f"},
		`max(g) > 1e3 or absent(h)`:                                            {"g", "h"},
	} {
		if got := promMetrics(expr); !slices.Equal(got, want) {
			t.Errorf("promMetrics(%s) = %v, want %v", expr, got, want)
		}
	}
}

// grafanaExprs returns every PromQL query of a dashboard: panel targets' expr and query
// variables' queries, at any depth.
func grafanaExprs(t testing.TB, path string) []string {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var exprs []string
	var walk func(v any, variable bool)
	walk = func(v any, variable bool) {
		switch v := v.(type) {
		case map[string]any:
			isQueryVar := v["type"] == "query"
			for k, child := range v {
				if s, ok := child.(string); ok && (k == "expr" || variable && k == "query") {
					exprs = append(exprs, s)
					continue
				}
				walk(child, variable || isQueryVar && k == "query")
			}
			if isQueryVar {
				if s, ok := v["query"].(string); ok {
					exprs = append(exprs, s)
				}
			}
		case []any:
			for _, child := range v {
				walk(child, variable)
			}
		}
	}
	walk(doc, false)
	return exprs
}

// ruleExprs returns the expr values of a Prometheus rules file, read line by line: a plain
// scalar on the line, or a block scalar (| or >) on the lines indented below it.
func ruleExprs(t testing.TB, path string) []string {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(raw), "\n")
	var exprs []string
	for i := 0; i < len(lines); i++ {
		trimmed := strings.TrimLeft(lines[i], " ")
		after, ok := strings.CutPrefix(trimmed, "expr:")
		if !ok {
			continue
		}
		after = strings.TrimSpace(after)
		if after != "" && !strings.ContainsAny(after[:1], "|>") {
			exprs = append(exprs, strings.Trim(after, `'"`))
			continue
		}
		indent := len(lines[i]) - len(trimmed)
		var block []string
		for i+1 < len(lines) {
			next := lines[i+1]
			if strings.TrimSpace(next) != "" && len(next)-len(strings.TrimLeft(next, " ")) <= indent {
				break
			}
			block = append(block, strings.TrimSpace(next))
			i++
		}
		if e := strings.TrimSpace(strings.Join(block, "\n")); e != "" {
			exprs = append(exprs, e)
		}
	}
	return exprs
}

// TestDeployKitMetricsAreExported checks that every metric the Grafana dashboard and the
// Prometheus alerts name is one an api node or a worker really exports: both are started, given
// traffic so that every instrument has a sample, and scraped.
func TestDeployKitMetricsAreExported(t *testing.T) {
	t.Parallel()
	dashboard := grafanaExprs(t, "../../deploy/grafana/streamgate.json")
	alerts := ruleExprs(t, "../../deploy/prometheus/alerts.yml")
	if len(dashboard) < 20 || len(alerts) < 8 {
		t.Fatalf("read %d dashboard queries and %d alert expressions: the files are not read as written", len(dashboard), len(alerts))
	}

	n := startNode(t, nil, nil)
	a := n.signup(t, "Acme")
	sub := n.openStream(t, n.token(t, a, "u", []string{"*"}, 0), "orders", "job:j1")
	n.publish(t, a, "orders", 1)
	decodeMessage(t, sub.next(5*time.Second))
	w := startWorker(t, n.Redis, "deploykit", "STREAMGATE_WORKER_METRICS_ADDR=127.0.0.1:0")
	n.putJob(t, a, "j1", map[string]any{"status": "running"})
	jobEvent(t, sub.next(10*time.Second))

	exported := map[string]bool{}
	for _, name := range prometheusSeries {
		exported[name] = true
	}
	var api map[string]bool
	waitFor(t, 5*time.Second, "the delivery to be counted", func() bool {
		api = exportedMetricNames(t, n.URL+"/metrics")
		return api["streamgate_delivered_total"] && api["streamgate_publish_to_delivery_seconds_bucket"]
	})
	for name := range api {
		exported[name] = true
	}
	for name := range exportedMetricNames(t, "http://"+logAttr(t, w.logs, "serving metrics", "addr")+"/metrics") {
		exported[name] = true
	}

	check := func(file string, exprs []string) map[string]bool {
		used := map[string]bool{}
		for _, e := range exprs {
			for _, name := range promMetrics(e) {
				used[name] = true
				if !exported[name] {
					t.Errorf("%s: %q names %s, which neither the api nor the worker exports", file, e, name)
				}
			}
		}
		return used
	}
	usedDash := check("deploy/grafana/streamgate.json", dashboard)
	usedAlerts := check("deploy/prometheus/alerts.yml", alerts)

	// What each file is for.
	for _, name := range []string{
		"streamgate_node_connections", "streamgate_connections", "streamgate_delivered_total",
		"streamgate_dropped_total", "streamgate_evicted_total", "streamgate_publish_to_delivery_seconds_bucket",
		"http_server_request_duration_seconds_count", "streamgate_updates_lag", "streamgate_updates_dead_letters",
	} {
		if !usedDash[name] {
			t.Errorf("the dashboard does not show %s", name)
		}
	}
	for _, name := range []string{
		"up", "streamgate_dropped_total", "streamgate_evicted_total", "streamgate_updates_lag",
		"streamgate_worker_dead_lettered_total", "streamgate_updates_dead_letters",
	} {
		if !usedAlerts[name] {
			t.Errorf("no alert watches %s", name)
		}
	}
}
