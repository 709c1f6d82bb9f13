package main

import (
	"context"
	"encoding/json"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/streamgate/streamgate/internal/redistest"
)

// conformanceCase is one case of Mercure's own conformance suite (conformance-tests in the
// reference hub's repository), run as it runs it: in a page of the hub's host, with the
// browser's EventSource and fetch.
type conformanceCase struct {
	Name           string   `json:"name"`
	UpdateTopics   []string `json:"updateTopics"`
	TopicSelectors []string `json:"topicSelectors"`
	MustBeReceived bool     `json:"mustBeReceived"`
	Private        bool     `json:"private"`
	UpdateID       string   `json:"updateID"`
}

// conformanceJS runs one case in the page: subscribe, wait until open, publish with the
// conformance suite's token, and report whether the update arrived within 2 s (the suite's own
// wait for updates that must not arrive) and what the publish answered.
const conformanceJS = `async (data) => {
  const received = new Promise((resolve) => {
    const url = new URL("/.well-known/mercure", window.origin);
    data.topicSelectors.forEach((s) => url.searchParams.append("topic", s));
    const es = new EventSource(url);
    window.__open = new Promise((ready) => { es.onopen = ready; });
    es.onmessage = (e) => {
      if (e.type === "message" && e.lastEventId === data.updateID && e.data === "data for\n\n" + data.name) {
        es.close();
        resolve(true);
      }
    };
    setTimeout(() => { es.close(); resolve(false); }, 2000 + 10000 * data.mustBeReceived);
  });
  await window.__open;
  const event = new URLSearchParams();
  data.updateTopics.forEach((t) => event.append("topic", t));
  event.set("id", data.updateID);
  event.set("data", "data for\n\n" + data.name);
  if (data.private) event.set("private", "on");
  const resp = await fetch("/.well-known/mercure", {method: "POST", body: event, headers: {
    Authorization: "Bearer eyJhbGciOiJIUzI1NiJ9.eyJtZXJjdXJlIjp7InB1Ymxpc2giOlsiKiJdLCJzdWJzY3JpYmUiOlsiKiJdfX0.bVXdlWXwfw9ySx7-iV5OpUSHo34RkjUdVzDLBcc6l_g"}});
  const body = await resp.text();
  return {received: await received, status: resp.status, contentType: resp.headers.get("Content-Type"), body};
}`

type conformanceResult struct {
	Received    bool   `json:"received"`
	Status      int    `json:"status"`
	ContentType string `json:"contentType"`
	Body        string `json:"body"`
}

