package chartcheck

import (
	"errors"
	"net"
	"path"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	"helm.sh/helm/v3/pkg/releaseutil"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

const (
	chartDir = "../streamgate"
	release  = "prod"
	// fullname is what the chart names its objects in release "prod".
	fullname = "prod-streamgate"
)

// manifests is one rendering of the chart, decoded into Kubernetes' own types.
type manifests struct {
	api, worker *appsv1.Deployment
	service     *corev1.Service
	pdb         *policyv1.PodDisruptionBudget
	hpa         *autoscalingv2.HorizontalPodAutoscaler
	notes       string
}

func loadChart(t testing.TB) *chart.Chart {
	t.Helper()
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

// renderChart renders the chart as `helm install prod deploy/helm/streamgate -f values` would,
// with values given as the YAML of a values file. A template that uses a value values.yaml
// does not set is an error.
func renderChart(t testing.TB, values string) (map[string]string, error) {
	t.Helper()
	ch := loadChart(t)
	user, err := chartutil.ReadValues([]byte(values))
	if err != nil {
		t.Fatal(err)
	}
	vals, err := chartutil.ToRenderValues(ch, user,
		chartutil.ReleaseOptions{Name: release, Namespace: "streaming", Revision: 1, IsInstall: true},
		chartutil.DefaultCapabilities)
	if err != nil {
		t.Fatal(err)
	}
	return engine.Engine{Strict: true}.Render(ch, vals)
}

// render renders the chart and decodes every manifest strictly: a field Kubernetes does not
// know (a typo, a wrong indent) fails, as do a kind or a name the chart should not make.
func render(t testing.TB, values string) manifests {
	t.Helper()
	files, err := renderChart(t, values)
	if err != nil {
		t.Fatalf("the chart does not render: %v", err)
	}
	var m manifests
	for name, text := range files {
		if path.Base(name) == "NOTES.txt" {
			m.notes = text
			continue
		}
		for _, doc := range releaseutil.SplitManifests(text) {
			if strings.TrimSpace(doc) == "" {
				continue
			}
			var head metav1.TypeMeta
			if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
				t.Fatalf("%s: %v\n%s", name, err, doc)
			}
			var obj any
			switch head.APIVersion + " " + head.Kind {
			case "apps/v1 Deployment":
				obj = &appsv1.Deployment{}
			case "v1 Service":
				obj = &corev1.Service{}
			case "policy/v1 PodDisruptionBudget":
				obj = &policyv1.PodDisruptionBudget{}
			case "autoscaling/v2 HorizontalPodAutoscaler":
				obj = &autoscalingv2.HorizontalPodAutoscaler{}
			default:
				t.Fatalf("%s renders an unexpected %s %s", name, head.APIVersion, head.Kind)
			}
			// As the API server decodes it: field names match case-sensitively.
			j, err := yaml.YAMLToJSONStrict([]byte(doc))
			if err != nil {
				t.Fatalf("%s: %v\n%s", name, err, doc)
			}
			strict, err := kjson.UnmarshalStrict(j, obj, kjson.DisallowDuplicateFields, kjson.DisallowUnknownFields)
			if err == nil {
				err = errors.Join(strict...)
			}
			if err != nil {
				t.Fatalf("%s is no valid %s: %v\n%s", name, head.Kind, err, doc)
			}
			dup := func() { t.Fatalf("%s renders a second %s", name, head.Kind) }
			switch o := obj.(type) {
			case *appsv1.Deployment:
				switch o.Name {
				case fullname + "-api":
					if m.api != nil {
						dup()
					}
					m.api = o
				case fullname + "-worker":
					if m.worker != nil {
						dup()
					}
					m.worker = o
				default:
					t.Fatalf("%s renders a Deployment named %q", name, o.Name)
				}
			case *corev1.Service:
				if m.service != nil {
					dup()
				}
				m.service = o
			case *policyv1.PodDisruptionBudget:
				if m.pdb != nil {
					dup()
				}
				m.pdb = o
			case *autoscalingv2.HorizontalPodAutoscaler:
				if m.hpa != nil {
					dup()
				}
				m.hpa = o
			}
		}
	}
	if m.api == nil || m.worker == nil || m.service == nil {
		t.Fatalf("the chart renders no api Deployment, worker Deployment or Service: %v", keys(files))
	}
	return m
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// container returns the Deployment's one container, which must have the given name.
func container(t testing.TB, d *appsv1.Deployment, name string) corev1.Container {
	t.Helper()
	cs := d.Spec.Template.Spec.Containers
	if len(cs) != 1 || cs[0].Name != name {
		t.Fatalf("Deployment %s has containers %v, want one named %s", d.Name, cs, name)
	}
	return cs[0]
}

// envOf returns the container's variables by name; a variable set twice is an error.
func envOf(t testing.TB, c corev1.Container) map[string]corev1.EnvVar {
	t.Helper()
	env := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		if _, ok := env[e.Name]; ok {
			t.Errorf("container %s sets %s twice", c.Name, e.Name)
		}
		env[e.Name] = e
	}
	return env
}

// literal returns a variable's literal value, failing when it is unset or comes from elsewhere.
func literal(t testing.TB, env map[string]corev1.EnvVar, name string) string {
	t.Helper()
	e, ok := env[name]
	if !ok {
		t.Fatalf("%s is not set", name)
	}
	if e.ValueFrom != nil {
		t.Fatalf("%s comes from %v, not a value", name, e.ValueFrom)
	}
	return e.Value
}

func seconds(t testing.TB, env map[string]corev1.EnvVar, name string) int64 {
	t.Helper()
	d, err := time.ParseDuration(literal(t, env, name))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return int64(d / time.Second)
}

// selects reports whether a selector's labels are all among a pod's.
func selects(selector, pod map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if pod[k] != v {
			return false
		}
	}
	return true
}

