package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"text/template"
	"time"
)

// The chart is checked by reading its files, not by rendering it: helm's Go packages are too
// heavy a dependency for the build. The templates are parsed, not executed: one that renders
// invalid YAML or a wrong manifest passes unless the checks below name what it breaks.
const chartDir = "../../deploy/helm/streamgate"

// yamlValues reads a values file of nested maps, one "key: value" a line, into dotted paths
// ("api.drainDelaySeconds" → "5"); list items and flow collections are kept as their text.
func yamlValues(t testing.TB, path string) map[string]string {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	type level struct {
		indent int
		key    string
	}
	var stack []level
	out := map[string]string{}
	entry := regexp.MustCompile(`^( *)([A-Za-z0-9_.\-/]+):(?:\s+(.*?))?\s*$`)
	for _, line := range strings.Split(string(raw), "\n") {
		if i := strings.Index(line, " #"); i >= 0 {
			line = line[:i]
		}
		if strings.HasPrefix(strings.TrimSpace(line), "#") || strings.HasPrefix(strings.TrimSpace(line), "-") {
			continue
		}
		m := entry.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		indent := len(m[1])
		for len(stack) > 0 && stack[len(stack)-1].indent >= indent {
			stack = stack[:len(stack)-1]
		}
		keys := make([]string, 0, len(stack)+1)
		for _, l := range stack {
			keys = append(keys, l.key)
		}
		keys = append(keys, m[2])
		out[strings.Join(keys, ".")] = strings.Trim(m[3], `"`)
		if m[3] == "" {
			stack = append(stack, level{indent, m[2]})
		}
	}
	return out
}

func readChartFile(t testing.TB, name string) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(chartDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}

func intValue(t testing.TB, values map[string]string, key string) int {
	t.Helper()
	n, err := strconv.Atoi(values[key])
	if err != nil {
		t.Fatalf("values.yaml %s = %q: %v", key, values[key], err)
	}
	return n
}

// workerVariables returns the variables the worker reads: the names its configuration and
// internal/config's Redis settings spell out.
func workerVariables(t testing.TB) map[string]bool {
	t.Helper()
	files, err := filepath.Glob("../../internal/config/*.go")
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, f := range append(files, "../worker/main.go") {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range regexp.MustCompile(`"((?:STREAMGATE|REDIS|OTEL)_[A-Z_]+)"`).FindAllStringSubmatch(string(raw), -1) {
			names[m[1]] = true
		}
	}
	if !names["STREAMGATE_WORKER_CLAIM_IDLE"] || !names["REDIS_URL"] {
		t.Fatalf("the worker's variables were not found: %v", names)
	}
	return names
}

// containerEnv returns the variable names a template sets (its "- name: X" entries under env,
// with the shared helper's for the Redis settings when the template includes it), each with
// the lines that follow it up to the next entry.
func containerEnv(tmpl, helpers string) map[string]string {
	text := tmpl
	if strings.Contains(tmpl, `include "streamgate.redisEnv"`) {
		text += "\n" + helpers
	}
	env := map[string]string{}
	lines := strings.Split(text, "\n")
	for i, line := range lines {
		m := regexp.MustCompile(`^\s*- name: ([A-Z][A-Z0-9_]+)$`).FindStringSubmatch(line)
		if m == nil {
			continue
		}
		var body []string
		for _, next := range lines[i+1:] {
			if strings.Contains(next, "- name:") || strings.Contains(next, "{{- else") || strings.Contains(next, "{{- end") {
				break
			}
			body = append(body, strings.TrimSpace(next))
		}
		env[m[1]] = strings.Join(body, "\n")
	}
	return env
}