// TestMercureInBrowser runs Mercure's conformance expectations in headless Chromium against a
// tenant's own host (acme.localhost: Chromium resolves *.localhost to loopback), then the cookie
// path for private updates, then an EventSource that reconnects, by itself, to another node and
// resumes with Last-Event-ID.
func TestMercureInBrowser(t *testing.T) {
	browserPath := findChromium()
	if browserPath == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("no chromium binary found (looked for chromium, chromium-browser, google-chrome); .ci/run installs it")
		}
		t.Skip("no chromium binary found; install Debian's chromium to run the browser test")
	}
	rs := redistest.Start(t)
	n1 := startNode(t, rs, nil)
	n2 := startNode(t, rs, nil)
	a := n1.signup(t, "Acme")
	n1.mercureHub(t, a, map[string]any{"anonymous": true, "hosts": []string{"acme.localhost"}})

	// The page's origin is a proxy in front of the nodes, as a load balancer would be: it keeps
	// the Host, streams, and sends new connections to whichever node is current.
	var target atomic.Pointer[url.URL]
	u1, _ := url.Parse(n1.URL)
	u2, _ := url.Parse(n2.URL)
	target.Store(u1)
	proxy := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target.Load())
			r.Out.Host = r.In.Host
		},
		FlushInterval: -1,
		ErrorLog:      log.New(io.Discard, "", 0), // streams the test ends on purpose
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: proxy, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	origin := "http://acme.localhost:" + strings.TrimPrefix(ln.Addr().String(), "127.0.0.1:")

	b := newBrowser(t, browserPath)
	b.do("open the tenant's host", chromedp.Navigate(origin+"/"))
	run := func(c conformanceCase) conformanceResult {
		t.Helper()
		arg, _ := json.Marshal(c)
		ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
		defer cancel()
		res, err := chromedp.Run(ctx, chromedp.Evaluate[conformanceResult]("("+conformanceJS+")("+string(arg)+")", chromedp.EvalAwaitPromise))
		if err != nil {
			b.fail("%s: %v", c.Name, err)
		}
		return res
	}

	r := make([]string, 6)
	for i := range r {
		r[i] = strings.Repeat(string(rune('a'+i)), 8) + time.Now().Format("150405.000000")
	}
	cases := []conformanceCase{
		{Name: "raw string", MustBeReceived: true, UpdateTopics: []string{r[0]}, TopicSelectors: []string{r[0]}},
		{Name: "multiple topics", MustBeReceived: true, UpdateTopics: []string{"other-" + r[1], r[1]}, TopicSelectors: []string{r[1]}},
		{Name: "multiple topic selectors", MustBeReceived: true, UpdateTopics: []string{r[2]}, TopicSelectors: []string{"foo", r[2]}},
		{Name: "URI", MustBeReceived: true, UpdateTopics: []string{"https://example.net/foo/" + r[3]}, TopicSelectors: []string{"https://example.net/foo/" + r[3]}},
		{Name: "URI template", MustBeReceived: true, UpdateTopics: []string{"https://example.net/foo/" + r[4]}, TopicSelectors: []string{"https://example.net/foo/{random}"}},
		{Name: "nonmatching raw string", UpdateTopics: []string{"will-not-match}"}, TopicSelectors: []string{"another-name"}},
		{Name: "nonmatching URI", UpdateTopics: []string{"https://example.net/foo/will-not-match}"}, TopicSelectors: []string{"https://example.net/foo/another-name"}},
		{Name: "nonmatching URI template", UpdateTopics: []string{"https://example.net/foo/will-not-match}"}, TopicSelectors: []string{"https://example.net/bar/{var}"}},
		{Name: "private raw string", Private: true, UpdateTopics: []string{r[0]}, TopicSelectors: []string{r[0]}},
		{Name: "private URI", Private: true, UpdateTopics: []string{"https://example.net/foo/" + r[3]}, TopicSelectors: []string{"https://example.net/foo/" + r[3]}},
		{Name: "private URI template", Private: true, UpdateTopics: []string{"https://example.net/foo/" + r[4]}, TopicSelectors: []string{"https://example.net/foo/{random}"}},
	}
	for _, c := range cases {
		topicsJSON, _ := json.Marshal(c.UpdateTopics)
		c.UpdateID = "id-" + string(topicsJSON)
		got := run(c)
		if got.Received != c.MustBeReceived {
			t.Errorf("%s: received %v, want %v", c.Name, got.Received, c.MustBeReceived)
		}
		if got.Status != 200 || !strings.HasPrefix(got.ContentType, "text/plain") || got.Body != c.UpdateID {
			t.Errorf("%s: publish answered %d %q %q, want 200 text/plain with the given id", c.Name, got.Status, got.ContentType, got.Body)
		}
	}

	// The cookie path: with the conformance token (mercure.subscribe ["*"]) in the
	// mercureAuthorization cookie, the page's EventSource receives private updates.
	n1.mercureHub(t, a, map[string]any{"anonymous": true, "hosts": []string{"acme.localhost"}, "subscriber_jwt_key": mercurePublisherKey})
	// The proxy sends the page to the first node, which made the change: it applies it at once.
	b.do("set the cookie", chromedp.Evaluate[chromedp.Void](`document.cookie = "mercureAuthorization=eyJhbGciOiJIUzI1NiJ9.eyJtZXJjdXJlIjp7InB1Ymxpc2giOlsiKiJdLCJzdWJzY3JpYmUiOlsiKiJdfX0.bVXdlWXwfw9ySx7-iV5OpUSHo34RkjUdVzDLBcc6l_g; path=/"`))
	private := conformanceCase{Name: "private with the cookie", MustBeReceived: true, Private: true, UpdateTopics: []string{r[5]}, TopicSelectors: []string{r[5]}, UpdateID: "cookie-" + r[5]}
	if got := run(private); !got.Received || got.Status != 200 {
		t.Errorf("private update with the cookie: %+v", got)
	}
	b.do("clear the cookie", chromedp.Evaluate[chromedp.Void](`document.cookie = "mercureAuthorization=; path=/; max-age=0"`))

	// Resume on another node: the stream on the first node ends, the load balancer now sends
	// new connections to the second, and EventSource reconnects there by itself with the last
	// id it saw; what was published meanwhile arrives, in order.
	b.do("subscribe", chromedp.Evaluate[chromedp.Void](`(() => {
		window.__got = [];
		window.__opens = 0;
		const es = new EventSource("/.well-known/mercure?topic=" + encodeURIComponent("https://example.net/resume/{id}"));
		es.onopen = () => { window.__opens++; };
		es.onmessage = (e) => { window.__got.push(e.lastEventId + "=" + e.data); };
	})()`))
	b.waitJS("the stream to open", 10*time.Second, `window.__opens === 1`)
	pub := publisherJWT(t, "*")
	n1.mercurePublish(t, "/mercure/"+a.TenantID+mercurePathForTest, pub, url.Values{"topic": {"https://example.net/resume/1"}, "id": {"r1"}, "data": {"one"}})
	b.waitJS("the first update", 10*time.Second, `window.__got.join() === "r1=one"`)
	target.Store(u2)
	var sessions struct {
		Sessions []struct {
			ID     string `json:"id"`
			NodeID string `json:"node_id"`
		} `json:"sessions"`
	}
	n1.do(t, call{method: "GET", path: "/admin/api/tenants/" + a.TenantID + "/sessions", auth: testAdminToken}).want(t, 200).decode(t, &sessions)
	if len(sessions.Sessions) != 1 {
		t.Fatalf("sessions %+v, want the page's one", sessions)
	}
	first := sessions.Sessions[0].NodeID
	n1.do(t, call{method: "DELETE", path: "/admin/api/sessions/" + sessions.Sessions[0].ID, auth: testAdminToken}).want(t, 204)
	n1.mercurePublish(t, "/mercure/"+a.TenantID+mercurePathForTest, pub, url.Values{"topic": {"https://example.net/resume/2"}, "id": {"r2"}, "data": {"two"}})
	b.waitJS("the reconnect and the missed update", 20*time.Second, `window.__opens === 2 && window.__got.join() === "r1=one,r2=two"`)
	n1.do(t, call{method: "GET", path: "/admin/api/tenants/" + a.TenantID + "/sessions", auth: testAdminToken}).want(t, 200).decode(t, &sessions)
	if len(sessions.Sessions) != 1 || sessions.Sessions[0].NodeID == first {
		t.Errorf("after the reconnect the sessions are %+v, want one on the second node", sessions.Sessions)
	}
}