func port(t testing.TB, c corev1.Container, name string) int32 {
	t.Helper()
	for _, p := range c.Ports {
		if p.Name == name {
			return p.ContainerPort
		}
	}
	t.Fatalf("container %s has no port named %q: %v", c.Name, name, c.Ports)
	return 0
}

// addrPort returns the port of a listen address such as ":8080".
func addrPort(t testing.TB, addr string) int32 {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	return int32(n)
}

// checkSecrets fails when a secret is set other than from a Secret.
func checkSecrets(t testing.TB, who string, env map[string]corev1.EnvVar, names ...string) {
	t.Helper()
	for _, name := range names {
		e, ok := env[name]
		switch {
		case !ok:
			t.Errorf("the %s gets no %s", who, name)
		case e.Value != "" || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil:
			t.Errorf("the %s gets %s other than from a Secret: %+v", who, name, e)
		case e.ValueFrom.SecretKeyRef.Name == "" || e.ValueFrom.SecretKeyRef.Key == "":
			t.Errorf("the %s gets %s from no named Secret key: %+v", who, name, e.ValueFrom.SecretKeyRef)
		}
	}
}

// checkReads fails for every variable the container sets that the program does not read.
func checkReads(t testing.TB, who string, env map[string]corev1.EnvVar, reads func(string) bool) {
	t.Helper()
	for _, name := range keys(env) {
		if !reads(name) {
			t.Errorf("the %s Deployment sets %s, which the %s does not read", who, name, who)
		}
	}
}

// checkPod checks what both Deployments must say: a selector that matches their own pods, the
// image, and the distroless image's non-root user.
func checkPod(t testing.TB, d *appsv1.Deployment, image string) {
	t.Helper()
	if d.Spec.Selector == nil || !selects(d.Spec.Selector.MatchLabels, d.Spec.Template.Labels) {
		t.Errorf("Deployment %s's selector %v does not match its pods' labels %v", d.Name, d.Spec.Selector, d.Spec.Template.Labels)
	}
	spec := d.Spec.Template.Spec
	if c := spec.Containers[0]; c.Image != image {
		t.Errorf("Deployment %s runs image %q, want %q", d.Name, c.Image, image)
	}
	if sc := spec.SecurityContext; sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser != 65532 {
		t.Errorf("Deployment %s does not run as the image's non-root user: %+v", d.Name, sc)
	}
	if sc := spec.Containers[0].SecurityContext; sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Errorf("Deployment %s's container has a writable root file system", d.Name)
	}
}

