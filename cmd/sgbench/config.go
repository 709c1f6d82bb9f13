package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// config is the command line of one benchmark run, checked.
type config struct {
	URLs           []string
	APIKeys        []string
	Signup         bool
	Tenants        int
	Conns          int
	Ramp           float64 // connections per second over the whole run; 0 means no pacing
	Mode           string
	Events         int64
	Rate           float64
	Payload        int
	Duration       time.Duration
	Settle         time.Duration
	AfterLeave     time.Duration
	Drain          time.Duration
	ConnectTimeout time.Duration
	WaitReady      time.Duration
	Procs          int // 0: one per 15,000 connections
	Publishers     int // 0: from the rate
	Pids           []int
	RedisPid       int
	JSON           bool
	Out            string
	Scenario       string
	Tokens         string // tokensPerUser or tokensShared
	Worker         bool   // hidden: this process is a worker started by a coordinator
}

// Bounds that keep a mistyped flag from turning into a runaway.
const (
	maxConns      = 1_000_000
	maxEvents     = 100_000_000
	maxTenants    = 1_000
	maxProcs      = 64
	maxPublishers = 1_024
	maxPayload    = 1 << 20
)

const usageHead = `sgbench measures a Streamgate deployment: it opens SSE sessions, publishes events through
the REST API and reports connect time, delivery rate and latency, loss, duplicates and, given
the server's pids, its memory and CPU per connection, delivery and publish.

Usage:
  sgbench -url http://127.0.0.1:8080 -signup -conns 1000 -events 100 -rate 10
  sgbench -url http://a:8080,http://b:8080 -api-key sgk_… -conns 10000 -channels per-conn -events 20000 -rate 2000
  sgbench summary result1.json result2.json…   (one table of several -out results)

Only the addresses given with -url are contacted. Flags:
`

