package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/streamgate/streamgate/internal/redistest"
)

// composeRedisArgs reads the redis service's command from docker-compose.yml, so that the test
// below runs Redis exactly as the compose file does.
func composeRedisArgs(t *testing.T) []string {
	t.Helper()
	raw, err := os.ReadFile("../../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s+command: (\["redis-server".*\])$`).FindSubmatch(raw)
	if m == nil {
		t.Fatal("docker-compose.yml: no redis-server command found")
	}
	var args []string
	if err := json.Unmarshal(m[1], &args); err != nil {
		t.Fatalf("docker-compose.yml redis command %s: %v", m[1], err)
	}
	return args[1:]
}

// TestComposeConfigurationAsProcesses runs what docker-compose.yml runs — Redis with its
// settings, two api nodes and a worker — as processes on loopback, since no container engine is
// at hand, and sends a publish → stream round trip and a job through both nodes.
func TestComposeConfigurationAsProcesses(t *testing.T) {
	t.Parallel()
	args := composeRedisArgs(t)
	if !strings.Contains(strings.Join(args, " "), "--appendonly yes") {
		t.Fatalf("compose Redis runs without AOF: %v", args)
	}
	raw, err := os.ReadFile("../../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	trusted := regexp.MustCompile(`STREAMGATE_TRUSTED_PROXIES: (\S+)`).FindSubmatch(raw)
	if trusted == nil {
		t.Fatal("docker-compose.yml: no STREAMGATE_TRUSTED_PROXIES")
	}
	rs := redistest.Start(t, args...)
	env := func(id string) map[string]string {
		return map[string]string{"STREAMGATE_NODE_ID": id, "STREAMGATE_SIGNUP": "open", "STREAMGATE_TRUSTED_PROXIES": string(trusted[1])}
	}
	api1 := startProcessNode(t, rs, env("api-1"))
	api2 := startProcessNode(t, rs, env("api-2"))
	startWorker(t, rs, "worker-1", "STREAMGATE_WORKER_CLAIM_IDLE=30s")

	// The containers' health check is the binary itself.
	for _, n := range []*processNode{api1, api2} {
		if out, err := exec.Command(apiBinary(t), "-healthcheck", n.URL+"/readyz").CombinedOutput(); err != nil {
			t.Fatalf("api -healthcheck %s: %v %s", n.URL, err, out)
		}
	}

	acct := api1.signup(t, "Acme")
	tok := api2.token(t, acct, "user-1", []string{"*"}, 0)
	s1 := api1.openStream(t, tok, "orders", "job:ship-1")
	s2 := api2.openStream(t, tok, "orders")
	api2.publish(t, acct, "orders", 1)
	api1.publish(t, acct, "orders", 2)
	for _, s := range []*subscriber{s1, s2} {
		for want := 1; want <= 2; want++ {
			if got := dataInt(t, decodeMessage(t, s.next(5*time.Second)).Data); got != want {
				t.Fatalf("got %d, want %d", got, want)
			}
		}
	}
	api2.putJob(t, acct, "ship-1", map[string]any{"status": "succeeded", "progress": 100})
	if st := jobEvent(t, s1.next(10*time.Second)); st.Status != "succeeded" {
		t.Fatalf("job %+v", st)
	}
}

// TestComposeLoadBalancer checks that docker-compose.yml is usable on one port as written: a
// balancer publishes 8080 with the HAProxy configuration under deploy/, sends to every api
// service of the compose file on its listening port, takes a node out on its /readyz within the
// drain delay, keeps idle streams open past the heartbeat, and is the proxy the nodes trust.
func TestComposeLoadBalancer(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("../../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	compose := string(raw)
	lb := regexp.MustCompile(`(?ms)^  lb:\n(.*?)\n\n`).FindStringSubmatch(compose)
	if lb == nil {
		t.Fatal("docker-compose.yml: no lb service")
	}
	if !strings.Contains(lb[1], `ports: ["8080:8080"]`) {
		t.Errorf("the lb service does not publish 8080:\n%s", lb[1])
	}
	mount := regexp.MustCompile(`- \./(deploy/\S+):/usr/local/etc/haproxy/haproxy\.cfg:ro`).FindStringSubmatch(lb[1])
	if mount == nil {
		t.Fatalf("the lb service mounts no HAProxy configuration:\n%s", lb[1])
	}
	cfgRaw, err := os.ReadFile("../../" + mount[1])
	if err != nil {
		t.Fatal(err)
	}
	cfg := string(cfgRaw)
	if !regexp.MustCompile(`(?m)^\s+bind :8080$`).MatchString(cfg) {
		t.Errorf("%s does not listen on :8080", mount[1])
	}

	// Every api service (the ones built from the x-api anchor) is a server of the backend.
	apis := regexp.MustCompile(`(?m)^  (\S+):\n    <<: \*api$`).FindAllStringSubmatch(compose, -1)
	if len(apis) < 2 {
		t.Fatalf("docker-compose.yml: %d api services, want 2 or more", len(apis))
	}
	port := regexp.MustCompile(`STREAMGATE_ADDR: ":(\d+)"`).FindStringSubmatch(compose)
	if port == nil {
		t.Fatal("docker-compose.yml: no STREAMGATE_ADDR")
	}
	for _, api := range apis {
		server := regexp.MustCompile(`(?m)^\s+server ` + api[1] + ` ` + api[1] + `:` + port[1] + ` check inter (\d+)s fall (\d+)`).FindStringSubmatch(cfg)
		if server == nil {
			t.Errorf("%s: no health-checked server for the api service %s on :%s", mount[1], api[1], port[1])
			continue
		}
		// Out of the rotation within STREAMGATE_DRAIN_DELAY (5 s): interval × failures.
		inter, _ := strconv.Atoi(server[1])
		fall, _ := strconv.Atoi(server[2])
		if inter*fall >= 5 {
			t.Errorf("%s: %s leaves the rotation after %ds, not within the 5 s drain delay", mount[1], api[1], inter*fall)
		}
	}
	for _, want := range []string{
		"option httpchk", "http-check send meth GET uri /readyz ver HTTP/1.1",
		"http-check expect status 200", "option forwardfor", "mode http",
	} {
		if !strings.Contains(cfg, want) {
			t.Errorf("%s lacks %q", mount[1], want)
		}
	}
	// Idle streams get a heartbeat every 15 s: every idle timeout must outlast it.
	for _, name := range []string{"client", "server", "tunnel"} {
		m := regexp.MustCompile(`(?m)^\s+timeout ` + name + ` (\d+)([smh])$`).FindStringSubmatch(cfg)
		if m == nil {
			t.Errorf("%s: no timeout %s", mount[1], name)
			continue
		}
		d, _ := time.ParseDuration(m[1] + m[2])
		if d < time.Minute {
			t.Errorf("%s: timeout %s %s cuts idle streams", mount[1], name, d)
		}
	}
	if !regexp.MustCompile(`(?m)^\s+http-request deny .*if \{ path /metrics \}$`).MatchString(cfg) {
		t.Errorf("%s serves /metrics publicly", mount[1])
	}

	// The example Prometheus configuration scrapes every api service and the worker where they
	// serve metrics.
	prom, err := os.ReadFile("../../deploy/prometheus/prometheus.yml")
	if err != nil {
		t.Fatal(err)
	}
	for _, api := range apis {
		if !strings.Contains(string(prom), `"`+api[1]+`:`+port[1]+`"`) {
			t.Errorf("deploy/prometheus/prometheus.yml does not scrape %s:%s", api[1], port[1])
		}
	}
	workerMetrics := regexp.MustCompile(`STREAMGATE_WORKER_METRICS_ADDR: ":(\d+)"`).FindStringSubmatch(compose)
	if workerMetrics == nil || !strings.Contains(string(prom), `"worker:`+workerMetrics[1]+`"`) {
		t.Errorf("deploy/prometheus/prometheus.yml does not scrape the worker's metrics (%v)", workerMetrics)
	}

	// The nodes believe the balancer's X-Forwarded-For, and only its.
	lbAddr := regexp.MustCompile(`ipv4_address: (\S+)`).FindStringSubmatch(lb[1])
	trusted := regexp.MustCompile(`STREAMGATE_TRUSTED_PROXIES: (\S+)`).FindStringSubmatch(compose)
	if lbAddr == nil || trusted == nil || lbAddr[1] != trusted[1] {
		t.Errorf("the api nodes trust %v, the balancer is at %v", trusted, lbAddr)
	}
}