// checkScrape checks that the Prometheus annotations of a pod point at a port it listens on.
func checkScrape(t testing.TB, d *appsv1.Deployment, listen int32) {
	t.Helper()
	a := d.Spec.Template.Annotations
	if a["prometheus.io/scrape"] != "true" || a["prometheus.io/path"] != "/metrics" || a["prometheus.io/port"] != strconv.Itoa(int(listen)) {
		t.Errorf("Deployment %s's scrape annotations %v do not point at /metrics on port %d", d.Name, a, listen)
	}
}

const redisURL = "redis://redis-master.streaming:6379/0"

// TestChartNeedsRedis: without a Redis the api would run in dev mode, with nothing kept; the
// chart refuses to render and says which values to set.
func TestChartNeedsRedis(t *testing.T) {
	t.Parallel()
	_, err := renderChart(t, "")
	if err == nil || !strings.Contains(err.Error(), "set redis.url, redis.urlSecret.name or redis.clusterAddrs") {
		t.Fatalf("the chart renders without Redis: %v", err)
	}
}

// TestChartDefaults renders the chart as docs/operations.md installs it (only redis.url set).
func TestChartDefaults(t *testing.T) {
	t.Parallel()
	m := render(t, "redis: {url: "+redisURL+"}\n")
	apiVars, workerVars := apiVariables(t), workerVariables(t)
	routes := apiRoutes(t)
	ch := loadChart(t)
	image := "streamgate:" + ch.Metadata.AppVersion

	// The api: probes on the routes it serves, on the port it listens on.
	api := container(t, m.api, "api")
	env := envOf(t, api)
	checkPod(t, m.api, image)
	httpPort := port(t, api, "http")
	if got := addrPort(t, literal(t, env, "STREAMGATE_ADDR")); got != httpPort {
		t.Errorf("the api listens on %d, its container port is %d", got, httpPort)
	}
	checkScrape(t, m.api, httpPort)
	if !routes["/metrics"] {
		t.Error("the api serves no /metrics")
	}
	for _, p := range []struct {
		kind  string
		probe *corev1.Probe
		path  string
	}{{"readiness", api.ReadinessProbe, "/readyz"}, {"liveness", api.LivenessProbe, "/healthz"}} {
		switch {
		case p.probe == nil || p.probe.HTTPGet == nil:
			t.Errorf("the api has no HTTP %s probe", p.kind)
		case p.probe.HTTPGet.Path != p.path || !routes[p.probe.HTTPGet.Path]:
			t.Errorf("the api's %s probe asks %s, want %s (routes: %v)", p.kind, p.probe.HTTPGet.Path, p.path, keys(routes))
		case p.probe.HTTPGet.Port.String() != "http":
			t.Errorf("the api's %s probe asks port %s, not the http port", p.kind, p.probe.HTTPGet.Port.String())
		}
	}

	// Stopping: the readiness probe takes a stopping node out of the Service within the drain
	// delay, and the grace period covers the preStop sleep, the drain and the shutdown.
	drain, shutdown := seconds(t, env, "STREAMGATE_DRAIN_DELAY"), seconds(t, env, "STREAMGATE_SHUTDOWN_TIMEOUT")
	if r := api.ReadinessProbe; r != nil && int64(r.PeriodSeconds*r.FailureThreshold) >= drain {
		t.Errorf("readiness fails after %ds, not within the %ds drain delay", r.PeriodSeconds*r.FailureThreshold, drain)
	}
	var preStop int64
	if api.Lifecycle != nil && api.Lifecycle.PreStop != nil && api.Lifecycle.PreStop.Sleep != nil {
		preStop = api.Lifecycle.PreStop.Sleep.Seconds
	}
	if g := m.api.Spec.Template.Spec.TerminationGracePeriodSeconds; g == nil || *g < preStop+drain+shutdown+5 {
		t.Errorf("the api's grace period %v is under preStop %ds + drain %ds + shutdown %ds + 5s", g, preStop, drain, shutdown)
	}
	// The chart's defaults are the api's own.
	for _, name := range []string{"STREAMGATE_DRAIN_DELAY", "STREAMGATE_SHUTDOWN_TIMEOUT", "STREAMGATE_SIGNUP", "STREAMGATE_LOG_LEVEL", "STREAMGATE_METRICS_TENANTS"} {
		if got := literal(t, env, name); got != apiVars[name] {
			t.Errorf("the chart sets %s=%s, the api's default is %s", name, got, apiVars[name])
		}
	}

	// The api's variables: ones it reads, secrets from Secrets, a node id per pod.
	checkReads(t, "api", env, func(name string) bool { _, ok := apiVars[name]; return ok })
	checkSecrets(t, "api", env, "STREAMGATE_SECRET_KEY", "STREAMGATE_ADMIN_TOKEN")
	if got := literal(t, env, "REDIS_URL"); got != redisURL {
		t.Errorf("the api gets REDIS_URL=%s, want %s", got, redisURL)
	}
	if _, ok := env["REDIS_CLUSTER_ADDRS"]; ok {
		t.Error("the api gets REDIS_CLUSTER_ADDRS with no cluster configured")
	}
	if e := env["STREAMGATE_NODE_ID"]; e.ValueFrom == nil || e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != "metadata.name" {
		t.Errorf("STREAMGATE_NODE_ID is not the pod's name: %+v", e)
	}
	if _, ok := env["STREAMGATE_TRUSTED_PROXIES"]; ok {
		t.Error("the api trusts proxies nobody named")
	}
	// A rolling update never takes a node away before its successor is ready.
	if ru := m.api.Spec.Strategy.RollingUpdate; ru == nil || ru.MaxUnavailable == nil || ru.MaxUnavailable.IntValue() != 0 {
		t.Errorf("the api's rolling update may take nodes down first: %+v", ru)
	}

	// The worker.
	worker := container(t, m.worker, "worker")
	wenv := envOf(t, worker)
	checkPod(t, m.worker, image)
	if len(worker.Command) != 1 || !imageCommands(t)[worker.Command[0]] || path.Base(worker.Command[0]) != "worker" {
		t.Errorf("the worker runs %v, not the image's worker (the image has %v)", worker.Command, keys(imageCommands(t)))
	}
	checkReads(t, "worker", wenv, func(name string) bool { return workerVars[name] })
	checkSecrets(t, "worker", wenv, "STREAMGATE_SECRET_KEY")
	if got := literal(t, wenv, "REDIS_URL"); got != redisURL {
		t.Errorf("the worker gets REDIS_URL=%s, want %s", got, redisURL)
	}
	metricsPort := port(t, worker, "metrics")
	if got := addrPort(t, literal(t, wenv, "STREAMGATE_WORKER_METRICS_ADDR")); got != metricsPort {
		t.Errorf("the worker serves metrics on %d, its container port is %d", got, metricsPort)
	}
	checkScrape(t, m.worker, metricsPort)
	workerRoutes := workerRoutes(t)
	if !workerRoutes["/metrics"] {
		t.Errorf("the worker serves no /metrics: %v", keys(workerRoutes))
	}
	switch p := worker.LivenessProbe; {
	case p == nil || p.HTTPGet == nil:
		t.Error("the worker has no HTTP liveness probe")
	case p.HTTPGet.Path != "/healthz" || !workerRoutes[p.HTTPGet.Path] || p.HTTPGet.Port.String() != "metrics":
		t.Errorf("the worker's liveness probe asks %s on port %s, want /healthz on its metrics port (routes: %v)", p.HTTPGet.Path, p.HTTPGet.Port.String(), keys(workerRoutes))
	}
	if w, s := m.worker.Spec.Template.Spec.TerminationGracePeriodSeconds, seconds(t, wenv, "STREAMGATE_SHUTDOWN_TIMEOUT"); w == nil || *w < s+5 {
		t.Errorf("the worker's grace period %v is under its shutdown timeout %ds + 5s", w, s)
	}
	if r := m.worker.Spec.Replicas; r == nil || *r != 2 {
		t.Errorf("the worker runs %v replicas, want values.yaml's 2", r)
	}
	// The api and the worker share one Redis and one secret key.
	for _, name := range []string{"REDIS_URL", "STREAMGATE_SECRET_KEY"} {
		if !reflect.DeepEqual(env[name], wenv[name]) {
			t.Errorf("the api and the worker get different %s: %+v and %+v", name, env[name], wenv[name])
		}
	}

	// The Service, the PodDisruptionBudget and the HPA are the api's, and only the api's.
	apiPods, workerPods := m.api.Spec.Template.Labels, m.worker.Spec.Template.Labels
	if selects(m.api.Spec.Selector.MatchLabels, workerPods) || selects(m.worker.Spec.Selector.MatchLabels, apiPods) {
		t.Error("the api's and the worker's Deployments select each other's pods")
	}
	svc := m.service
	if svc.Name != fullname || svc.Spec.Type != corev1.ServiceTypeClusterIP {
		t.Errorf("Service %s of type %s, want %s of type ClusterIP", svc.Name, svc.Spec.Type, fullname)
	}
	// The api Deployment's selector names the release and the component: a Service or a budget
	// that selects less would take in other releases' pods.
	apiSelector := m.api.Spec.Selector.MatchLabels
	if !selects(svc.Spec.Selector, apiPods) || selects(svc.Spec.Selector, workerPods) || !selects(apiSelector, svc.Spec.Selector) {
		t.Errorf("the Service selects %v; api pods are %v (selected by %v), worker pods %v", svc.Spec.Selector, apiPods, apiSelector, workerPods)
	}
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != 80 || svc.Spec.Ports[0].TargetPort.String() != "http" {
		t.Errorf("the Service's ports are %+v, want 80 to the api's http port", svc.Spec.Ports)
	}
	if m.pdb == nil {
		t.Fatal("no PodDisruptionBudget")
	}
	if sel := m.pdb.Spec.Selector; sel == nil || len(sel.MatchExpressions) > 0 || !selects(sel.MatchLabels, apiPods) || selects(sel.MatchLabels, workerPods) || !selects(apiSelector, sel.MatchLabels) {
		t.Errorf("the PodDisruptionBudget selects %v; api pods are %v (selected by %v), worker pods %v", sel, apiPods, apiSelector, workerPods)
	}
	if m.hpa == nil {
		t.Fatal("no HorizontalPodAutoscaler")
	}
	checkHPA(t, m)
	if m.api.Spec.Replicas != nil {
		t.Errorf("the api Deployment sets %d replicas, which the HPA owns", *m.api.Spec.Replicas)
	}
	var pods []string
	for _, metric := range m.hpa.Spec.Metrics {
		if metric.Type == autoscalingv2.PodsMetricSourceType {
			pods = append(pods, metric.Pods.Metric.Name)
		}
	}
	if len(pods) > 0 {
		t.Errorf("the HPA scales on %v by default, which needs a custom metrics adapter", pods)
	}

	if !strings.Contains(m.notes, fullname) || !strings.Contains(m.notes, "port 80") {
		t.Errorf("NOTES.txt does not name the Service:\n%s", m.notes)
	}
}

