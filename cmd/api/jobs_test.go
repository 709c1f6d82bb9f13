package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamgate/streamgate/internal/keys"
	"github.com/streamgate/streamgate/internal/redistest"
	"github.com/streamgate/streamgate/internal/sseclient"
)

var (
	workerOnce sync.Once
	workerBin  string
	workerErr  error
)

// workerBinary builds cmd/worker once per test run.
func workerBinary(t testing.TB) string {
	t.Helper()
	workerOnce.Do(func() {
		dir, err := os.MkdirTemp("", "streamgate-worker-")
		if err != nil {
			workerErr = err
			return
		}
		workerBin = filepath.Join(dir, "worker")
		out, err := exec.Command("go", "build", "-o", workerBin, "../worker").CombinedOutput()
		if err != nil {
			workerErr, workerBin = err, string(out)
		}
	})
	if workerErr != nil {
		t.Fatalf("build worker: %v\n%s", workerErr, workerBin)
	}
	return workerBin
}

// workerProc is a cmd/worker process.
type workerProc struct {
	cmd  *exec.Cmd
	name string
	logs *logSink
	done chan error
}

func startWorker(t testing.TB, rs *redistest.Server, name string, env ...string) *workerProc {
	t.Helper()
	cmd := exec.Command(workerBinary(t))
	cmd.Env = append(os.Environ(), "REDIS_URL="+rs.URL(), "STREAMGATE_WORKER_NAME="+name, "STREAMGATE_LOG_LEVEL=debug")
	cmd.Env = append(cmd.Env, env...)
	w := &workerProc{cmd: cmd, name: name, logs: newLogSink(), done: make(chan error, 1)}
	cmd.Stderr = w.logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { w.done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		select {
		case <-w.done:
		case <-time.After(5 * time.Second):
		}
	})
	waitFor(t, 10*time.Second, "worker "+name+" to start consuming", func() bool {
		return strings.Contains(w.logs.String(), "consuming updates")
	})
	return w
}

func (n *node) putJob(t testing.TB, a account, id string, body any) {
	t.Helper()
	n.do(t, call{method: "PUT", path: "/v1/jobs/" + id, auth: a.APIKey, body: body}).want(t, 202)
}

type jobState struct {
	JobID     string          `json:"job_id"`
	Status    string          `json:"status"`
	Progress  *float64        `json:"progress"`
	Message   *string         `json:"message"`
	Output    json.RawMessage `json:"output"`
	Error     *string         `json:"error"`
	UpdatedAt time.Time       `json:"updated_at"`
}

func jobEvent(t testing.TB, ev sseclient.Event) jobState {
	t.Helper()
	if ev.Event != "job" {
		t.Fatalf("event %s %s, want job", ev.Event, ev.Data)
	}
	var d struct {
		Channel string   `json:"channel"`
		Job     jobState `json:"job"`
	}
	if err := json.Unmarshal([]byte(ev.Data), &d); err != nil || d.Channel != "job:"+d.Job.JobID {
		t.Fatalf("job event %s: %v", ev.Data, err)
	}
	return d.Job
}

