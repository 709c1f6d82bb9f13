package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// TestAdminDashboardInBrowser drives the operator dashboard in a real headless Chromium, as an
// operator would: sign in, watch connections arrive live, see a tenant's presence and failing
// webhook, change a limit, evict a session. The page must write no error to the browser console
// on the way.
func TestAdminDashboardInBrowser(t *testing.T) {
	t.Parallel()
	browserPath := findChromium()
	if browserPath == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("no chromium binary found (looked for chromium, chromium-browser, google-chrome); .ci/run installs it")
		}
		t.Skip("no chromium binary found; install Debian's chromium to run the dashboard test")
	}

	n := startNode(t, nil, map[string]string{"STREAMGATE_ALLOW_PRIVATE_URLS": "true"})
	startWorker(t, n.Redis, "w1", "STREAMGATE_SECRET_KEY="+testSecretKey, "STREAMGATE_ALLOW_PRIVATE_URLS=true")
	acme := n.signup(t, "Acme")
	globex := n.signup(t, "Globex")

	b := newBrowser(t, browserPath)
	b.do("open the dashboard", chromedp.Navigate(n.URL+"/admin/"))

	// Sign in with the admin token; the totals fill in from the first stats.
	b.do("wait for the sign-in form", chromedp.WaitVisible(chromedp.ID("login-token")))
	b.screenshot("admin-login.png", 1280, 900)
	b.do("sign in",
		chromedp.SendKeys(chromedp.ID("login-token"), testAdminToken),
		chromedp.Click(chromedp.ID("login-submit")),
		chromedp.WaitVisible(chromedp.ID("view-overview")),
	)
	b.waitJS("the totals and the live indicator", 15*time.Second,
		`document.querySelector('[data-total="tenants"]').textContent === "2" && document.getElementById("live").dataset.state === "live"`)
	if got := b.text(`[data-total="connections"]`); got != "0" {
		t.Fatalf("connections shown before any stream: %q, want 0", got)
	}

	// Streams opened through the API show up without a reload: the marker set on this
	// document must still be there when the count reaches 3.
	b.do("mark the document", chromedp.Evaluate[chromedp.Void](`window.__sameDocument = true`))
	tokA := n.token(t, acme, "alice", []string{"chat.*"}, 0)
	first := n.openStream(t, tokA, "chat.lobby")
	second := n.openStream(t, n.token(t, acme, "bob", []string{"chat.*"}, 0), "chat.lobby", "chat.ops")
	n.openStream(t, n.token(t, globex, "carol", []string{"news"}, 0), "news")
	b.waitJS("3 connections on the page", 15*time.Second,
		`window.__sameDocument === true && document.querySelector('[data-total="connections"]').textContent === "3"`)
	for range 5 {
		n.publish(t, acme, "chat.lobby", map[string]string{"text": "hello"})
	}
	b.waitJS("a delivery rate above zero", 15*time.Second,
		`parseFloat(document.querySelector('[data-total="delivered_rate"]').textContent) > 0`)
	b.waitJS("the chart", 10*time.Second, `document.querySelector("#chart canvas") !== null`)

	// The tenants table filters by name.
	b.do("filter the tenants", chromedp.SendKeys(chromedp.ID("tenant-filter"), "acm"))
	b.waitJS("only Acme listed", 15*time.Second,
		`document.querySelectorAll("#tenants-table tbody tr").length === 1 && document.querySelector("#tenants-table tbody .name").textContent === "Acme"`)
	b.do("clear the filter", chromedp.Evaluate[chromedp.Void](`(() => { const f = document.getElementById("tenant-filter"); f.value = ""; f.dispatchEvent(new Event("input")); })()`))
	b.waitJS("both tenants listed", 15*time.Second, `document.querySelectorAll("#tenants-table tbody tr").length === 2`)
	b.screenshot("admin-dashboard.png", 1280, 900)
	b.screenshot("admin-dashboard-phone.png", 390, 844)
	b.do("back to laptop width", chromedp.EmulateViewport(1280, 900))

	// Sorting works from the keyboard: Enter on a column's button sorts by it, most first,
	// and Enter again turns the order round.
	connHeader := `#tenants-table th[data-key="connections"]`
	b.do("sort by connections with the keyboard",
		chromedp.Focus(chromedp.CSS(connHeader+" button")),
		chromedp.KeyEvent("\r"),
	)
	b.waitJS("Acme first, most connections", 5*time.Second, `document.querySelector('`+connHeader+`').getAttribute("aria-sort") === "descending" && document.querySelector("#tenants-table tbody .name").textContent === "Acme"`)
	b.do("reverse the order", chromedp.KeyEvent("\r"))
	b.waitJS("Globex first, fewest connections", 5*time.Second, `document.querySelector('`+connHeader+`').getAttribute("aria-sort") === "ascending" && document.querySelector("#tenants-table tbody .name").textContent === "Globex"`)

	// Acme keeps presence on room.*: two more users come, one of them on two rooms. Its
	// webhook endpoint answers 500, and the worker's first attempt of a test event fails.
	keepPresence(t, acme, []string{"room.*"}, n)
	n.openStream(t, n.token(t, acme, "dave", []string{"room.*"}, 0), "room.1")
	n.openStream(t, n.token(t, acme, "erin", []string{"room.*"}, 0), "room.1", "room.2")
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
	}))
	t.Cleanup(failing.Close)
	hookURL := failing.URL + "/hooks"
	var created struct {
		Webhook struct{ ID string } `json:"webhook"`
	}
	n.do(t, call{method: "POST", path: "/v1/webhooks", auth: acme.APIKey,
		body: map[string]any{"url": hookURL, "events": []string{"job.finished"}}}).want(t, 201).decode(t, &created)
	n.do(t, call{method: "POST", path: "/v1/webhooks/" + created.Webhook.ID + "/test", auth: acme.APIKey}).want(t, 202)
	waitFor(t, 30*time.Second, "the failed attempt in the endpoint's history", func() bool {
		var h struct {
			Deliveries []struct{ Status string } `json:"deliveries"`
		}
		n.do(t, call{method: "GET", path: "/v1/webhooks/" + created.Webhook.ID + "/deliveries", auth: acme.APIKey}).want(t, 200).decode(t, &h)
		return len(h.Deliveries) > 0 && h.Deliveries[0].Status == "failed"
	})
	acmeRow := fmt.Sprintf(`#tenants-table tr[data-key="%s"]`, acme.TenantID)
	b.waitJS("Acme's members on the overview", 15*time.Second, `document.querySelector('`+acmeRow+` td[data-col="presence_members"]').textContent === "3" && `+
		`document.querySelector('`+acmeRow+` td[data-col="webhooks_dead"]').textContent === "0"`)

	// Open Acme's page from the table: its sessions, its members per channel, its endpoint and
	// the failed attempt.
	b.do("open the tenant", chromedp.Click(chromedp.CSS(fmt.Sprintf(`#tenants-table a[href="#/tenants/%s"]`, acme.TenantID))))
	b.waitJS("the tenant's form and sessions", 15*time.Second,
		`document.getElementById("tenant-title").textContent === "Acme" && document.getElementById("lim-max_connections").value !== "" && !document.getElementById("lim-max_connections").disabled && document.querySelectorAll("#sessions-table tbody tr").length === 4`)
	b.waitJS("the members per channel", 15*time.Second, `(() => {
		const rows = [...document.querySelectorAll("#presence-table tbody tr")].map((tr) => tr.cells[0].textContent + "=" + tr.cells[1].textContent);
		return rows.join(",") === "room.1=2,room.2=1" && document.getElementById("presence-summary").textContent.startsWith("3 members on 2 channels") &&
			document.querySelector('[data-usage="presence_members"]').textContent === "3";
	})()`)
	b.waitJS("the endpoint and its failure", 15*time.Second, fmt.Sprintf(`(() => {
		const ep = document.querySelector('#webhooks-table tr[data-key="%s"]');
		const f = document.querySelector("#failures-table tbody tr");
		return ep !== null && ep.cells[0].textContent.startsWith(%q) && ep.cells[1].textContent === "Enabled" &&
			ep.cells[3].textContent.includes("500") && ep.cells[4].textContent === "0" &&
			f !== null && f.cells[1].textContent === %q && f.cells[2].textContent === "webhook.test" &&
			f.cells[4].textContent.startsWith("Failed") && f.cells[5].textContent === "500" && f.cells[6].textContent.includes("500");
	})()`, created.Webhook.ID, hookURL, hookURL))
	b.do("change max_connections",
		chromedp.Evaluate[chromedp.Void](`document.getElementById("lim-max_connections").value = ""`),
		chromedp.SendKeys(chromedp.ID("lim-max_connections"), "1234"),
		chromedp.Click(chromedp.ID("limits-save")),
	)
	b.waitJS("the saved notice", 10*time.Second, `document.getElementById("notice").textContent.includes("saved")`)
	var view struct {
		Limits struct {
			MaxConnections int `json:"max_connections"`
		} `json:"limits"`
	}
	n.do(t, call{method: "GET", path: "/admin/api/tenants/" + acme.TenantID, auth: testAdminToken}).want(t, 200).decode(t, &view)
	if view.Limits.MaxConnections != 1234 {
		t.Fatalf("max_connections after the form: %d, want 1234", view.Limits.MaxConnections)
	}

	// Evict the first session from its row, through the confirmation dialog.
	evict := fmt.Sprintf(`#sessions-table button[data-evict="%s"]`, first.connected.SessionID)
	b.do("ask to evict",
		chromedp.Click(chromedp.CSS(evict)),
		chromedp.WaitVisible(chromedp.ID("confirm")),
	)
	b.screenshot("admin-dashboard-evict.png", 1280, 900)
	b.do("confirm the eviction", chromedp.Click(chromedp.ID("confirm-ok")))
	ev := first.next(10 * time.Second)
	for ev.Event == "message" { // the five published above
		ev = first.next(10 * time.Second)
	}
	var d struct {
		Reconnect bool `json:"reconnect"`
	}
	if err := json.Unmarshal([]byte(ev.Data), &d); err != nil || ev.Event != "disconnect" || d.Reconnect {
		t.Fatalf("evicted stream got %s %s, want disconnect with reconnect false", ev.Event, ev.Data)
	}
	b.waitJS("the row gone and the count down", 15*time.Second, fmt.Sprintf(
		`document.querySelector('#sessions-table tr[data-key="%s"]') === null && document.querySelector('[data-usage="connections"]').textContent === "3"`,
		first.connected.SessionID))
	// The tenant's other session stays: it sees its messages and nothing else.
	quiet := time.After(500 * time.Millisecond)
	for done := false; !done; {
		select {
		case ev, ok := <-second.events:
			if !ok || (ev.Event != "" && ev.Event != "message") {
				t.Fatalf("the session left alone got %q %s (open: %v)", ev.Event, ev.Data, ok)
			}
		case <-quiet:
			done = true
		}
	}
	b.screenshot("admin-dashboard-tenant.png", 1280, 900)
	b.screenshot("admin-dashboard-tenant-phone.png", 390, 844)

	// A limit out of its bounds is refused on the page, and Undo brings the saved value back.
	b.do("enter a limit out of bounds",
		chromedp.Evaluate[chromedp.Void](`document.getElementById("lim-max_connections").value = "0"`),
		chromedp.Click(chromedp.ID("limits-save")),
	)
	b.waitJS("the limit refused on the page", 5*time.Second,
		`!document.getElementById("limits-error").hidden && document.getElementById("limits-error").textContent.includes("whole number") && document.getElementById("lim-max_connections").getAttribute("aria-invalid") === "true"`)
	b.do("undo the change", chromedp.Click(chromedp.ID("limits-reset")))
	b.waitJS("the saved limit back", 5*time.Second,
		`document.getElementById("lim-max_connections").value === "1234" && document.getElementById("limits-error").hidden`)

	// Suspending asks first and closes the tenant's sessions; resuming does not ask.
	b.do("ask to suspend", chromedp.Click(chromedp.ID("suspend")), chromedp.WaitVisible(chromedp.ID("confirm")))
	b.do("confirm the suspension", chromedp.Click(chromedp.ID("confirm-ok")))
	b.waitJS("the tenant shown suspended", 10*time.Second,
		`document.getElementById("tenant-status").textContent === "Suspended" && document.getElementById("suspend").textContent === "Resume tenant"`)
	if ev := second.next(10 * time.Second); ev.Event != "disconnect" {
		t.Fatalf("a session of the suspended tenant got %q %s, want disconnect", ev.Event, ev.Data)
	}
	n.do(t, call{method: "GET", path: "/v1/tenant", auth: acme.APIKey}).want(t, 403, "forbidden")
	b.do("resume", chromedp.Click(chromedp.ID("suspend")))
	b.waitJS("the tenant shown active", 10*time.Second,
		`document.getElementById("tenant-status").textContent === "Active" && document.getElementById("notice").textContent.includes("active again")`)
	n.do(t, call{method: "GET", path: "/v1/tenant", auth: acme.APIKey}).want(t, 200)

	b.checkConsole()

	// The live indicator turns stale when the stats stop, and the page reconnects by itself
	// once a node answers again at the same address. (Checked after the console: a browser
	// logs every refused connection as an error, and that is expected here.)
	n.Stop()
	b.waitJS("the stale indicator", 15*time.Second, `document.getElementById("live").dataset.state === "stale"`)
	startNode(t, n.Redis, map[string]string{"STREAMGATE_ADDR": strings.TrimPrefix(n.URL, "http://")})
	b.waitJS("live again after the restart", 30*time.Second, `document.getElementById("live").dataset.state === "live"`)

	// Signing out forgets the token in this tab.
	b.do("sign out", chromedp.Click(chromedp.ID("logout")), chromedp.WaitVisible(chromedp.ID("view-login")))
	b.waitJS("the token forgotten", 5*time.Second,
		`sessionStorage.length === 0 && document.getElementById("session-controls").hidden && document.getElementById("view-overview").hidden`)
}

