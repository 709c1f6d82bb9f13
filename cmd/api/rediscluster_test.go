package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/streamgate/streamgate/internal/redistest"
)

// startClusterNode boots the api on a Redis Cluster.
func startClusterNode(t testing.TB, cl *redistest.Cluster) *node {
	t.Helper()
	return bootNode(t, nil, map[string]string{
		"REDIS_CLUSTER_ADDRS":                   cl.Addrs(),
		"STREAMGATE_ADDR":                       "127.0.0.1:0",
		"STREAMGATE_ADMIN_TOKEN":                testAdminToken,
		"STREAMGATE_SECRET_KEY":                 testSecretKey,
		"STREAMGATE_DEFAULT_PUBLISH_PER_SECOND": "100000",
		"STREAMGATE_DEFAULT_HISTORY_EVENTS":     "5",
	})
}

// TestRedisCluster runs the core flows, jobs and resume on a three-master Redis Cluster:
// tenants land on different shards, live events use sharded pub/sub, and no command crosses
// slots.
func TestRedisCluster(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t, 3)
	a := startClusterNode(t, cl)
	b := startClusterNode(t, cl)

	// Several tenants, so that their hash tags spread over the shards.
	var accts []account
	for i := range 4 {
		accts = append(accts, a.signup(t, fmt.Sprint("tenant-", i)))
	}
	for i, acct := range accts {
		tok := a.token(t, acct, "u", []string{"*"}, 0)
		s := a.openStream(t, tok, "chat", "news")
		b.publish(t, acct, "chat", i)
		if got := dataInt(t, decodeMessage(t, s.next(5*time.Second)).Data); got != i {
			t.Fatalf("tenant %d: got %d", i, got)
		}
		// Batch over two channels of the tenant: one script, one slot.
		b.do(t, call{method: "POST", path: "/v1/events", auth: acct.APIKey,
			body: `{"events":[{"channel":"chat","data":10},{"channel":"news","data":11}]}`}).want(t, 202)
		for _, want := range []int{10, 11} {
			if got := dataInt(t, decodeMessage(t, s.next(5*time.Second)).Data); got != want {
				t.Fatalf("tenant %d batch: got %d, want %d", i, got, want)
			}
		}
		// Resume on the other node replays what was missed.
		last := s.stream.LastID()
		s.Close()
		a.publish(t, acct, "news", 12)
		r := b.resumeFrom(t, tok, last)
		if got := dataInt(t, decodeMessage(t, r.next(5*time.Second)).Data); got != 12 {
			t.Fatalf("tenant %d resume: got %d", i, got)
		}
		// A gap beyond the window (5 events) resets.
		last = r.stream.LastID()
		r.Close()
		for k := range 8 {
			a.publish(t, acct, "news", 20+k)
		}
		if ev := a.resumeFrom(t, tok, last).next(5 * time.Second); ev.Event != "reset" {
			t.Fatalf("tenant %d: got %s after a gap, want reset", i, ev.Event)
		}
	}

	// Jobs: a worker on the cluster applies updates from every partition.
	w := exec.Command(workerBinary(t))
	w.Env = append(os.Environ(), "REDIS_CLUSTER_ADDRS="+cl.Addrs(), "STREAMGATE_WORKER_NAME=cw")
	logs := newLogSink()
	w.Stderr = logs
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Process.Kill(); _ = w.Wait() })
	for i, acct := range accts {
		tok := a.token(t, acct, "u", []string{"job:*"}, 0)
		s := b.openStream(t, tok, fmt.Sprintf("job:j%d", i))
		a.putJob(t, acct, fmt.Sprintf("j%d", i), map[string]any{"status": "running", "progress": 10})
		a.putJob(t, acct, fmt.Sprintf("j%d", i), map[string]any{"status": "succeeded", "progress": 100})
		for _, want := range []string{"running", "succeeded"} {
			if st := jobEvent(t, s.next(15*time.Second)); st.Status != want {
				t.Fatalf("tenant %d job: %s, want %s\n%s", i, st.Status, want, logs)
			}
		}
	}

	// Sessions API across nodes and cluster-wide stats.
	acct := accts[0]
	tok := a.token(t, acct, "u", []string{"*"}, 0)
	s := a.openStream(t, tok, "x")
	b.do(t, call{method: "POST", path: "/v1/sessions/" + s.connected.SessionID + "/subscriptions", auth: tok, body: `{"channel":"y"}`}).want(t, 201)
	if ev := s.next(5 * time.Second); ev.Event != "subscribed" {
		t.Fatalf("got %s", ev.Event)
	}
	waitFor(t, 5*time.Second, "cluster-wide stats with both nodes", func() bool {
		var st struct{ Connections, Nodes int }
		b.do(t, call{method: "GET", path: "/v1/stats", auth: acct.APIKey}).want(t, 200).decode(t, &st)
		return st.Nodes == 2 && st.Connections >= 1
	})

	clusterRealtime(t, a, b, accts)
}

