package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"regexp"
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
	rs := redistest.Start(t, args...)
	api1 := startProcessNode(t, rs, map[string]string{"STREAMGATE_NODE_ID": "api-1", "STREAMGATE_SIGNUP": "open"})
	api2 := startProcessNode(t, rs, map[string]string{"STREAMGATE_NODE_ID": "api-2", "STREAMGATE_SIGNUP": "open"})
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