func TestJobLifecycle(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil, nil)
	startWorker(t, n.Redis, "w1")
	a := n.signup(t, "Acme")
	tok := n.token(t, a, "u", []string{"job:*"}, 0)
	s := n.openStream(t, tok, "job:render-1")

	n.putJob(t, a, "render-1", map[string]any{"status": "running", "progress": 0, "message": "starting"})
	got := jobEvent(t, s.next(10*time.Second))
	if got.Status != "running" || *got.Progress != 0 || *got.Message != "starting" || got.UpdatedAt.IsZero() {
		t.Fatalf("first state %+v", got)
	}
	for _, p := range []float64{25, 50.5, 75} {
		n.putJob(t, a, "render-1", map[string]any{"progress": p})
		got = jobEvent(t, s.next(10*time.Second))
		// Unset fields keep their value.
		if *got.Progress != p || got.Status != "running" || *got.Message != "starting" {
			t.Fatalf("after progress %v: %+v", p, got)
		}
	}
	n.putJob(t, a, "render-1", map[string]any{"status": "succeeded", "progress": 100, "output": map[string]string{"url": "https://cdn.example/x.mp4"}})
	got = jobEvent(t, s.next(10*time.Second))
	if got.Status != "succeeded" || string(got.Output) != `{"url":"https://cdn.example/x.mp4"}` {
		t.Fatalf("final state %+v %s", got, got.Output)
	}
	// Terminal is final: later updates change nothing and publish nothing.
	n.putJob(t, a, "render-1", map[string]any{"status": "failed", "error": "too late"})
	s.expectNone(700 * time.Millisecond)

	var st jobState
	n.do(t, call{method: "GET", path: "/v1/jobs/render-1", auth: a.APIKey}).want(t, 200).decode(t, &st)
	if st.Status != "succeeded" || *st.Progress != 100 || st.Error != nil || *st.Message != "starting" {
		t.Fatalf("GET %+v", st)
	}
	// A late subscriber gets the current state first.
	late := n.openStream(t, tok, "job:render-1")
	if first := jobEvent(t, late.next(5*time.Second)); first.Status != "succeeded" || *first.Progress != 100 {
		t.Fatalf("late subscriber's first event %+v", first)
	}
	late.expectNone(300 * time.Millisecond)

	// A subscription added later through the sessions API also starts with the state.
	s2 := n.openStream(t, tok)
	n.do(t, call{method: "POST", path: "/v1/sessions/" + s2.connected.SessionID + "/subscriptions", auth: tok,
		body: `{"channel":"job:render-1"}`}).want(t, 201)
	if ev := s2.next(5 * time.Second); ev.Event != "subscribed" {
		t.Fatalf("got %s", ev.Event)
	}
	if st := jobEvent(t, s2.next(5*time.Second)); st.Status != "succeeded" {
		t.Fatalf("state after subscribe %+v", st)
	}
	n.do(t, call{method: "GET", path: "/v1/jobs/nope", auth: a.APIKey}).want(t, 404, "not_found")
}

func TestWorkflowStepsMergeInArrivalOrder(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil, nil)
	startWorker(t, n.Redis, "w1")
	a := n.signup(t, "Acme")
	s := n.openStream(t, n.token(t, a, "u", []string{"workflow:*"}, 0), "workflow:onboard")
	put := func(path string, body string) {
		n.do(t, call{method: "PUT", path: "/v1/workflows/onboard" + path, auth: a.APIKey, body: body}).want(t, 202)
	}
	put("", `{"status":"running","step":"fetch","steps":[{"name":"fetch","status":"running"},{"name":"resize"}]}`)
	put("/steps/fetch", `{"status":"succeeded"}`)
	put("/steps/notify", `{"status":"pending"}`)
	put("", `{"step":"resize","steps":[{"name":"resize","status":"failed","error":"disk full"}]}`)
	put("", `{"status":"waiting","waiting_for":"approval"}`)

	type wf struct {
		Status     string  `json:"status"`
		Step       *string `json:"step"`
		WaitingFor *string `json:"waiting_for"`
		Steps      []struct {
			Name, Status string
			Error        *string
		} `json:"steps"`
	}
	var last wf
	for range 5 {
		ev := s.next(10 * time.Second)
		var d struct{ Workflow wf }
		if ev.Event != "workflow" || json.Unmarshal([]byte(ev.Data), &d) != nil {
			t.Fatalf("event %s %s", ev.Event, ev.Data)
		}
		last = d.Workflow
	}
	steps := fmt.Sprint(last.Steps[0].Name, last.Steps[0].Status, " ", last.Steps[1].Name, last.Steps[1].Status, " ", last.Steps[2].Name, last.Steps[2].Status)
	if steps != "fetchsucceeded resizefailed notifypending" || last.Steps[1].Error == nil || *last.Steps[1].Error != "disk full" {
		t.Errorf("steps %s %+v", steps, last.Steps)
	}
	if last.Status != "waiting" || *last.Step != "resize" || *last.WaitingFor != "approval" {
		t.Errorf("workflow %+v", last)
	}
	var got wf
	n.do(t, call{method: "GET", path: "/v1/workflows/onboard", auth: a.APIKey}).want(t, 200).decode(t, &got)
	if g, l := mustMarshal(got), mustMarshal(last); g != l {
		t.Errorf("GET %s, want the last published %s", g, l)
	}
}

