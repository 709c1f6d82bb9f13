package main

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/streamgate/streamgate/internal/sseclient"
)

func (n *node) admin(t testing.TB, method, path string, body any) reply {
	t.Helper()
	return n.do(t, call{method: method, path: "/admin/api" + path, auth: testAdminToken, body: body})
}

type statsView struct {
	GeneratedAt time.Time `json:"generated_at"`
	Totals      struct {
		Tenants, Nodes, Connections, Subscriptions int
		Published                                  int `json:"published_total"`
		Delivered                                  int `json:"delivered_total"`
	} `json:"totals"`
	Nodes []struct {
		ID          string `json:"id"`
		Connections int    `json:"connections"`
	} `json:"nodes"`
	Tenants []struct {
		ID            string `json:"id"`
		Connections   int    `json:"connections"`
		Subscriptions int    `json:"subscriptions"`
		Limits        struct {
			MaxConnections int `json:"max_connections"`
		} `json:"limits"`
	} `json:"tenants"`
}

func TestAdminStatsMatchRealityAcrossNodes(t *testing.T) {
	t.Parallel()
	a := startNode(t, nil, nil)
	b := startNode(t, a.Redis, nil)
	acme := a.signup(t, "Acme")
	globex := a.signup(t, "Globex")
	a.openStream(t, a.token(t, acme, "u", []string{"*"}, 0), "x", "y")
	b.openStream(t, b.token(t, acme, "u", []string{"*"}, 0), "x")
	b.openStream(t, b.token(t, globex, "u", []string{"*"}, 0), "z")
	a.publish(t, acme, "x", 1)

	var st statsView
	waitFor(t, 3*time.Second, "admin stats to show the streams", func() bool {
		a.admin(t, "GET", "/stats", nil).want(t, 200).decode(t, &st)
		return st.Totals.Connections == 3 && st.Totals.Subscriptions == 4 && st.Totals.Delivered == 2
	})
	if st.Totals.Tenants != 2 || st.Totals.Nodes != 2 || st.Totals.Published != 1 || len(st.Nodes) != 2 {
		t.Errorf("totals %+v nodes %+v", st.Totals, st.Nodes)
	}
	per := map[string][2]int{}
	for _, tn := range st.Tenants {
		per[tn.ID] = [2]int{tn.Connections, tn.Subscriptions}
	}
	if per[acme.TenantID] != [2]int{2, 3} || per[globex.TenantID] != [2]int{1, 1} {
		t.Errorf("per tenant %v", per)
	}
	if age := time.Since(st.GeneratedAt); age > 2*time.Second {
		t.Errorf("stats are %s old", age)
	}

	var one struct {
		ID    string `json:"id"`
		Usage struct{ Connections int }
	}
	b.admin(t, "GET", "/tenants/"+acme.TenantID, nil).want(t, 200).decode(t, &one)
	if one.ID != acme.TenantID || one.Usage.Connections != 2 {
		t.Errorf("tenant view %+v", one)
	}
	b.admin(t, "GET", "/tenants/tn_nope", nil).want(t, 404, "not_found")

	var sessions struct {
		Sessions []struct {
			ID, Sub  string
			NodeID   string `json:"node_id"`
			Channels []string
		}
	}
	b.admin(t, "GET", "/tenants/"+acme.TenantID+"/sessions", nil).want(t, 200).decode(t, &sessions)
	nodes := map[string]bool{}
	for _, s := range sessions.Sessions {
		nodes[s.NodeID] = true
	}
	if len(sessions.Sessions) != 2 || len(nodes) != 2 {
		t.Errorf("sessions %+v: want 2 on 2 nodes", sessions.Sessions)
	}
}