// parseConfig reads args (without the program name). It returns flag.ErrHelp after printing
// the usage for -h.
func parseConfig(args []string, stderr io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("sgbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var urls, keys, ramp, pids string
	var events int64
	fs.StringVar(&urls, "url", "http://127.0.0.1:8080", "api base `URLs`, comma-separated; sessions and publishes are spread round-robin over them")
	fs.StringVar(&keys, "api-key", "", "use existing tenants: their API `keys`, comma-separated (one tenant each)")
	fs.BoolVar(&c.Signup, "signup", false, "sign new tenants up instead (POST /v1/tenants)")
	fs.IntVar(&c.Tenants, "tenants", 1, "with -signup, how many tenants to sign up; sessions and channels are spread over them")
	fs.IntVar(&c.Conns, "conns", 100, "SSE sessions to open")
	fs.StringVar(&ramp, "ramp", "1000", "connection ramp: connections per second, or a duration to spread them over (0: as fast as possible)")
	fs.StringVar(&c.Mode, "channels", modeBroadcast, "`mode`: broadcast (one channel per tenant that all its sessions share) or per-conn (one channel per session)")
	fs.Int64Var(&events, "events", 0, "events to publish in all (0: only connect, as for a memory test)")
	fs.Float64Var(&c.Rate, "rate", 10, "publish rate, events per second over all channels")
	fs.IntVar(&c.Payload, "payload", 100, "size of each event's data in `bytes` (at least the ~40 the payload needs)")
	fs.DurationVar(&c.Duration, "duration", 2*time.Minute, "cap on the whole run; whatever is unfinished then is reported as such")
	fs.DurationVar(&c.Settle, "settle", time.Second, "pause after connecting, before sampling server memory and publishing")
	fs.DurationVar(&c.AfterLeave, "after-leave", 0, "after every session has left, wait this long and sample the servers' memory again (0: don't)")
	fs.DurationVar(&c.Drain, "drain", 3*time.Second, "after the last publish, stop waiting for deliveries once none arrive for this long")
	fs.DurationVar(&c.ConnectTimeout, "connect-timeout", 15*time.Second, "one session's limit from dialling to its connected event")
	fs.DurationVar(&c.WaitReady, "wait-ready", 0, "poll each URL's /readyz for up to this long before starting (0: check once)")
	fs.IntVar(&c.Procs, "procs", 0, "worker processes holding the sessions (0: one per 15,000 sessions)")
	fs.IntVar(&c.Publishers, "publishers", 0, "concurrent publish requests at most (0: from -rate)")
	fs.StringVar(&pids, "pids", "", "api server `pids`, comma-separated, to report their memory and CPU (same machine, Linux)")
	fs.IntVar(&c.RedisPid, "redis-pid", 0, "Redis server `pid`, to report its CPU")
	fs.BoolVar(&c.JSON, "json", false, "print the result as JSON instead of a table")
	fs.StringVar(&c.Out, "out", "", "also write the JSON result to this `file`")
	fs.StringVar(&c.Scenario, "scenario", "", "a label for the result")
	fs.StringVar(&c.Tokens, "tokens", tokensPerUser, "`per-user`: every session its own token, signed with the tenant's signing key (needs -signup); shared: one token per tenant")
	fs.BoolVar(&c.Worker, "worker", false, "")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usageHead)
		fs.VisitAll(func(f *flag.Flag) {
			if f.Name == "worker" { // internal: how the coordinator starts its workers
				return
			}
			name, use := flag.UnquoteUsage(f)
			if name != "" {
				name = " " + name
			}
			fmt.Fprintf(fs.Output(), "  -%s%s\n    \t%s", f.Name, name, use)
			if f.DefValue != "" && f.DefValue != "0" && f.DefValue != "false" && f.DefValue != "0s" {
				fmt.Fprintf(fs.Output(), " (default %s)", f.DefValue)
			}
			fmt.Fprintln(fs.Output())
		})
	}
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if c.Worker {
		return c, nil
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	c.Events = events
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	var errs []error
	fail := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	for _, u := range splitList(urls) {
		base, err := baseURL(u)
		if err != nil {
			fail("-url: %v", err)
			continue
		}
		c.URLs = append(c.URLs, base)
	}
	if len(c.URLs) == 0 && len(errs) == 0 {
		fail("-url: give at least one api base URL")
	}
	c.APIKeys = splitList(keys)
	switch {
	case c.Signup && len(c.APIKeys) > 0:
		fail("give either -api-key or -signup, not both")
	case !c.Signup && len(c.APIKeys) == 0:
		fail("give -api-key (existing tenants) or -signup (sign tenants up)")
	case len(c.APIKeys) > 0:
		if set["tenants"] && c.Tenants != len(c.APIKeys) {
			fail("-tenants is %d but -api-key names %d tenants", c.Tenants, len(c.APIKeys))
		}
		c.Tenants = len(c.APIKeys)
	}
	if c.Tenants < 1 || c.Tenants > maxTenants {
		fail("-tenants must be 1 to %d", maxTenants)
	}
	if c.Conns < 0 || c.Conns > maxConns {
		fail("-conns must be 0 to %d", maxConns)
	}
	var err error
	if c.Ramp, err = parseRamp(ramp, c.Conns); err != nil {
		fail("-ramp: %v", err)
	}
	if c.Mode != modeBroadcast && c.Mode != modePerConn {
		fail("-channels must be %s or %s", modeBroadcast, modePerConn)
	}
	if c.Tokens != tokensPerUser && c.Tokens != tokensShared {
		fail("-tokens must be %s or %s", tokensPerUser, tokensShared)
	}
	if c.Mode == modePerConn && c.Conns == 0 && c.Events > 0 {
		fail("-channels per-conn needs -conns above 0")
	}
	if c.Events < 0 || c.Events > maxEvents {
		fail("-events must be 0 to %d", maxEvents)
	}
	if c.Events > 0 && !(c.Rate > 0 && c.Rate <= 1e6) {
		fail("-rate must be above 0 and at most 1,000,000 events per second")
	}
	if c.Payload < 0 || c.Payload > maxPayload {
		fail("-payload must be 0 to %d bytes", maxPayload)
	}
	if c.Duration <= 0 || c.Duration > 24*time.Hour {
		fail("-duration must be above 0 and at most 24h")
	}
	for name, d := range map[string]time.Duration{"settle": c.Settle, "after-leave": c.AfterLeave, "drain": c.Drain, "wait-ready": c.WaitReady} {
		if d < 0 || d > time.Hour {
			fail("-%s must be 0 to 1h", name)
		}
	}
	if c.ConnectTimeout <= 0 || c.ConnectTimeout > 10*time.Minute {
		fail("-connect-timeout must be above 0 and at most 10m")
	}
	if c.Procs < 0 || c.Procs > maxProcs {
		fail("-procs must be 0 to %d", maxProcs)
	}
	if c.Publishers < 0 || c.Publishers > maxPublishers {
		fail("-publishers must be 0 to %d", maxPublishers)
	}
	for _, p := range splitList(pids) {
		n, err := strconv.Atoi(p)
		if err != nil || n <= 0 {
			fail("-pids: %q is not a process id", p)
			continue
		}
		c.Pids = append(c.Pids, n)
	}
	if c.RedisPid < 0 {
		fail("-redis-pid must be a process id")
	}
	return c, errors.Join(errs...)
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// baseURL checks an api base URL and returns it without a trailing slash.
func baseURL(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil {
		return "", err
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("%q is not an http:// or https:// base URL", s)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", fmt.Errorf("%q: give only scheme, host and an optional path prefix", s)
	}
	return strings.TrimRight(u.String(), "/"), nil
}

// parseRamp reads -ramp: connections per second, or a duration to spread conns over. 0 means
// no pacing.
func parseRamp(s string, conns int) (float64, error) {
	if d, err := time.ParseDuration(s); err == nil && strings.ContainsAny(s, "hmsµun") {
		if d < 0 {
			return 0, fmt.Errorf("%q is negative", s)
		}
		if d == 0 || conns == 0 {
			return 0, nil
		}
		return float64(conns) / d.Seconds(), nil
	}
	r, err := strconv.ParseFloat(s, 64)
	if err != nil || !(r >= 0 && r <= 1e7) {
		return 0, fmt.Errorf("%q is neither connections per second (0 to 10,000,000) nor a duration", s)
	}
	return r, nil
}
