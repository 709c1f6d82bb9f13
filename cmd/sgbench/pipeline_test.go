package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeAPI is just enough of Streamgate for the load tool's own pipeline: streams that get
// connected and then every message of their channel, and a publish route. It refuses every
// refuseEvery-th publish with 429, accepts event drop without delivering it, and delivers
// event dup twice, so the test knows exactly what sgbench must report.
type fakeAPI struct {
	refuseEvery int
	drop, dup   int64
	mu          sync.Mutex
	subs        map[string]map[chan string]bool
	publishes   int
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer tok" && r.Header.Get("Authorization") != "Bearer key" {
		http.Error(w, `{"error":{"code":"unauthorized","message":"no"}}`, http.StatusUnauthorized)
		return
	}
	if r.URL.Path == "/v1/stream" {
		f.stream(w, r)
		return
	}
	ch, isChannel := strings.CutPrefix(r.URL.Path, "/v1/channels/")
	ch, isEvents := strings.CutSuffix(ch, "/events")
	if !isChannel || !isEvents || r.Method != http.MethodPost {
		http.NotFound(w, r)
		return
	}
	var body struct {
		Event string          `json:"event"`
		Data  json.RawMessage `json:"data"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		http.Error(w, `{"error":{"code":"invalid_request","message":"bad"}}`, http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	f.publishes++
	refuse := f.publishes%f.refuseEvery == 0
	f.mu.Unlock()
	if refuse {
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusTooManyRequests)
		io.WriteString(w, `{"error":{"code":"rate_limited","message":"slow down"}}`)
		return
	}
	msg, _ := json.Marshal(map[string]any{"channel": ch, "event": body.Event, "data": body.Data, "published_at": time.Now()})
	p, _ := parseMessage(string(msg))
	times := 1
	switch p.Index {
	case f.drop:
		times = 0
	case f.dup:
		times = 2
	}
	f.mu.Lock()
	for sub := range f.subs[ch] {
		for range times {
			sub <- string(msg)
		}
	}
	f.mu.Unlock()
	w.WriteHeader(http.StatusAccepted)
	io.WriteString(w, `{"id":"1-0"}`)
}

func (f *fakeAPI) stream(w http.ResponseWriter, r *http.Request) {
	ch := r.URL.Query().Get("channel")
	sub := make(chan string, 1024)
	f.mu.Lock()
	if f.subs[ch] == nil {
		f.subs[ch] = map[chan string]bool{}
	}
	f.subs[ch][sub] = true
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		delete(f.subs[ch], sub)
		f.mu.Unlock()
	}()
	w.Header().Set("Content-Type", "text/event-stream")
	fmt.Fprint(w, "retry: 2000\n\nid: s:e:0-0\nevent: connected\ndata: {\"session_id\":\"ses_x\"}\n\n")
	w.(http.Flusher).Flush()
	for {
		select {
		case m := <-sub:
			fmt.Fprintf(w, "id: s:e:1-0\nevent: message\ndata: %s\n\n: ping\n\n", m)
			w.(http.Flusher).Flush()
		case <-r.Context().Done():
			return
		}
	}
}

// TestPipeline runs a worker and the publisher against fakeAPI and checks the merged report:
// what was refused is a publish error and not lost, the dropped event is lost once per
// subscriber, the doubled one duplicated once per subscriber, and nothing else is off.
func TestPipeline(t *testing.T) {
	const conns, events = 10, 40
	for _, tt := range []struct {
		mode                     string
		wantExpected, wantLostEx int64
	}{
		{modeBroadcast, 36 * conns, conns},
		{modePerConn, 36, 1},
	} {
		t.Run(tt.mode, func(t *testing.T) {
			api := &fakeAPI{refuseEvery: 10, drop: 5, dup: 7, subs: map[string]map[chan string]bool{}}
			srv := httptest.NewServer(api)
			defer srv.Close()
			cfg := config{URLs: []string{srv.URL}, Events: events, Rate: 2000, Payload: 64, Publishers: 1, Conns: conns, Tenants: 1}
			p := plan{Conns: conns, Tenants: 1, Nodes: 1, Mode: tt.mode, Prefix: "sgb-t"}
			deadline := time.Now().Add(20 * time.Second)

			inR, inW := io.Pipe()
			outR, outW := io.Pipe()
			done := make(chan error, 1)
			go func() {
				err := runWorker(t.Context(), inR, outW)
				outW.CloseWithError(err)
				done <- err
			}()
			enc := json.NewEncoder(inW)
			if err := enc.Encode(workerConfig{Plan: p, Worker: 0, Procs: 1, URLs: cfg.URLs, Tokens: []string{"tok"},
				Start: time.Now().UnixNano(), Deadline: deadline.UnixNano(), ConnectTimeout: 5 * time.Second}); err != nil {
				t.Fatal(err)
			}
			lines := bufio.NewScanner(outR)
			lines.Buffer(nil, 16<<20)
			next := func(typ string, until func(workerMsg) bool) workerMsg {
				t.Helper()
				for lines.Scan() {
					var m workerMsg
					if err := json.Unmarshal(lines.Bytes(), &m); err != nil {
						t.Fatalf("worker wrote %q: %v", lines.Text(), err)
					}
					if m.Type == typ && (until == nil || until(m)) {
						return m
					}
				}
				t.Fatalf("worker output ended before %s: %v", typ, lines.Err())
				return workerMsg{}
			}
			ready := next("ready", nil)
			if got := ready.Ready.PerChannel; len(got) == 0 {
				t.Fatalf("ready with no sessions per channel: %+v", got)
			}

			pub := newPublisher(cfg, p, []string{"key"}, deadline).run(t.Context())
			if got := expectedDeliveries(p, pub.Ledger, ready.Ready.PerChannel); got != tt.wantExpected {
				t.Errorf("expected deliveries = %d, want %d", got, tt.wantExpected)
			}
			// Dropped and doubled events balance out: wait for the expected count.
			next("progress", func(m workerMsg) bool { return m.Progress.Delivered >= tt.wantExpected })
			if err := enc.Encode(finishMsg{Ledger: pub.Ledger}); err != nil {
				t.Fatal(err)
			}
			res := next("result", nil)
			if err := <-done; err != nil {
				t.Fatalf("worker: %v", err)
			}
			inW.Close()

			rep := newReport(cfg)
			rep.fill([]workerResult{*res.Result}, pub, &sampler{}, 0)
			c, d, pb := rep.Connect, rep.Delivery, rep.Publish
			if c.Established != conns || c.Failed != 0 {
				t.Errorf("established %d, failed %d; want %d, 0", c.Established, c.Failed, conns)
			}
			if pb.Attempted != events || pb.Accepted != 36 || pb.Errors != 4 || pb.RateLimited != 4 || pb.ErrorsBy["HTTP 429 rate_limited"] != 4 {
				t.Errorf("publish = %+v; want 40 attempted, 36 accepted, 4 errors, all 429", pb)
			}
			if d.Lost != tt.wantLostEx || d.Duplicated != tt.wantLostEx || d.Misrouted != 0 {
				t.Errorf("lost %d, duplicated %d, misrouted %d; want %d, %d, 0", d.Lost, d.Duplicated, d.Misrouted, tt.wantLostEx, tt.wantLostEx)
			}
			if d.Delivered != tt.wantExpected || res.Result.Latency.Count != tt.wantExpected {
				t.Errorf("delivered %d (latencies %d), want %d", d.Delivered, res.Result.Latency.Count, tt.wantExpected)
			}
			if d.Latency.Max <= 0 || d.Latency.Max > 5000 {
				t.Errorf("latency max %g ms: not a plausible local figure", d.Latency.Max)
			}
			if !strings.Contains(strings.Join(rep.Warnings, "\n"), "publish_per_second") {
				t.Errorf("no hint to raise publish_per_second after 429s: %q", rep.Warnings)
			}
		})
	}
}