// TestHelmChart checks what the chart's Deployments, Service, PodDisruptionBudget and HPA must
// say: the readiness probe on /readyz, a grace period that covers the drain delay and the
// shutdown timeout, only variables the api and worker read, secrets from Secrets, and values
// for every value the templates use.
func TestHelmChart(t *testing.T) {
	t.Parallel()
	chart := yamlValues(t, filepath.Join(chartDir, "Chart.yaml"))
	if chart["apiVersion"] != "v2" || chart["name"] != "streamgate" {
		t.Errorf("Chart.yaml: %v", chart)
	}
	values := yamlValues(t, filepath.Join(chartDir, "values.yaml"))
	helpers := readChartFile(t, "templates/_helpers.tpl")
	api := readChartFile(t, "templates/api-deployment.yaml")
	worker := readChartFile(t, "templates/worker-deployment.yaml")
	kinds := map[string]string{
		"api-deployment.yaml": "Deployment", "worker-deployment.yaml": "Deployment", "service.yaml": "Service",
		"pdb.yaml": "PodDisruptionBudget", "hpa.yaml": "HorizontalPodAutoscaler",
	}
	for file, kind := range kinds {
		if !regexp.MustCompile(`(?m)^kind: ` + kind + `$`).MatchString(readChartFile(t, "templates/"+file)) {
			t.Errorf("templates/%s is no %s", file, kind)
		}
	}

	// Probes.
	if !regexp.MustCompile(`readinessProbe:\n\s+httpGet:\n\s+path: /readyz\n\s+port: http\n`).MatchString(api) {
		t.Error("the api has no readiness probe on /readyz")
	}
	if !regexp.MustCompile(`livenessProbe:\n\s+httpGet:\n\s+path: /healthz\n`).MatchString(api) {
		t.Error("the api has no liveness probe on /healthz")
	}

	// Stopping: the values' drain delay and shutdown timeout reach the api, the grace period
	// covers both with a margin, and the readiness probe takes a node out within the drain.
	drain := intValue(t, values, "api.drainDelaySeconds")
	shutdown := intValue(t, values, "api.shutdownTimeoutSeconds")
	grace := intValue(t, values, "api.terminationGracePeriodSeconds")
	preStop := intValue(t, values, "api.preStopSleepSeconds")
	if grace < preStop+drain+shutdown+5 {
		t.Errorf("api grace period %ds < preStop %ds + drain %ds + shutdown %ds + 5s", grace, preStop, drain, shutdown)
	}
	if p, f := intValue(t, values, "api.readinessProbe.periodSeconds"), intValue(t, values, "api.readinessProbe.failureThreshold"); p*f >= drain {
		t.Errorf("readiness takes %ds to fail, not within the %ds drain delay", p*f, drain)
	}
	if w, s := intValue(t, values, "worker.terminationGracePeriodSeconds"), intValue(t, values, "worker.shutdownTimeoutSeconds"); w < s+5 {
		t.Errorf("worker grace period %ds < shutdown %ds + 5s", w, s)
	}
	for _, want := range []string{
		"terminationGracePeriodSeconds: {{ .Values.api.terminationGracePeriodSeconds }}",
		`value: "{{ .Values.api.drainDelaySeconds }}s"`, `value: "{{ .Values.api.shutdownTimeoutSeconds }}s"`,
		"seconds: {{ .Values.api.preStopSleepSeconds }}",
	} {
		if !strings.Contains(api, want) {
			t.Errorf("the api Deployment lacks %s", want)
		}
	}
	// The chart's defaults are the api's.
	defaults := map[string]string{}
	for _, v := range envVars {
		defaults[v.Name] = v.Default
	}
	for name, secs := range map[string]int{"STREAMGATE_DRAIN_DELAY": drain, "STREAMGATE_SHUTDOWN_TIMEOUT": shutdown} {
		d, err := time.ParseDuration(defaults[name])
		if err != nil || d != time.Duration(secs)*time.Second {
			t.Errorf("values.yaml says %ds for %s, the api's default is %q", secs, name, defaults[name])
		}
	}

	// Environment: only variables the programs read, secrets only from Secrets.
	workerVars := workerVariables(t)
	for name, tmpl := range map[string]string{"api": api, "worker": worker} {
		env := containerEnv(tmpl, helpers)
		for v, body := range env {
			if name == "api" && defaults[v] == "" || name == "worker" && !workerVars[v] {
				t.Errorf("the %s Deployment sets %s, which the %s does not read", name, v, name)
			}
			if (v == "STREAMGATE_SECRET_KEY" || v == "STREAMGATE_ADMIN_TOKEN") && !strings.Contains(body, "secretKeyRef:") {
				t.Errorf("the %s Deployment sets %s other than from a Secret:\n%s", name, v, body)
			}
		}
		for _, v := range []string{"REDIS_URL", "REDIS_CLUSTER_ADDRS", "STREAMGATE_SECRET_KEY"} {
			if _, ok := env[v]; !ok {
				t.Errorf("the %s Deployment cannot set %s", name, v)
			}
		}
		if name == "api" {
			for _, v := range []string{"STREAMGATE_ADMIN_TOKEN", "STREAMGATE_NODE_ID", "STREAMGATE_DRAIN_DELAY", "STREAMGATE_SHUTDOWN_TIMEOUT"} {
				if _, ok := env[v]; !ok {
					t.Errorf("the api Deployment does not set %s", v)
				}
			}
		} else if _, ok := env["STREAMGATE_WORKER_METRICS_ADDR"]; !ok {
			t.Error("the worker Deployment serves no metrics")
		}
	}

	// Every value a template uses is in values.yaml.
	files, err := filepath.Glob(filepath.Join(chartDir, "templates", "*"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range regexp.MustCompile(`\.Values\.([A-Za-z0-9_.]+)`).FindAllStringSubmatch(string(raw), -1) {
			if _, ok := values[m[1]]; !ok {
				t.Errorf("%s uses .Values.%s, which values.yaml does not set", filepath.Base(f), m[1])
			}
		}
	}

	// The templates parse as Go templates (helm's syntax), with the functions they use.
	stub := func(...any) any { return nil }
	funcs := template.FuncMap{}
	for _, name := range []string{
		"include", "nindent", "indent", "toYaml", "quote", "default", "trunc", "trimSuffix", "contains",
		"join", "fail", "add", "int", "required", "tpl",
	} {
		funcs[name] = stub
	}
	set := template.New("chart").Funcs(funcs)
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := set.New(filepath.Base(f)).Parse(string(raw)); err != nil {
			t.Errorf("%s: %v", filepath.Base(f), err)
		}
	}

	// The Service, PDB and HPA point at the api Deployment.
	for _, file := range []string{"service.yaml", "pdb.yaml"} {
		if !strings.Contains(readChartFile(t, "templates/"+file), "app.kubernetes.io/component: api") {
			t.Errorf("templates/%s does not select the api pods", file)
		}
	}
	if !strings.Contains(readChartFile(t, "templates/hpa.yaml"), `name: {{ include "streamgate.fullname" . }}-api`) ||
		!strings.Contains(api, `name: {{ include "streamgate.fullname" . }}-api`) {
		t.Error("the HPA does not scale the api Deployment")
	}
}
