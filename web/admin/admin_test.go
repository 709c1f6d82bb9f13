package admin

import (
	"context"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

var (
	importRe = regexp.MustCompile(`(?m)^\s*import\s+(?:[^"';]*?\s+from\s+)?"([^"]+)"`)
	assetRe  = regexp.MustCompile(`(?:src|href)="/admin/(assets/[^"]+)"`)
)

// modules lists the embedded JavaScript modules of the dashboard, vendored ones aside.
func modules(t *testing.T) []string {
	t.Helper()
	var out []string
	err := fs.WalkDir(Files, "assets", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".js") && !strings.HasPrefix(p, "assets/vendor/") {
			out = append(out, p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestEveryReferenceIsEmbedded checks that what the page and its modules load is in the binary:
// a module left out of the embed patterns would only show as a broken page.
func TestEveryReferenceIsEmbedded(t *testing.T) {
	t.Parallel()
	page, err := Files.ReadFile("index.html")
	if err != nil {
		t.Fatal(err)
	}
	refs := assetRe.FindAllStringSubmatch(string(page), -1)
	if len(refs) == 0 {
		t.Fatal("index.html references no asset")
	}
	for _, m := range refs {
		if _, err := fs.Stat(Files, m[1]); err != nil {
			t.Errorf("index.html loads %s, which is not embedded", m[1])
		}
	}
	for _, mod := range modules(t) {
		src, err := Files.ReadFile(mod)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range importRe.FindAllStringSubmatch(string(src), -1) {
			if !strings.HasPrefix(m[1], "./") && !strings.HasPrefix(m[1], "../") {
				t.Errorf("%s imports %q: the dashboard loads only its own files", mod, m[1])
				continue
			}
			if target := path.Join(path.Dir(mod), m[1]); !strings.HasPrefix(target, "assets/") {
				t.Errorf("%s imports %s, outside assets/", mod, target)
			} else if _, err := fs.Stat(Files, target); err != nil {
				t.Errorf("%s imports %s, which is not embedded", mod, target)
			}
		}
	}
}

// TestModulesDoNothingWhenImported imports every module but the entry, main.js, where there is
// no document: a module that looked up an element or started a timer at import fails here. It
// needs Node.js.
func TestModulesDoNothingWhenImported(t *testing.T) {
	t.Parallel()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node not found: install Node.js to check the dashboard's modules")
	}
	dir := t.TempDir()
	if err := os.CopyFS(dir, Files); err != nil {
		t.Fatal(err)
	}
	// Each module is imported on its own; the script prints those that fail or leave a timer
	// running (themselves or through a module they are the first to import), one a line.
	const script = `const timers = () => process.getActiveResourcesInfo().filter((r) => r === "Timeout" || r === "Immediate").length;
for (const m of process.argv.slice(1)) {
  const before = timers();
  try { await import(m); } catch (e) { console.log(m + ": " + e); continue; }
  if (timers() > before) console.log(m + ": leaves a timer running");
}
process.exit(0);`
	importFailures := func(mods ...string) string {
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		args := []string{"--input-type=module", "-e", script, "--"}
		for _, m := range mods {
			args = append(args, "file://"+filepath.ToSlash(filepath.Join(dir, m)))
		}
		out, err := exec.CommandContext(ctx, node, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("node: %v\n%s", err, out)
		}
		return strings.TrimSpace(string(out))
	}
	var mods []string
	for _, m := range modules(t) {
		if m != "assets/main.js" {
			mods = append(mods, m)
		}
	}
	if out := importFailures(mods...); out != "" {
		t.Errorf("modules that do something when imported:\n%s", out)
	}
	// The entry does touch the page: the check can tell.
	if importFailures("assets/main.js") == "" {
		t.Error("main.js imported without a document; the check cannot see side effects")
	}
}