func TestJobUpdateValidation(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil, map[string]string{"STREAMGATE_DEFAULT_MAX_MESSAGE_BYTES": "100"})
	a := n.signup(t, "Acme")
	for name, tc := range map[string]struct {
		path, body string
		status     int
		code       string
	}{
		"bad status":         {"/v1/jobs/j", `{"status":"done"}`, 400, "invalid_request"},
		"progress over 100":  {"/v1/jobs/j", `{"progress":101}`, 400, "invalid_request"},
		"negative progress":  {"/v1/jobs/j", `{"progress":-1}`, 400, "invalid_request"},
		"progress as text":   {"/v1/jobs/j", `{"progress":"50"}`, 400, "invalid_request"},
		"empty update":       {"/v1/jobs/j", `{}`, 400, "invalid_request"},
		"only nulls":         {"/v1/jobs/j", `{"status":null}`, 400, "invalid_request"},
		"unknown field":      {"/v1/jobs/j", `{"percent":5}`, 400, "invalid_request"},
		"bad id":             {"/v1/jobs/a@b", `{"progress":1}`, 400, "invalid_request"},
		"output too big":     {"/v1/jobs/j", `{"output":"` + strings.Repeat("o", 200) + `"}`, 413, "payload_too_large"},
		"bad workflow state": {"/v1/workflows/w", `{"status":"queued"}`, 400, "invalid_request"},
		"step without name":  {"/v1/workflows/w", `{"steps":[{"status":"running"}]}`, 400, "invalid_request"},
		"bad step status":    {"/v1/workflows/w/steps/s", `{"status":"running!"}`, 400, "invalid_request"},
		"bad step name":      {"/v1/workflows/w/steps/a@b", `{"status":"running"}`, 400, "invalid_request"},
		"empty step update":  {"/v1/workflows/w/steps/s", `{}`, 400, "invalid_request"},
	} {
		t.Run(name, func(t *testing.T) {
			n.do(t, call{method: "PUT", path: tc.path, auth: a.APIKey, body: tc.body}).want(t, tc.status, tc.code)
		})
	}
	// Nothing refused reached the update stream.
	rdb := n.Redis.Client()
	for p := range keys.UpdatePartitions {
		if l, _ := rdb.XLen(t.Context(), keys.Updates(p)).Result(); l != 0 {
			t.Fatalf("partition %d holds %d entries after only refusals", p, l)
		}
	}
}

func TestJobTenantIsolation(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil, nil)
	startWorker(t, n.Redis, "w1")
	a := n.signup(t, "A")
	b := n.signup(t, "B")
	bs := n.openStream(t, n.token(t, b, "u", []string{"*"}, 0), "job:shared")
	n.putJob(t, a, "shared", map[string]any{"status": "running"})
	waitFor(t, 5*time.Second, "A's job to be applied", func() bool {
		return n.do(t, call{method: "GET", path: "/v1/jobs/shared", auth: a.APIKey}).Status == 200
	})
	n.do(t, call{method: "GET", path: "/v1/jobs/shared", auth: b.APIKey}).want(t, 404, "not_found")
	bs.expectNone(300 * time.Millisecond)
	// B's own job of the same id is B's alone.
	n.putJob(t, b, "shared", map[string]any{"status": "queued"})
	if st := jobEvent(t, bs.next(5*time.Second)); st.Status != "queued" {
		t.Fatalf("B sees %+v", st)
	}
}

