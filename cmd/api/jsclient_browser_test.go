package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/streamgate/streamgate/internal/redistest"
)

// jsClientPage is a tenant's page on its own origin: it imports the JavaScript client from the
// node (cross-origin, as a tenant's page does) and gets end-user tokens from its own backend.
const jsClientPage = `<!doctype html>
<meta charset="utf-8">
<title>tenant page</title>
<link rel="icon" href="data:,">
<script type="module">
import * as sg from "%s/client/index.js";
window.sg = sg;
window.token = async (ttl) => {
  const r = await fetch("/token?ttl=" + ttl);
  if (!r.ok) throw new Error("token: HTTP " + r.status);
  return (await r.json()).token;
};
window.runs = {};
window.pageReady = true;
</script>`

// startJSClient connects a client on the page over the given transport and records what it
// sees under runs[name]. firstTTL is the lifetime of the first token; later ones last an hour.
const startJSClient = `(async ({name, transport, url, channels, firstTTL}) => {
  const st = window.runs[name] = {messages: [], connected: [], expiring: 0, authFailed: 0, errors: [], tokens: 0, job: null};
  const client = sg.connect({
    url, channels, transport,
    getToken: () => window.token(st.tokens++ === 0 ? firstTTL : 3600),
    backoff: {base: 50, cap: 500},
  });
  st.client = client;
  client.on("message", (m) => st.messages.push(m.channel + "=" + JSON.stringify(m.data)));
  client.on("connected", (d) => st.connected.push(d.session_id));
  client.on("token_expiring", () => st.expiring++);
  client.on("auth_failed", () => st.authFailed++);
  client.on("error", (e) => st.errors.push(String((e && e.message) || e)));
  return await client.ready();
})`