// clusterRealtime checks presence, token refresh and history reads on tenants of different
// shards: the presence scripts publish with SPUBLISH in their tenant's slot. The operator's
// presence and webhook figures read every shard.
func clusterRealtime(t *testing.T, a, b *node, accts []account) {
	type adminPresence struct {
		PresenceChannels int `json:"presence_channels"`
		PresenceMembers  int `json:"presence_members"`
		Channels         []struct {
			Channel string `json:"channel"`
			Members int    `json:"members"`
		} `json:"channels"`
	}
	for i, acct := range accts {
		keepPresence(t, acct, []string{"room"}, a, b)
		watcher := b.openStream(t, infoToken(acct, "bob", "", "room"), "room")
		presenceEvent(t, watcher)
		ada := a.openStream(t, infoToken(acct, "ada", `{"n":1}`, "room", "news"), "room", "news")
		if got := presenceEvent(t, watcher); got != `join ada room {"n":1}` {
			t.Fatalf("tenant %d: got %s, want ada's join", i, got)
		}
		if got := b.presence(t, acct.APIKey, "room").String(); got != `2: bob×1 null, ada×1 {"n":1}` {
			t.Fatalf("tenant %d: presence %s", i, got)
		}
		presenceEvent(t, ada) // her own join
		var p adminPresence
		a.admin(t, "GET", "/tenants/"+acct.TenantID+"/presence", nil).want(t, 200).decode(t, &p)
		if p.PresenceChannels != 1 || p.PresenceMembers != 2 || len(p.Channels) != 1 || p.Channels[0].Channel != "room" || p.Channels[0].Members != 2 {
			t.Fatalf("tenant %d: admin presence %+v, want 2 members in room", i, p)
		}
		a.do(t, call{method: "POST", path: "/v1/webhooks", auth: acct.APIKey,
			body: map[string]any{"url": "https://8.8.8.8/hooks", "events": []string{"workflow.finished"}}}).want(t, 201)
		// Refreshed on the other node with a token for news alone: ada leaves the room.
		b.do(t, call{method: "POST", path: "/v1/sessions/" + ada.connected.SessionID + "/token",
			body: map[string]string{"token": infoToken(acct, "ada", "", "news")}}).want(t, 200)
		if ev := ada.next(5 * time.Second); ev.Event != "unsubscribed" || ev.Data != `{"channel":"room"}` {
			t.Fatalf("tenant %d: got %s %s, want unsubscribed room", i, ev.Event, ev.Data)
		}
		if got := presenceEvent(t, watcher); got != `leave ada room {"n":1}` {
			t.Fatalf("tenant %d: got %s, want ada's leave", i, got)
		}
		if got := a.readHistory(t, acct.APIKey, "news", nil); len(got.Events) == 0 || got.Truncated {
			t.Fatalf("tenant %d: history of news %+v", i, got)
		}
		var hooks struct {
			Webhooks []struct{ URL string } `json:"webhooks"`
		}
		b.admin(t, "GET", "/tenants/"+acct.TenantID+"/webhooks", nil).want(t, 200).decode(t, &hooks)
		if len(hooks.Webhooks) != 1 || hooks.Webhooks[0].URL != "https://8.8.8.8/hooks" {
			t.Fatalf("tenant %d: admin webhooks %+v", i, hooks.Webhooks)
		}
	}
	// Bob stays in every tenant's room.
	waitFor(t, 5*time.Second, "every tenant's member in the stats", func() bool {
		var st struct {
			Totals struct {
				PresenceMembers int `json:"presence_members"`
			} `json:"totals"`
		}
		a.admin(t, "GET", "/stats", nil).want(t, 200).decode(t, &st)
		return st.Totals.PresenceMembers == len(accts)
	})
}