func TestAdminStatsStreamTicksEverySecond(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil, nil)
	req, _ := http.NewRequest("GET", n.URL+"/admin/api/stats/stream", nil)
	req.Header.Set("Authorization", "Bearer "+testAdminToken)
	resp, err := testClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	st := sseclient.NewStream(resp)
	defer st.Close()
	var times []time.Time
	for len(times) < 4 {
		ev, err := st.NextEvent()
		if err != nil {
			t.Fatal(err)
		}
		if ev.Event != "stats" {
			continue
		}
		var v statsView
		if err := json.Unmarshal([]byte(ev.Data), &v); err != nil || v.GeneratedAt.IsZero() {
			t.Fatalf("stats event %s: %v", ev.Data, err)
		}
		times = append(times, time.Now())
	}
	// About once a second: three intervals between 2 and 5 s in all (no timing is asserted
	// tighter than what a loaded machine can keep).
	if span := times[3].Sub(times[0]); span < 2*time.Second || span > 5*time.Second {
		t.Errorf("4 stats events over %s, want about 3 s", span)
	}
}

func TestAdminPatchLimitsSuspendAndEvict(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil, nil)
	acme := n.signup(t, "Acme")
	tok := n.token(t, acme, "u", []string{"*"}, 0)
	s1 := n.openStream(t, tok, "x")

	// Limits: the change applies to new connections within 2 s.
	var got struct {
		Limits struct {
			MaxConnections int `json:"max_connections"`
			MaxSubs        int `json:"max_subscriptions_per_session"`
		}
	}
	n.admin(t, "PATCH", "/tenants/"+acme.TenantID, map[string]any{"limits": map[string]int{"max_connections": 1, "max_subscriptions_per_session": 1}}).want(t, 200).decode(t, &got)
	if got.Limits.MaxConnections != 1 || got.Limits.MaxSubs != 1 {
		t.Fatalf("patched limits %+v", got.Limits)
	}
	waitFor(t, 3*time.Second, "the new cap to refuse a second stream", func() bool {
		return n.do(t, call{method: "GET", path: "/v1/stream?channel=x&token=" + tok}).Status == 403
	})
	n.admin(t, "PATCH", "/tenants/"+acme.TenantID, map[string]any{"limits": map[string]int{"max_connections": 0}}).want(t, 400, "invalid_request")
	n.admin(t, "PATCH", "/tenants/"+acme.TenantID, map[string]any{"limits": map[string]int{"max_connections": 5}}).want(t, 200)
	n.admin(t, "PATCH", "/tenants/"+acme.TenantID, map[string]any{"colour": "red"}).want(t, 400, "invalid_request")
	n.admin(t, "PATCH", "/tenants/tn_nope", map[string]any{"suspended": true}).want(t, 404, "not_found")

	// Eviction: disconnect with reconnect false; the session cannot be resumed.
	s2 := n.openStream(t, tok, "x")
	n.admin(t, "DELETE", "/sessions/"+s2.connected.SessionID, nil).want(t, 204)
	ev := s2.next(5 * time.Second)
	var d struct {
		Reason    string
		Reconnect bool
	}
	if ev.Event != "disconnect" || json.Unmarshal([]byte(ev.Data), &d) != nil || d.Reconnect {
		t.Fatalf("evicted stream got %s %s", ev.Event, ev.Data)
	}
	n.admin(t, "DELETE", "/sessions/"+s2.connected.SessionID, nil).want(t, 404, "not_found")

	// Suspension: every stream gets disconnect, keys and tokens are refused.
	n.admin(t, "PATCH", "/tenants/"+acme.TenantID, map[string]any{"suspended": true}).want(t, 200)
	ev = s1.next(5 * time.Second)
	if ev.Event != "disconnect" || json.Unmarshal([]byte(ev.Data), &d) != nil || d.Reconnect {
		t.Fatalf("suspended tenant's stream got %s %s", ev.Event, ev.Data)
	}
	n.do(t, call{method: "GET", path: "/v1/tenant", auth: acme.APIKey}).want(t, 403, "forbidden")
	n.do(t, call{method: "GET", path: "/v1/stream?channel=x&token=" + tok}).want(t, 401, "unauthorized")
	n.admin(t, "PATCH", "/tenants/"+acme.TenantID, map[string]any{"suspended": false}).want(t, 200)
	waitFor(t, 3*time.Second, "the key to work again", func() bool {
		return n.do(t, call{method: "GET", path: "/v1/tenant", auth: acme.APIKey}).Status == 200
	})
}