// TestJSClientInBrowser runs the JavaScript client in headless Chromium against a real node,
// over the browser's own EventSource and over the fetch reader: typed messages, the sessions
// API, resume after the network drops, watchJob, and token refresh without reconnecting.
func TestJSClientInBrowser(t *testing.T) {
	t.Parallel()
	browserPath := findChromium()
	if browserPath == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("no chromium binary found (looked for chromium, chromium-browser, google-chrome); .ci/run installs it")
		}
		t.Skip("no chromium binary found; install Debian's chromium to run the browser test")
	}
	// token_expiring 2 s before expiry, so that a 4 s token is refreshed quickly.
	rs := redistest.Start(t)
	n := startNode(t, rs, map[string]string{"STREAMGATE_TOKEN_WARNING": "2s"})
	startWorker(t, rs, "w1") // applies the job updates
	a := n.signup(t, "Acme")
	proxy := startCutProxy(t, strings.TrimPrefix(n.URL, "http://"))

	// The tenant's backend: the page and a token route, on another origin than the node.
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, jsClientPage, n.URL)
	})
	mux.HandleFunc("GET /token", func(w http.ResponseWriter, r *http.Request) {
		ttl, err := strconv.Atoi(r.URL.Query().Get("ttl"))
		if err != nil {
			http.Error(w, "ttl", http.StatusBadRequest)
			return
		}
		tok, err := mintToken(r.Context(), n, a, "alice", []string{"chat.*", "job:*"}, ttl)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]string{"token": tok})
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	site := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go site.Serve(ln)
	t.Cleanup(func() { site.Close() })

	b := newBrowser(t, browserPath)
	b.do("open the tenant's page", chromedp.Navigate("http://"+ln.Addr().String()+"/"))
	b.waitJS("the client module to load", 15*time.Second, `window.pageReady === true`)

	// eval runs an expression in the page, awaiting a promise, and gives the string it yields
	// ("" for anything else).
	eval := func(what, expr string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
		defer cancel()
		res, err := chromedp.Run(ctx, chromedp.Evaluate[any](expr, chromedp.EvalAwaitPromise))
		if err != nil {
			b.fail("%s: %v", what, err)
		}
		s, _ := res.(string)
		return s
	}
	start := func(name, transport, url string, firstTTL int, channels ...string) string {
		t.Helper()
		arg, _ := json.Marshal(map[string]any{"name": name, "transport": transport, "url": url, "channels": channels, "firstTTL": firstTTL})
		sid := eval("connect "+name, startJSClient+"("+string(arg)+")")
		if !strings.HasPrefix(sid, "ses_") {
			t.Fatalf("%s: ready() gave %q, want a session id", name, sid)
		}
		return sid
	}
	state := func(name, expr string) string {
		t.Helper()
		return eval("read "+name, fmt.Sprintf(`(() => { const st = window.runs[%q]; return JSON.stringify(%s); })()`, name, expr))
	}
	publish := func(channel string, data any) { n.publish(t, a, channel, data) }

	transports := []string{"eventsource", "fetch"}
	sessions := map[string]string{}
	for _, tr := range transports {
		// Through the proxy, which can take the network away; the refresh clients go direct.
		sessions[tr] = start(tr, tr, proxy.URL(), 3600, "chat.lobby-"+tr)
		start("refresh-"+tr, tr, n.URL, 4, "chat.refresh-"+tr)
	}

	// Typed messages, on the channels asked for.
	for _, tr := range transports {
		publish("chat.lobby-"+tr, map[string]string{"text": "hello"})
	}
	for _, tr := range transports {
		b.waitJS(tr+": the first message", 15*time.Second, fmt.Sprintf(`runs[%q].messages.length === 1`, tr))
		if got, want := state(tr, "st.messages"), fmt.Sprintf(`["chat.lobby-%s={\"text\":\"hello\"}"]`, tr); got != want {
			t.Errorf("%s: messages %s, want %s", tr, got, want)
		}
	}

	// A channel added through the sessions API.
	for _, tr := range transports {
		eval(tr+": subscribe", fmt.Sprintf(`runs[%q].client.subscribe("chat.more-%s").then(() => "")`, tr, tr))
		publish("chat.more-"+tr, "more")
	}
	for _, tr := range transports {
		b.waitJS(tr+": the message on the added channel", 15*time.Second, fmt.Sprintf(`runs[%q].messages.length === 2`, tr))
	}

	// The network goes away; what is published meanwhile arrives after it comes back, in order,
	// on the same session with both channels.
	proxy.pause()
	for _, tr := range transports {
		publish("chat.lobby-"+tr, 2)
		publish("chat.more-"+tr, 3)
	}
	time.Sleep(500 * time.Millisecond) // reconnects fail meanwhile
	proxy.resume()
	for _, tr := range transports {
		b.waitJS(tr+": the missed messages after the drop", 30*time.Second, fmt.Sprintf(`runs[%q].messages.length === 4`, tr))
		want := fmt.Sprintf(`["chat.lobby-%[1]s={\"text\":\"hello\"}","chat.more-%[1]s=\"more\"","chat.lobby-%[1]s=2","chat.more-%[1]s=3"]`, tr)
		if got := state(tr, "st.messages"); got != want {
			t.Errorf("%s: messages %s, want %s", tr, got, want)
		}
		var connected []string
		if err := json.Unmarshal([]byte(state(tr, "st.connected")), &connected); err != nil {
			t.Fatal(err)
		}
		if len(connected) < 2 {
			t.Errorf("%s: connected %v, want a reconnection", tr, connected)
		}
		for _, sid := range connected {
			if sid != sessions[tr] {
				t.Errorf("%s: connected to session %s, want %s resumed", tr, sid, sessions[tr])
			}
		}
	}

	// watchJob resolves with the terminal state.
	for _, tr := range transports {
		eval(tr+": watch a job", fmt.Sprintf(`(() => { const st = runs[%q]; st.client.watchJob("render-%s").then((j) => { st.job = j; }, (e) => { st.job = {status: "rejected: " + e.message}; }); return ""; })()`, tr, tr))
	}
	for _, tr := range transports {
		n.do(t, call{method: "PUT", path: "/v1/jobs/render-" + tr, auth: a.APIKey, body: map[string]any{"status": "running", "progress": 50}}).want(t, 202)
		n.do(t, call{method: "PUT", path: "/v1/jobs/render-" + tr, auth: a.APIKey, body: map[string]any{"status": "succeeded", "progress": 100, "output": map[string]string{"url": "x"}}}).want(t, 202)
	}
	for _, tr := range transports {
		b.waitJS(tr+": watchJob to resolve", 20*time.Second, fmt.Sprintf(`runs[%q].job !== null`, tr))
		if got := state(tr, "{status: st.job.status, output: st.job.output}"); got != `{"status":"succeeded","output":{"url":"x"}}` {
			t.Errorf("%s: watchJob resolved with %s", tr, got)
		}
	}

	// Token refresh: token_expiring came for the 4 s tokens, a new token was fetched and handed
	// to the session; past the first token's expiry the stream lives on without reconnecting.
	for _, tr := range transports {
		b.waitJS(tr+": token_expiring and a second token", 20*time.Second, fmt.Sprintf(`runs["refresh-%s"].expiring >= 1 && runs["refresh-%s"].tokens === 2`, tr, tr))
	}
	time.Sleep(7 * time.Second) // past the first token's expiry and the server's check of it
	for _, tr := range transports {
		publish("chat.refresh-"+tr, "still here")
	}
	for _, tr := range transports {
		name := "refresh-" + tr
		b.waitJS(name+": a message after the first token expired", 15*time.Second, fmt.Sprintf(`runs[%q].messages.length === 1`, name))
		if got := state(name, "{connected: st.connected.length, authFailed: st.authFailed, errors: st.errors}"); got != `{"connected":1,"authFailed":0,"errors":[]}` {
			t.Errorf("%s: %s, want one connection, no auth_failed, no error", name, got)
		}
	}
	eval("close the clients", `(() => { for (const st of Object.values(runs)) st.client.close(); return ""; })()`)

	// The network failures the drop causes are the browser's own log entries; anything else
	// written to the console is a defect of the client.
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, p := range b.problems {
		if !strings.HasPrefix(p, "log network:") {
			t.Errorf("browser console: %s", p)
		}
	}
}