// checkHPA checks that the HPA scales the api Deployment within bounds the PDB can live with,
// and that a CPU target has CPU requests to measure against.
func checkHPA(t testing.TB, m manifests) {
	t.Helper()
	h := m.hpa.Spec
	if ref := h.ScaleTargetRef; ref.APIVersion != "apps/v1" || ref.Kind != "Deployment" || ref.Name != m.api.Name {
		t.Errorf("the HPA scales %+v, not the api Deployment %s", ref, m.api.Name)
	}
	if h.MinReplicas == nil || *h.MinReplicas < 1 || h.MaxReplicas < *h.MinReplicas {
		t.Errorf("the HPA scales between %v and %d replicas", h.MinReplicas, h.MaxReplicas)
	}
	if m.pdb != nil && m.pdb.Spec.MinAvailable != nil && h.MinReplicas != nil && m.pdb.Spec.MinAvailable.IntValue() >= int(*h.MinReplicas) {
		t.Errorf("the PodDisruptionBudget keeps %s of at least %d api pods available: no node could ever be drained", m.pdb.Spec.MinAvailable.String(), *h.MinReplicas)
	}
	for _, metric := range h.Metrics {
		if metric.Type == autoscalingv2.ResourceMetricSourceType && metric.Resource.Name == corev1.ResourceCPU {
			if _, ok := m.api.Spec.Template.Spec.Containers[0].Resources.Requests[corev1.ResourceCPU]; !ok {
				t.Error("the HPA scales on CPU utilization, but the api requests no CPU")
			}
		}
	}
}