// TestManyUpdatesManyWorkers sends 1,000 updates over 20 jobs concurrently (each job's in
// order), applied by 3 workers: every subscriber sees its job's progress in accepted order and
// every final state is the last update's.
func TestManyUpdatesManyWorkers(t *testing.T) {
	t.Parallel()
	// A buffer that holds the whole burst: this test is about order, not backpressure.
	n := startNode(t, nil, map[string]string{"STREAMGATE_DEFAULT_PUBLISH_PER_SECOND": "100000", "STREAMGATE_SESSION_BUFFER": "4096"})
	var workers []*workerProc
	for i := range 3 {
		workers = append(workers, startWorker(t, n.Redis, fmt.Sprintf("w%d", i)))
	}
	defer func() {
		if !t.Failed() {
			return
		}
		for _, w := range workers {
			for _, l := range strings.Split(w.logs.String(), "\n") {
				if strings.Contains(l, "WARN") || strings.Contains(l, "ERROR") {
					t.Log(l)
				}
			}
		}
	}()
	a := n.signup(t, "Acme")
	const jobs, perJob = 20, 50
	var channels []string
	for j := range jobs {
		channels = append(channels, fmt.Sprintf("job:batch-%d", j))
	}
	s := n.openStream(t, n.token(t, a, "u", []string{"job:*"}, 0), channels...)

	var wg sync.WaitGroup
	for j := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 1; i <= perJob; i++ {
				body := map[string]any{"progress": i * 100 / perJob, "message": fmt.Sprint("step ", i)}
				if i == perJob {
					body["status"] = "succeeded"
				}
				n.putJob(t, a, fmt.Sprintf("batch-%d", j), body)
			}
		}()
	}
	start := time.Now()
	wg.Wait()
	t.Logf("accepted %d updates in %s", jobs*perJob, time.Since(start))

	seen := map[string]int{}
	for got := 0; got < jobs*perJob; {
		var ev sseclient.Event
		select {
		case ev = <-s.events:
		case <-time.After(20 * time.Second):
			t.Fatalf("events stopped; seen so far %v\n%s", seen, n.logs.String()[max(0, len(n.logs.String())-3000):])
		}
		if ev.Event != "job" {
			continue
		}
		got++
		st := jobEvent(t, ev)
		var i int
		fmt.Sscanf(*st.Message, "step %d", &i)
		if i != seen[st.JobID]+1 {
			r := n.Redis.Client().XRange(t.Context(), keys.History(a.TenantID, "job:"+st.JobID), "-", "+").Val()
			for _, e := range r {
				t.Logf("history %s %v", e.ID, e.Values["d"])
			}
			t.Fatalf("%s: saw update %d after %d", st.JobID, i, seen[st.JobID])
		}
		seen[st.JobID] = i
	}
	t.Logf("received every state after %s", time.Since(start))
	for j := range jobs {
		var st jobState
		n.do(t, call{method: "GET", path: fmt.Sprintf("/v1/jobs/batch-%d", j), auth: a.APIKey}).want(t, 200).decode(t, &st)
		if st.Status != "succeeded" || *st.Progress != 100 || *st.Message != fmt.Sprint("step ", perJob) {
			t.Errorf("batch-%d final %+v", j, st)
		}
	}
}

// pendingOf counts the update entries a consumer holds unacknowledged.
func pendingOf(t testing.TB, rdb *redis.Client, consumer string) int64 {
	t.Helper()
	var n int64
	for p := range keys.UpdatePartitions {
		res, err := rdb.XPending(t.Context(), keys.Updates(p), "workers").Result()
		if err != nil {
			continue
		}
		n += res.Consumers[consumer]
	}
	return n
}

func TestKilledWorkersEntriesAreClaimedAndAppliedOnce(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil, nil)
	rdb := n.Redis.Client()
	a := n.signup(t, "Acme")
	doomed := startWorker(t, n.Redis, "doomed")
	time.Sleep(300 * time.Millisecond) // let it block in its reads
	if err := doomed.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	const jobs, perJob = 8, 5
	for i := 1; i <= perJob; i++ {
		for j := range jobs {
			n.putJob(t, a, fmt.Sprintf("k-%d", j), map[string]any{"progress": i * 20})
		}
	}
	held := pendingOf(t, rdb, "doomed")
	if held == 0 {
		t.Fatal("the stopped worker holds no entries: the test did not set up what it tests")
	}
	_ = doomed.cmd.Process.Kill()
	startWorker(t, n.Redis, "survivor", "STREAMGATE_WORKER_CLAIM_IDLE=300ms")

	for j := range jobs {
		id := fmt.Sprintf("k-%d", j)
		waitFor(t, 15*time.Second, id+" to reach 100", func() bool {
			var st jobState
			r := n.do(t, call{method: "GET", path: "/v1/jobs/" + id, auth: a.APIKey})
			if r.Status != 200 {
				return false
			}
			r.decode(t, &st)
			return *st.Progress == 100
		})
		// Each update was applied exactly once: one published state per update.
		if got := rdb.XLen(t.Context(), keys.History(a.TenantID, "job:"+id)).Val(); got != perJob {
			t.Errorf("%s: %d states published, want %d (each update once)", id, got, perJob)
		}
	}
	waitFor(t, 5*time.Second, "nothing pending", func() bool {
		return pendingOf(t, rdb, "doomed")+pendingOf(t, rdb, "survivor") == 0
	})
	t.Logf("the killed worker held %d entries", held)
}

