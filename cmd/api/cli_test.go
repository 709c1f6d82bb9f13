package main

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/streamgate/streamgate/internal/redistest"
)

// cli is one command line run through run, as main would, with the exit code main would give.
type cli struct {
	code           int
	err            error
	stdout, stderr string
}

func runCLI(t *testing.T, env map[string]string, args ...string) cli {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	var out, errOut bytes.Buffer
	err := run(ctx, append([]string{"api"}, args...), func(k string) string { return env[k] }, &out, &errOut)
	return cli{code: exitCode(err), err: err, stdout: out.String(), stderr: errOut.String()}
}

func (c cli) want(t *testing.T, code int) cli {
	t.Helper()
	if c.code != code {
		t.Fatalf("exit %d (%v), want %d\nstdout:\n%s\nstderr:\n%s", c.code, c.err, code, c.stdout, c.stderr)
	}
	return c
}

// A help request prints the usage and every variable, and starts nothing: the environment
// here would make a node fail at once.
func TestHelpPrintsUsageAndExitsZero(t *testing.T) {
	t.Parallel()
	broken := map[string]string{"REDIS_URL": "redis://127.0.0.1:1/0", "STREAMGATE_ADDR": "256.0.0.1:1"}
	for _, args := range [][]string{{"--help"}, {"-h"}, {"-help"}, {"help"}} {
		c := runCLI(t, broken, args...).want(t, 0)
		if !strings.Contains(c.stdout, "api token mint") || !strings.Contains(c.stdout, "api config") {
			t.Errorf("%v: usage lacks the commands:\n%s", args, c.stdout)
		}
		for _, v := range envVars {
			if !strings.Contains(c.stdout, v.Name) {
				t.Errorf("%v: usage lacks %s", args, v.Name)
			}
		}
		if c.stderr != "" {
			t.Errorf("%v: stderr %q, want nothing", args, c.stderr)
		}
	}
	// A command's own help.
	for _, args := range [][]string{{"help", "token", "mint"}, {"token", "mint", "-h"}, {"token", "check", "--help"}, {"serve", "-h"}, {"config", "-h"}, {"version", "-h"}, {"token", "-h"}} {
		c := runCLI(t, broken, args...).want(t, 0)
		if !strings.HasPrefix(c.stdout, "Usage: api ") {
			t.Errorf("%v: got %q, want the command's usage", args, c.stdout)
		}
	}
}

func TestUnknownCommandsAndBadFlagsExitTwo(t *testing.T) {
	t.Parallel()
	c := runCLI(t, nil, "frobnicate").want(t, 2)
	if !strings.Contains(c.stderr, "Usage:") || c.stdout != "" {
		t.Errorf("unknown command: want the usage on stderr only, got stdout %q stderr %q", c.stdout, c.stderr)
	}
	if !strings.Contains(c.err.Error(), `unknown command "frobnicate"`) {
		t.Errorf("error %q does not name the command", c.err)
	}
	for _, tc := range []struct {
		args []string
		says string
	}{
		{[]string{"serve", "--port", "1"}, "flag provided but not defined: -port"},
		{[]string{"version", "now"}, `unexpected argument "now"`},
		{[]string{"token"}, "say mint or check"},
		{[]string{"token", "burn"}, `unknown command "burn"`},
		{[]string{"token", "mint", "--sub", "u", "--tenant-key", "sgk_x", "--ttl", "25h"}, "--ttl must be"},
		{[]string{"token", "mint", "--sub", "u", "--tenant-key", "sgk_x", "--ttl", "soon"}, "invalid value"},
		{[]string{"token", "mint", "--sub", "u"}, "give --tenant-key, or --kid and --secret"},
		{[]string{"token", "mint", "--sub", "u", "--kid", "sig_1"}, "--kid and --secret go together"},
		{[]string{"token", "mint", "--sub", "u", "--kid", "sig_1", "--secret", "s", "--tenant-key", "sgk_x"}, "not both"},
		{[]string{"token", "mint", "--tenant-key", "sgk_x"}, "--sub must be"},
		{[]string{"token", "mint", "--sub", "u", "--tenant-key", "sgk_x", "--channel", "bad channel"}, "is not a channel pattern"},
		{[]string{"token", "mint", "--sub", "u", "--tenant-key", "sgk_x", "--url", "localhost:8080"}, "--url must be"},
		{[]string{"token", "check"}, "missing argument"},
		{[]string{"token", "check", "a.b.c", "d.e.f"}, `unexpected argument "d.e.f"`},
		{[]string{"token", "check", "not-a-token"}, "not a JWT"},
		{[]string{"token", "check", "e30.!!!.x"}, "not a JWT"},
	} {
		c := runCLI(t, nil, tc.args...).want(t, 2)
		if msg := c.err.Error(); !strings.Contains(msg, tc.says) || strings.Contains(msg, "\n") {
			t.Errorf("%v: error %q, want one line saying %q", tc.args, msg, tc.says)
		}
	}
}