// mintToken asks the node for an end-user token; unlike node.token it reports failure as an
// error, for use outside the test's goroutine.
func mintToken(ctx context.Context, n *node, a account, sub string, channels []string, ttl int) (string, error) {
	body, _ := json.Marshal(map[string]any{"sub": sub, "channels": channels, "ttl_seconds": ttl})
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.URL+"/v1/tokens", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", "Bearer "+a.APIKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := testClient.Do(req) // bounded by ctx and by the client's own timeout
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated {
		return "", fmt.Errorf("POST /v1/tokens: %d %s", resp.StatusCode, raw)
	}
	var out struct{ Token string }
	return out.Token, json.Unmarshal(raw, &out)
}

// cutProxy forwards TCP to a node and can take the network away: pause closes every connection
// and refuses new ones until resume.
type cutProxy struct {
	ln     net.Listener
	target string

	mu     sync.Mutex
	paused bool
	conns  map[net.Conn]struct{}
}

func startCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	go p.serve()
	t.Cleanup(func() {
		ln.Close()
		p.pause()
	})
	return p
}

func (p *cutProxy) URL() string { return "http://" + p.ln.Addr().String() }

func (p *cutProxy) serve() {
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.forward(in)
	}
}

func (p *cutProxy) forward(in net.Conn) {
	p.mu.Lock()
	paused := p.paused
	p.mu.Unlock()
	if paused {
		in.Close()
		return
	}
	out, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		in.Close()
		return
	}
	p.mu.Lock()
	if p.paused {
		p.mu.Unlock()
		in.Close()
		out.Close()
		return
	}
	p.conns[in], p.conns[out] = struct{}{}, struct{}{}
	p.mu.Unlock()
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		io.Copy(dst, src)
		done <- struct{}{}
	}
	go pipe(out, in)
	go pipe(in, out)
	<-done
	in.Close()
	out.Close()
	<-done
	p.mu.Lock()
	delete(p.conns, in)
	delete(p.conns, out)
	p.mu.Unlock()
}

func (p *cutProxy) pause() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.paused = true
	for c := range p.conns {
		c.Close()
	}
}

func (p *cutProxy) resume() {
	p.mu.Lock()
	p.paused = false
	p.mu.Unlock()
}