func TestPoisonEntryIsDeadLetteredWithoutHoldingUpOthers(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil, nil)
	rdb := n.Redis.Client()
	a := n.signup(t, "Acme")
	w := startWorker(t, n.Redis, "w1", "STREAMGATE_WORKER_CLAIM_IDLE=100ms")
	// An entry the apply step always rejects: its fields are not an update.
	p := 3
	poison, err := rdb.XAdd(t.Context(), &redis.XAddArgs{Stream: keys.Updates(p), Values: map[string]any{
		"seq": 1, "tenant": a.TenantID, "kind": "job", "id": "poison", "fields": "not json",
		"hist_events": 10, "hist_secs": 60, "accepted_at": time.Now().UnixMilli(),
	}}).Result()
	if err != nil {
		t.Fatal(err)
	}
	n.putJob(t, a, "healthy", map[string]any{"status": "running"})
	waitFor(t, 5*time.Second, "the healthy job to apply", func() bool {
		return n.do(t, call{method: "GET", path: "/v1/jobs/healthy", auth: a.APIKey}).Status == 200
	})
	waitFor(t, 15*time.Second, "the poison entry in the dead-letter stream", func() bool {
		return rdb.XLen(t.Context(), keys.DeadLetters(p)).Val() == 1
	})
	dead := rdb.XRange(t.Context(), keys.DeadLetters(p), "-", "+").Val()[0]
	if dead.Values["entry_id"] != poison || dead.Values["deliveries"] != "5" || !strings.Contains(fmt.Sprint(dead.Values["reason"]), "malformed") {
		t.Errorf("dead letter %v", dead.Values)
	}
	waitFor(t, 5*time.Second, "the poison entry acknowledged", func() bool { return pendingOf(t, rdb, "w1") == 0 })
	_ = w
}

func TestWorkerDrainsOnSIGTERM(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil, nil)
	rdb := n.Redis.Client()
	a := n.signup(t, "Acme")
	w := startWorker(t, n.Redis, "drainer")
	time.Sleep(300 * time.Millisecond)
	_ = w.cmd.Process.Signal(syscall.SIGSTOP)
	for j := range 6 {
		n.putJob(t, a, fmt.Sprintf("d-%d", j), map[string]any{"status": "running"})
	}
	held := pendingOf(t, rdb, "drainer")
	if held == 0 {
		t.Fatal("the stopped worker holds no entries: nothing to drain")
	}
	_ = w.cmd.Process.Signal(syscall.SIGCONT)
	_ = w.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-w.done:
		if err != nil {
			t.Fatalf("worker exited with %v\n%s", err, w.logs)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("worker did not exit after SIGTERM")
	}
	if got := pendingOf(t, rdb, "drainer"); got != 0 {
		t.Fatalf("%d entries left pending after a graceful stop (held %d)", got, held)
	}
	applied := 0
	for j := range 6 {
		if n.do(t, call{method: "GET", path: fmt.Sprintf("/v1/jobs/d-%d", j), auth: a.APIKey}).Status == 200 {
			applied++
		}
	}
	if int64(applied) < held {
		t.Fatalf("only %d jobs applied; the worker held %d", applied, held)
	}
}

func mustMarshal(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// Job and workflow updates count against publish_per_second: a tenant cannot flood the update
// stream every tenant shares. A refused update changes nothing.
// A client that retries a job or workflow update with its Idempotency-Key (its first answer
// lost, say) gets the first answer again, and subscribers see the update applied once; the key
// with another update of that job or workflow is refused.
func TestJobAndWorkflowUpdatesRetriedWithIdempotencyKeyApplyOnce(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil, nil)
	startWorker(t, n.Redis, "w1")
	a := n.signup(t, "Acme")
	s := n.openStream(t, n.token(t, a, "u", []string{"job:*", "workflow:*"}, 0), "job:export-1", "workflow:ship-1")
	put := func(path, key, body string) reply {
		return n.do(t, call{method: "PUT", path: path, auth: a.APIKey, header: map[string]string{"Idempotency-Key": key}, body: body})
	}
	accepted := func(r reply) {
		t.Helper()
		if r.want(t, 202); strings.TrimSpace(string(r.Body)) != `{"accepted":true}` {
			t.Errorf("body %s, want the first answer {\"accepted\":true}", r.Body)
		}
	}
	accepted(put("/v1/jobs/export-1", "attempt-1", `{"status":"running","progress":10}`))
	accepted(put("/v1/jobs/export-1", "attempt-1", `{"status":"running","progress":10}`))
	put("/v1/jobs/export-1", "attempt-1", `{"progress":90}`).want(t, 422, "idempotency_mismatch")
	accepted(put("/v1/jobs/export-1", "attempt-2", `{"progress":50}`))

	accepted(put("/v1/workflows/ship-1", "wf-1", `{"status":"running","steps":[{"name":"pack"}]}`))
	accepted(put("/v1/workflows/ship-1", "wf-1", `{"status":"running","steps":[{"name":"pack"}]}`))
	put("/v1/workflows/ship-1/steps/pack", "wf-1", `{"status":"succeeded"}`).want(t, 422, "idempotency_mismatch")
	accepted(put("/v1/workflows/ship-1/steps/pack", "step-1", `{"status":"succeeded"}`))
	accepted(put("/v1/workflows/ship-1/steps/pack", "step-1", `{"status":"succeeded"}`))
	accepted(put("/v1/workflows/ship-1", "wf-2", `{"status":"succeeded"}`))

	// Updates apply in the order accepted: a retry appended again would show up as a state of
	// its own before the next update's.
	var jobStates, wfStates []string
	for len(jobStates) < 2 || len(wfStates) < 3 {
		ev := s.next(10 * time.Second)
		switch ev.Event {
		case "job":
			st := jobEvent(t, ev)
			jobStates = append(jobStates, fmt.Sprintf("%s %v", st.Status, *st.Progress))
		case "workflow":
			var d struct {
				Workflow struct {
					Status string `json:"status"`
					Steps  []struct{ Name, Status string }
				} `json:"workflow"`
			}
			if err := json.Unmarshal([]byte(ev.Data), &d); err != nil {
				t.Fatalf("workflow event %s: %v", ev.Data, err)
			}
			wfStates = append(wfStates, fmt.Sprintf("%s %v", d.Workflow.Status, d.Workflow.Steps))
		}
	}
	if want := []string{"running 10", "running 50"}; fmt.Sprint(jobStates) != fmt.Sprint(want) {
		t.Errorf("job states %q, want %q (each update once)", jobStates, want)
	}
	if want := []string{"running [{pack pending}]", "running [{pack succeeded}]", "succeeded [{pack succeeded}]"}; fmt.Sprint(wfStates) != fmt.Sprint(want) {
		t.Errorf("workflow states %q, want %q (each update once)", wfStates, want)
	}
}