func TestVersion(t *testing.T) {
	t.Parallel()
	c := runCLI(t, nil, "version").want(t, 0)
	for _, want := range []string{"streamgate api " + version, "commit ", runtime.Version()} {
		if !strings.Contains(c.stdout, want) {
			t.Errorf("version output lacks %q:\n%s", want, c.stdout)
		}
	}
	// The Makefile's build sets the version through the linker, by this variable's name.
	mk, err := os.ReadFile("../../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"-X main.version=$(VERSION)", "-X main.commit=$(COMMIT)", `-ldflags "$(LDFLAGS)"`, "git describe"} {
		if !bytes.Contains(mk, []byte(want)) {
			t.Errorf("the Makefile's build does not set the version from git: it lacks %s", want)
		}
	}
}

func TestConfigShowsEffectiveValuesWithSecretsRedacted(t *testing.T) {
	t.Parallel()
	env := map[string]string{
		"REDIS_URL":                  "redis://app:hunter2-redis@redis.internal:6379/0",
		"STREAMGATE_SECRET_KEY":      testSecretKey,
		"STREAMGATE_ADMIN_TOKEN":     testAdminToken,
		"STREAMGATE_SIGNUP":          "closed",
		"STREAMGATE_DRAIN_DELAY":     "2s",
		"OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer otel-secret",
	}
	c := runCLI(t, env, "config").want(t, 0)
	for _, secret := range []string{"hunter2-redis", testSecretKey, testAdminToken, "otel-secret"} {
		if strings.Contains(c.stdout, secret) {
			t.Errorf("config shows a secret (%s):\n%s", secret, c.stdout)
		}
	}
	rows := map[string][]string{}
	for _, line := range strings.Split(c.stdout, "\n") {
		if f := strings.Fields(line); len(f) >= 3 && !strings.HasPrefix(line, "#") {
			rows[f[0]] = f
		}
	}
	for _, v := range envVars {
		if rows[v.Name] == nil {
			t.Errorf("config lacks %s", v.Name)
		}
	}
	for _, tc := range []struct{ name, value, from string }{
		{"REDIS_URL", "redis://app:xxxxx@redis.internal:6379/0", "environment"},
		{"STREAMGATE_SIGNUP", "closed", "environment"},
		{"STREAMGATE_DRAIN_DELAY", "2s", "environment"},
		{"STREAMGATE_ADDR", ":8080", "default"},
		{"STREAMGATE_JOB_RETENTION", "168h", "default"},
		{"STREAMGATE_DEMO", "off", "default"}, // not dev mode
	} {
		r := rows[tc.name]
		if len(r) < 3 || r[1] != tc.value || r[len(r)-1] != tc.from {
			t.Errorf("%s: row %q, want value %s from %s", tc.name, r, tc.value, tc.from)
		}
	}
	if r := rows["STREAMGATE_ADMIN_TOKEN"]; len(r) < 3 || !strings.Contains(strings.Join(r, " "), "redacted") {
		t.Errorf("admin token row %q, want it redacted", r)
	}
}