// TestChartRedisClusterAndReplicas renders the values of a Redis Cluster deployment with fixed
// replica counts: both programs get the cluster's seeds (which win over a URL), the api runs
// the replicas asked for and no HPA is made.
func TestChartRedisClusterAndReplicas(t *testing.T) {
	t.Parallel()
	m := render(t, `
redis:
  url: redis://ignored:6379/0
  clusterAddrs: [redis-cluster-0.redis:6379, redis-cluster-1.redis:6379, redis-cluster-2.redis:6379]
api:
  replicas: 4
  trustedProxies: 10.0.0.0/8
  extraEnv: [{name: STREAMGATE_SESSION_BUFFER, value: "512"}]
worker:
  replicas: 3
autoscaling:
  enabled: false
pdb:
  minAvailable: 3
`)
	const seeds = "redis-cluster-0.redis:6379,redis-cluster-1.redis:6379,redis-cluster-2.redis:6379"
	apiVars, workerVars := apiVariables(t), workerVariables(t)
	for _, d := range []*appsv1.Deployment{m.api, m.worker} {
		env := envOf(t, d.Spec.Template.Spec.Containers[0])
		if got := literal(t, env, "REDIS_CLUSTER_ADDRS"); got != seeds {
			t.Errorf("%s gets REDIS_CLUSTER_ADDRS=%q, want %q", d.Name, got, seeds)
		}
		if _, ok := env["REDIS_URL"]; ok {
			t.Errorf("%s gets REDIS_URL beside the cluster's seeds", d.Name)
		}
	}
	env := envOf(t, container(t, m.api, "api"))
	checkReads(t, "api", env, func(name string) bool { _, ok := apiVars[name]; return ok })
	checkReads(t, "worker", envOf(t, container(t, m.worker, "worker")), func(name string) bool { return workerVars[name] })
	if got := literal(t, env, "STREAMGATE_TRUSTED_PROXIES"); got != "10.0.0.0/8" {
		t.Errorf("STREAMGATE_TRUSTED_PROXIES=%q, want 10.0.0.0/8", got)
	}
	if got := literal(t, env, "STREAMGATE_SESSION_BUFFER"); got != "512" {
		t.Errorf("api.extraEnv: STREAMGATE_SESSION_BUFFER=%q, want 512", got)
	}
	if r := m.api.Spec.Replicas; r == nil || *r != 4 {
		t.Errorf("the api runs %v replicas, want 4", r)
	}
	if r := m.worker.Spec.Replicas; r == nil || *r != 3 {
		t.Errorf("the worker runs %v replicas, want 3", r)
	}
	if m.hpa != nil {
		t.Error("an HPA is made with autoscaling off")
	}
	if m.pdb == nil || m.pdb.Spec.MinAvailable == nil || m.pdb.Spec.MinAvailable.IntValue() != 3 {
		t.Errorf("the PodDisruptionBudget is %+v, want minAvailable 3", m.pdb)
	}
}

