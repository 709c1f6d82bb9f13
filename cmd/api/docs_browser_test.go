package main

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestDocsPageInBrowser opens the API reference in a real headless Chromium: the vendored
// renderer must draw the node's OpenAPI document, load nothing from another origin, and write
// no error to the console (a request its policy refused would be one).
func TestDocsPageInBrowser(t *testing.T) {
	t.Parallel()
	browserPath := findChromium()
	if browserPath == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("no chromium binary found (looked for chromium, chromium-browser, google-chrome); .ci/run installs it")
		}
		t.Skip("no chromium binary found; install Debian's chromium to run the reference page's test")
	}
	n := startNode(t, nil, nil)
	b := newBrowser(t, browserPath)
	b.do("open the reference", chromedp.Navigate(n.URL+"/docs"))
	b.waitJS("the document rendered", 30*time.Second,
		`document.body.innerText.includes("Streamgate API") && document.body.innerText.includes("Sign a tenant up") && document.body.innerText.includes("Webhooks") && document.body.innerText.includes("Admin")`)
	b.screenshot("api-reference.png", 1280, 900)

	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	foreign, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](
		`performance.getEntriesByType("resource").map(e => e.name).filter(u => !u.startsWith(location.origin + "/"))`))
	if err != nil {
		t.Fatal(err)
	}
	if len(foreign) > 0 {
		t.Errorf("the reference loaded from other origins: %q", foreign)
	}
	b.checkConsole()
}