func TestConfigListsEveryProblem(t *testing.T) {
	t.Parallel()
	c := runCLI(t, map[string]string{
		"REDIS_URL":            "redis://redis.internal:6379/0", // and no secret key
		"STREAMGATE_SIGNUP":    "sometimes",
		"STREAMGATE_HEARTBEAT": "1h",
	}, "config").want(t, 2)
	msg := c.err.Error()
	for _, want := range []string{"3 problems", "STREAMGATE_SECRET_KEY", "STREAMGATE_SIGNUP", "STREAMGATE_HEARTBEAT"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
	if c.stdout != "" {
		t.Errorf("an invalid configuration printed a table:\n%s", c.stdout)
	}
}

// TestEveryVariableIsListed holds envVars (what --help and config show) to what readConfig
// reads, in dev mode and with a real Redis.
func TestEveryVariableIsListed(t *testing.T) {
	t.Parallel()
	listed := map[string]bool{}
	for _, v := range envVars {
		if listed[v.Name] {
			t.Errorf("%s is listed twice", v.Name)
		}
		listed[v.Name] = true
	}
	for _, base := range []map[string]string{{}, {"REDIS_URL": "redis://r:6379/0", "STREAMGATE_SECRET_KEY": testSecretKey}} {
		read := map[string]bool{}
		_, _ = readConfig(nil, func(k string) string { read[k] = true; return base[k] })
		for k := range read {
			if !listed[k] {
				t.Errorf("readConfig reads %s, which api --help and api config do not list", k)
			}
		}
	}
}

// TestServeCommand starts a node with `api serve`, as the bare `api` of the harness does.
func TestServeCommand(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	ctx, cancel := context.WithCancel(t.Context())
	logs := newLogSink()
	done := make(chan error, 1)
	env := map[string]string{"REDIS_URL": rs.URL(), "STREAMGATE_ADDR": "127.0.0.1:0", "STREAMGATE_SECRET_KEY": testSecretKey,
		"STREAMGATE_ADMIN_TOKEN": testAdminToken, "STREAMGATE_DRAIN_DELAY": "0"}
	go func() {
		done <- run(ctx, []string{"api", "serve"}, func(k string) string { return env[k] }, &bytes.Buffer{}, logs)
	}()
	var addr string
	select {
	case addr = <-logs.listening:
	case err := <-done:
		cancel()
		t.Fatalf("api serve exited before listening: %v\n%s", err, logs)
	case <-time.After(20 * time.Second):
		cancel()
		t.Fatalf("api serve did not listen\n%s", logs)
	}
	resp, err := testClient.Get("http://" + addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("healthz %d", resp.StatusCode)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("api serve stopped with %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("api serve did not stop")
	}
}

// TestTokenMintAndCheck mints tokens through a node and locally, and checks them against the
// node, the secret, and neither.
func TestTokenMintAndCheck(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil, nil)
	a := n.signup(t, "Acme")

	c := runCLI(t, nil, "token", "mint", "--tenant-key", a.APIKey, "--sub", "alice", "--channel", "chat.*", "--channel", "a,b", "--ttl", "10m", "--url", n.URL).want(t, 0)
	served := strings.TrimSpace(c.stdout)
	if strings.Count(served, ".") != 2 || !strings.Contains(c.stderr, "expires at ") {
		t.Fatalf("mint printed %q / %q, want a token and its expiry", c.stdout, c.stderr)
	}
	n.openStream(t, served, "chat.lobby", "a,b")

	c = runCLI(t, nil, "token", "mint", "--kid", a.SigningID, "--secret", a.SigningKey, "--sub", "bob", "--channel", "news", "--ttl", "1h").want(t, 0)
	local := strings.TrimSpace(c.stdout)
	n.openStream(t, local, "news")

	// The server refuses a wrong key, and says why.
	c = runCLI(t, nil, "token", "mint", "--tenant-key", "sgk_wrong", "--sub", "alice", "--url", n.URL).want(t, 1)
	if !strings.Contains(c.err.Error(), "401 unauthorized") || c.stdout != "" {
		t.Errorf("mint with a wrong key: %v, stdout %q", c.err, c.stdout)
	}

	c = runCLI(t, nil, "token", "check", served).want(t, 0)
	for _, want := range []string{`"kid": "` + a.SigningID + `"`, `"sub": "alice"`, "chat.*", "verified  no"} {
		if !strings.Contains(c.stdout, want) {
			t.Errorf("check without verification lacks %q:\n%s", want, c.stdout)
		}
	}
	c = runCLI(t, nil, "token", "check", "--url", n.URL, "--secret", a.SigningKey, local).want(t, 0)
	if !strings.Contains(c.stdout, "server    accepted") || !strings.Contains(c.stdout, "secret    verified") {
		t.Errorf("check of a good token:\n%s", c.stdout)
	}

	// A token signed with another secret: refused by the node and by the secret.
	forged := hmacToken("HS256", a.SigningID, "not-the-secret", map[string]any{"sub": "alice", "exp": time.Now().Add(time.Hour).Unix()})
	c = runCLI(t, nil, "token", "check", forged, "--url", n.URL, "--secret", a.SigningKey).want(t, 1)
	if !strings.Contains(c.stdout, "server    REFUSED") || !strings.Contains(c.stdout, "401 unauthorized") || !strings.Contains(c.stdout, "secret    REFUSED") {
		t.Errorf("check of a forged token:\n%s", c.stdout)
	}

	// An expired one is shown as such even undecided.
	expired := hmacToken("HS256", a.SigningID, a.SigningKey, map[string]any{"sub": "alice", "exp": time.Now().Add(-time.Hour).Unix()})
	c = runCLI(t, nil, "token", "check", expired).want(t, 0)
	if !strings.Contains(c.stdout, "EXPIRED") {
		t.Errorf("check of an expired token does not say so:\n%s", c.stdout)
	}
	runCLI(t, nil, "token", "check", "--url", n.URL, expired).want(t, 1)

	// A node that cannot be reached is a failure, not a verdict.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gone := "http://" + ln.Addr().String()
	ln.Close()
	runCLI(t, nil, "token", "check", "--url", gone, local).want(t, 1)
}

// TestBuiltBinaryHelp runs the built binary as a person would: --help exits 0 and prints every
// variable without starting a node (the address it is given cannot be listened on).
func TestBuiltBinaryHelp(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, apiBinary(t), "--help")
	cmd.Env = append(os.Environ(), "STREAMGATE_ADDR=256.0.0.1:1", "REDIS_URL=redis://127.0.0.1:1/0")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("api --help: %v\n%s", err, out)
	}
	for _, v := range envVars {
		if !bytes.Contains(out, []byte(v.Name)) {
			t.Errorf("api --help lacks %s", v.Name)
		}
	}
	cmd = exec.CommandContext(ctx, apiBinary(t), "nonsense")
	cmd.Env = os.Environ()
	if err := cmd.Run(); cmd.ProcessState == nil || cmd.ProcessState.ExitCode() != 2 {
		t.Errorf("api nonsense: %v, want exit status 2", err)
	}
}