// findChromium returns the path of a Chromium or Chrome binary, or "" when there is none.
func findChromium() string {
	for _, name := range []string{"/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// browser is one headless Chromium tab with its console watched.
type browser struct {
	t   *testing.T
	ctx context.Context

	mu       sync.Mutex
	problems []string
}

func newBrowser(t *testing.T, path string) *browser {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx)
	// Closing the browser before the node stops keeps the page's stats stream from failing
	// noisily; cleanups run last-registered first, and the node's was registered earlier.
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc()
	})
	b := &browser{t: t, ctx: ctx}
	if err := chromedp.Listen(ctx, b.watch); err != nil {
		t.Fatalf("start chromium %s: %v", path, err)
	}
	b.do("set the viewport", chromedp.EmulateViewport(1280, 900))
	return b
}

// watch records console errors, uncaught exceptions and browser log errors. It runs on the
// tab's reading goroutine, so it only appends under a lock.
func (b *browser) watch(ev any) {
	var problem string
	switch ev := ev.(type) {
	case *runtime.EventConsoleAPICalled:
		if ev.Type == runtime.ConsoleAPICalledTypeError || ev.Type == runtime.ConsoleAPICalledTypeAssert {
			var parts []string
			for _, a := range ev.Args {
				if len(a.Value) > 0 {
					parts = append(parts, string(a.Value))
				} else {
					parts = append(parts, a.Description)
				}
			}
			problem = "console." + string(ev.Type) + ": " + strings.Join(parts, " ")
		}
	case *runtime.EventExceptionThrown:
		d := ev.ExceptionDetails
		problem = "uncaught: " + d.Text
		if d.Exception != nil {
			problem += " " + d.Exception.Description
		}
		problem += fmt.Sprintf(" (%s:%d:%d)", d.URL, d.LineNumber, d.ColumnNumber)
	case *log.EventEntryAdded:
		if ev.Entry.Level == log.EntryLevelError {
			problem = fmt.Sprintf("log %s: %s %s", ev.Entry.Source, ev.Entry.Text, ev.Entry.URL)
		}
	}
	if problem != "" {
		b.mu.Lock()
		b.problems = append(b.problems, problem)
		b.mu.Unlock()
	}
}

