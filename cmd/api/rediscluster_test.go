package main

import (
	"fmt"
	"os"
	"os/exec"
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