// TestChartRedisURLFromSecret: a Redis URL holding a password comes from a Secret.
func TestChartRedisURLFromSecret(t *testing.T) {
	t.Parallel()
	m := render(t, "redis: {urlSecret: {name: redis-auth, key: url}}\n")
	for _, d := range []*appsv1.Deployment{m.api, m.worker} {
		env := envOf(t, d.Spec.Template.Spec.Containers[0])
		checkSecrets(t, d.Name, env, "REDIS_URL")
		if ref := env["REDIS_URL"].ValueFrom; ref != nil && ref.SecretKeyRef != nil && (ref.SecretKeyRef.Name != "redis-auth" || ref.SecretKeyRef.Key != "url") {
			t.Errorf("%s gets REDIS_URL from %+v, want Secret redis-auth key url", d.Name, ref.SecretKeyRef)
		}
	}
}

// TestChartScalesOnConnections: with a connections target the HPA also scales the api on the
// average of its open streams per pod, a metric the api exports.
func TestChartScalesOnConnections(t *testing.T) {
	t.Parallel()
	m := render(t, `
redis: {url: `+redisURL+`}
autoscaling: {enabled: true, minReplicas: 3, maxReplicas: 20, connectionsTarget: 5000}
api: {preStopSleepSeconds: 5, terminationGracePeriodSeconds: 40}
`)
	if m.hpa == nil {
		t.Fatal("no HorizontalPodAutoscaler")
	}
	checkHPA(t, m)
	if *m.hpa.Spec.MinReplicas != 3 || m.hpa.Spec.MaxReplicas != 20 {
		t.Errorf("the HPA scales between %d and %d replicas, want 3 and 20", *m.hpa.Spec.MinReplicas, m.hpa.Spec.MaxReplicas)
	}
	gauges := exportedGauges(t)
	var found bool
	for _, metric := range m.hpa.Spec.Metrics {
		if metric.Type != autoscalingv2.PodsMetricSourceType {
			continue
		}
		found = true
		p := metric.Pods
		if !gauges[p.Metric.Name] {
			t.Errorf("the HPA scales on %s, which is none of the api's gauges %v", p.Metric.Name, keys(gauges))
		}
		if p.Metric.Name != "streamgate_node_connections" {
			t.Errorf("the HPA scales on %s, not the node's open streams", p.Metric.Name)
		}
		if p.Target.Type != autoscalingv2.AverageValueMetricType || p.Target.AverageValue == nil || p.Target.AverageValue.Value() != 5000 {
			t.Errorf("the HPA's connections target is %+v, want an average of 5000 per pod", p.Target)
		}
	}
	if !found {
		t.Error("the HPA does not scale on connections")
	}
	api := container(t, m.api, "api")
	if l := api.Lifecycle; l == nil || l.PreStop == nil || l.PreStop.Sleep == nil || l.PreStop.Sleep.Seconds != 5 {
		t.Errorf("the api has no 5s preStop sleep: %+v", l)
	}
}