func (b *browser) checkConsole() {
	b.t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, p := range b.problems {
		b.t.Errorf("browser console: %s", p)
	}
}

func (b *browser) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.fail("%s: %v", what, err)
	}
}

// waitJS waits until the expression is true in the page.
func (b *browser) waitJS(what string, timeout time.Duration, expr string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, timeout+5*time.Second)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.Poll[bool](expr, chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(timeout)))
	if err != nil {
		b.fail("waiting for %s: %v", what, err)
	}
}

func (b *browser) text(selector string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.TextContent(chromedp.CSS(selector)))
	if err != nil {
		b.fail("read %s: %v", selector, err)
	}
	return strings.TrimSpace(s)
}

// fail ends the test with what the page showed, for a failure that a screenshot explains.
func (b *browser) fail(format string, args ...any) {
	b.t.Helper()
	b.saveScreenshot("admin-dashboard-failure.png")
	b.mu.Lock()
	problems := strings.Join(b.problems, "\n")
	b.mu.Unlock()
	if problems != "" {
		args = append(args, problems)
		format += "\nbrowser console:\n%s"
	}
	b.t.Fatalf(format, args...)
}

// screenshot saves a full-page PNG at the given viewport size.
func (b *browser) screenshot(name string, width, height int64) {
	b.t.Helper()
	b.do("resize to "+name,
		chromedp.EmulateViewport(width, height),
		// From the top, and without the focus ring of the last field typed in, unless a
		// dialog is open: the picture is for people to look at.
		chromedp.Evaluate[chromedp.Void](`window.scrollTo(0, 0); if (!document.querySelector("dialog[open]")) document.activeElement?.blur()`),
	)
	time.Sleep(300 * time.Millisecond) // let the chart follow the new width
	if path, err := b.saveScreenshot(name); err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	} else {
		b.t.Logf("screenshot: %s", path)
	}
}

func (b *browser) saveScreenshot(name string) (string, error) {
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		return "", err
	}
	dir := os.Getenv("STREAMGATE_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "streamgate-artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	path := filepath.Join(dir, name)
	return path, os.WriteFile(path, png, 0o644)
}