func TestJobUpdatesAreRateLimited(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil, map[string]string{"STREAMGATE_DEFAULT_PUBLISH_PER_SECOND": "1"})
	a := n.signup(t, "Acme")
	other := n.signup(t, "Other")
	refused := 0
	for i := range 12 {
		r := n.do(t, call{method: "PUT", path: fmt.Sprintf("/v1/jobs/j%d", i), auth: a.APIKey, body: `{"status":"running"}`})
		switch r.Status {
		case http.StatusAccepted:
		case http.StatusTooManyRequests:
			r.want(t, http.StatusTooManyRequests, "rate_limited")
			refused++
		default:
			t.Fatalf("PUT job: %d %s", r.Status, r.Body)
		}
	}
	// Twelve updates at 1 a second: only a machine taking a second per request lets all pass.
	if refused == 0 {
		t.Fatal("no job update was refused at 1 per second")
	}
	n.do(t, call{method: "PUT", path: "/v1/jobs/j0", auth: other.APIKey, body: `{"status":"running"}`}).want(t, http.StatusAccepted)
}

// A workflow holds at most 1,000 steps; updates to the ones it has keep working.
func TestWorkflowStepsAreCapped(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil, nil)
	startWorker(t, n.Redis, "w1")
	a := n.signup(t, "Acme")
	for batch := range 11 {
		var steps []string
		for i := range 100 {
			steps = append(steps, fmt.Sprintf(`{"name":"s%04d"}`, batch*100+i))
		}
		n.do(t, call{method: "PUT", path: "/v1/workflows/big", auth: a.APIKey,
			body: `{"status":"running","steps":[` + strings.Join(steps, ",") + `]}`}).want(t, 202)
	}
	n.do(t, call{method: "PUT", path: "/v1/workflows/big/steps/s0999", auth: a.APIKey, body: `{"status":"succeeded"}`}).want(t, 202)
	n.do(t, call{method: "PUT", path: "/v1/workflows/big", auth: a.APIKey, body: `{"status":"succeeded"}`}).want(t, 202)
	var got struct {
		Status string
		Steps  []struct{ Name, Status string }
	}
	waitFor(t, 20*time.Second, "the worker to apply every update", func() bool {
		n.do(t, call{method: "GET", path: "/v1/workflows/big", auth: a.APIKey}).decode(t, &got)
		return got.Status == "succeeded"
	})
	if len(got.Steps) != 1000 {
		t.Fatalf("%d steps, want the first 1000", len(got.Steps))
	}
	if last := got.Steps[999]; last.Name != "s0999" || last.Status != "succeeded" {
		t.Errorf("step 1000 is %+v, want s0999 succeeded", last)
	}
}