// TestChartRefusesShortGracePeriods: a grace period that cannot cover the drain and the
// shutdown would cut streams and held work; the chart says so rather than render it.
func TestChartRefusesShortGracePeriods(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ values, want string }{
		{"api: {terminationGracePeriodSeconds: 15}", "api.terminationGracePeriodSeconds (15) must exceed"},
		{"api: {preStopSleepSeconds: 20}", "api.terminationGracePeriodSeconds (30) must exceed"},
		{"worker: {terminationGracePeriodSeconds: 10}", "worker.terminationGracePeriodSeconds must exceed"},
		// A budget no drain can meet.
		{"autoscaling: {minReplicas: 2}\npdb: {minAvailable: 2}", "pdb.minAvailable (2) must be under the api's 2 replicas"},
		{"autoscaling: {enabled: false}\napi: {replicas: 1}", "pdb.minAvailable (1) must be under the api's 1 replicas"},
	} {
		_, err := renderChart(t, "redis: {url: "+redisURL+"}\n"+c.values+"\n")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want an error saying %q", c.values, err, c.want)
		}
	}
}

// TestChartLint runs helm's own lint rules (Chart.yaml, values, templates rendered and checked
// as Kubernetes objects, deprecated APIs) with the values of an install.
func TestChartLint(t *testing.T) {
	t.Parallel()
	for _, values := range []map[string]any{
		{"redis": map[string]any{"url": redisURL}},
		{"redis": map[string]any{"clusterAddrs": []any{"redis-0:6379"}}, "autoscaling": map[string]any{"connectionsTarget": 100}},
	} {
		linter := lint.All(chartDir, values, "streaming", false)
		for _, msg := range linter.Messages {
			if msg.Severity >= support.WarningSev {
				t.Errorf("helm lint: %s", msg)
			} else {
				t.Logf("helm lint: %s", msg)
			}
		}
	}
}