// TestRedisClusterReshard moves a tenant's slot to another master, as redis-cli --cluster
// reshard does, while its streams are open on two nodes and events keep being published to
// both. No publish fails, every stream gets every event once and in order, and streams opened
// afterwards work as before.
func TestRedisClusterReshard(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t, 3)
	vars := map[string]string{
		"REDIS_CLUSTER_ADDRS":                   cl.Addrs(),
		"STREAMGATE_ADDR":                       "127.0.0.1:0",
		"STREAMGATE_ADMIN_TOKEN":                testAdminToken,
		"STREAMGATE_SECRET_KEY":                 testSecretKey,
		"STREAMGATE_DEFAULT_PUBLISH_PER_SECOND": "100000",
		"STREAMGATE_DEFAULT_HISTORY_EVENTS":     "10000",
	}
	a, b := bootNode(t, nil, vars), bootNode(t, nil, vars)
	acct := a.signup(t, "resharded")
	slot := cl.Slot(t, "{"+acct.TenantID+"}")
	from := cl.MasterOf(t, slot)
	to := cl.Nodes[0]
	if to == from {
		to = cl.Nodes[1]
	}

	tok := a.token(t, acct, "u", []string{"*"}, 0)
	both := a.openStream(t, tok, "chat", "news")
	chat := b.openStream(t, tok, "chat")

	// One publisher, through both nodes in turn, on both channels in turn: data is its count.
	type sent struct {
		channel string
		n       int
	}
	var (
		mu       sync.Mutex
		log      []sent
		failures []string
	)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			n, channel := []*node{a, b}[i%2], []string{"chat", "news"}[(i/2)%2]
			req, _ := http.NewRequest("POST", n.URL+"/v1/channels/"+channel+"/events", strings.NewReader(fmt.Sprintf(`{"data":%d}`, i)))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer "+acct.APIKey)
			resp, err := testClient.Do(req)
			mu.Lock()
			switch {
			case err != nil:
				failures = append(failures, err.Error())
			case resp.StatusCode != 202:
				raw, _ := io.ReadAll(resp.Body)
				failures = append(failures, fmt.Sprintf("%d %s", resp.StatusCode, raw))
			default:
				log = append(log, sent{channel, i})
			}
			mu.Unlock()
			if resp != nil {
				resp.Body.Close()
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	published := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(log)
	}
	waitFor(t, 20*time.Second, "events before the move", func() bool { return published() >= 40 })
	cl.MoveSlot(t, slot, to, redistest.MoveOptions{Batch: 4, During: func(int) { time.Sleep(5 * time.Millisecond) }})
	n := published()
	waitFor(t, 20*time.Second, "events after the move", func() bool { return published() >= n+40 })
	close(stop)
	<-done
	if cl.MasterOf(t, slot) != to {
		t.Fatal("the slot did not move")
	}
	if len(failures) > 0 {
		t.Fatalf("%d publishes failed while the slot moved, the first: %s", len(failures), failures[0])
	}

	expect := func(s *subscriber, name string, channels ...string) {
		t.Helper()
		for _, e := range log {
			if !slices.Contains(channels, e.channel) {
				continue
			}
			m := decodeMessage(t, s.next(15*time.Second))
			if got := dataInt(t, m.Data); got != e.n || m.Channel != e.channel {
				t.Fatalf("%s: got %s %d, want %s %d: an event lost, repeated or out of order", name, m.Channel, got, e.channel, e.n)
			}
		}
	}
	expect(both, "the stream on chat and news", "chat", "news")
	expect(chat, "the stream on chat", "chat")

	// Nothing more was pending, and new streams on the moved slot work on both nodes.
	later := []*subscriber{a.openStream(t, tok, "news"), b.openStream(t, tok, "news")}
	b.publish(t, acct, "news", -1)
	for i, s := range append(later, both) {
		if got := dataInt(t, decodeMessage(t, s.next(10*time.Second)).Data); got != -1 {
			t.Fatalf("stream %d after the move: got %d, want the latest event", i, got)
		}
	}
	a.publish(t, acct, "chat", -2)
	if got := dataInt(t, decodeMessage(t, chat.next(10*time.Second)).Data); got != -2 {
		t.Fatalf("the stream on chat after the move: got %d, want the latest event", got)
	}
}
