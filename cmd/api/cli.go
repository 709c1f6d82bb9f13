package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"
	"text/tabwriter"
)

// version and commit say what this binary was built from; the Makefile's build target sets
// them from git (-ldflags "-X main.version=… -X main.commit=…"). The commit Go records itself
// (go build -buildvcs) wins where there is one.
var (
	version = "dev"
	commit  = ""
)

const usageText = `Streamgate api: the REST API, end-user SSE streams and the admin dashboard.

Usage:
  api [serve]              run a node on STREAMGATE_ADDR until SIGINT or SIGTERM
  api version              print the version, commit and Go version
  api config               print the configuration the environment gives, secrets redacted;
                           exit 2 listing every problem when it is invalid
  api token mint [flags]   mint an end-user token (api token mint -h)
  api token check JWT      decode an end-user token, and verify it when asked (api token check -h)
  api help [command]       this text, or a command's
  api -healthcheck URL     exit 0 when URL answers 200 (container health checks)

Exit status: 0 done, 1 failed, 2 bad command line or configuration (nothing was started).

Environment (read by api serve and api config; see docs/configuration.md):
`

// writeUsage prints the api's usage and every variable it reads.
func writeUsage(w io.Writer) {
	fmt.Fprint(w, usageText)
	for _, v := range envVars {
		fmt.Fprintf(w, "  %s (default: %s)\n      %s\n", v.Name, v.Default, v.Meaning)
	}
}

// runHelp prints the usage, or with a command the command's own.
func runHelp(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		writeUsage(stdout)
		return nil
	}
	// A command's usage is what its -h prints; no command here opens anything for -h.
	return run(context.Background(), append(append([]string{"api"}, args...), "-h"), func(string) string { return "" }, stdout, stderr)
}

// commandFlags is a subcommand's flag set that reports its own errors in one line and prints
// its usage on -h.
type commandFlags struct {
	*flag.FlagSet
	synopsis, about string
	stdout          io.Writer
}

func newFlagSet(name, synopsis, about string, stdout io.Writer) *commandFlags {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return &commandFlags{FlagSet: fs, synopsis: synopsis, about: about, stdout: stdout}
}

func (f *commandFlags) usage() {
	fmt.Fprintf(f.stdout, "Usage: %s\n\n%s\n", f.synopsis, f.about)
	hasFlags := false
	f.VisitAll(func(*flag.Flag) { hasFlags = true })
	if hasFlags {
		fmt.Fprintln(f.stdout, "\nFlags:")
		f.SetOutput(f.stdout)
		f.PrintDefaults()
		f.SetOutput(io.Discard)
	}
}

// parse reads flags and positional arguments in any order and checks that there are exactly
// positional of the latter. done means -h was asked for and answered.
func parse(f *commandFlags, args []string, positional int) (done bool, err error) {
	_, done, err = parseArgs(f, args, positional)
	return done, err
}

func parseArgs(f *commandFlags, args []string, positional int) (pos []string, done bool, err error) {
	for {
		if err := f.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				f.usage()
				return nil, true, nil
			}
			return nil, false, usageError{fmt.Sprintf("%s: %v (%s -h)", f.Name(), err, commandOf(f.synopsis))}
		}
		args = f.Args()
		if len(args) == 0 {
			break
		}
		pos, args = append(pos, args[0]), args[1:]
	}
	if len(pos) != positional {
		if len(pos) > positional {
			return nil, false, usageError{fmt.Sprintf("%s: unexpected argument %q (%s -h)", f.Name(), pos[positional], commandOf(f.synopsis))}
		}
		return nil, false, usageError{fmt.Sprintf("%s: missing argument (usage: %s)", f.Name(), f.synopsis)}
	}
	return pos, false, nil
}

// commandOf is the command part of a synopsis ("api token mint [flags]" → "api token mint").
func commandOf(synopsis string) string {
	var words []string
	for _, w := range strings.Fields(synopsis) {
		if strings.ContainsAny(w, "[<-") || strings.ToUpper(w) == w {
			break
		}
		words = append(words, w)
	}
	return strings.Join(words, " ")
}

// runVersion prints the version, the commit and the Go version the binary was built with.
func runVersion(args []string, stdout io.Writer) error {
	fs := newFlagSet("version", "api version", "Prints the version, the commit and the Go version this binary was built with.", stdout)
	if done, err := parse(fs, args, 0); done || err != nil {
		return err
	}
	v, rev := version, orText(commit, "unknown")
	goVersion := runtime.Version()
	if info, ok := debug.ReadBuildInfo(); ok {
		goVersion = info.GoVersion
		// go install …@vX.Y.Z records the module's version.
		if v == "dev" && info.Main.Version != "" && info.Main.Version != "(devel)" {
			v = info.Main.Version
		}
		var vcsRev, at, modified string
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				vcsRev = s.Value
			case "vcs.time":
				at = s.Value
			case "vcs.modified":
				modified = s.Value
			}
		}
		if vcsRev != "" {
			rev = vcsRev
			if at != "" {
				rev += " (" + at + ")"
			}
			if modified == "true" {
				rev += " with local changes"
			}
		}
	}
	fmt.Fprintf(stdout, "streamgate api %s\ncommit %s\n%s %s/%s\n", v, rev, goVersion, runtime.GOOS, runtime.GOARCH)
	return nil
}

// runConfig prints the configuration that the environment gives a node, with each value's
// source and the secrets redacted, or every problem with it.
func runConfig(args []string, getenv func(string) string, stdout io.Writer) error {
	fs := newFlagSet("config", "api config",
		"Prints the configuration that the environment gives an api node, with where each value comes\nfrom; secrets are redacted. Exits 2 listing every problem when the environment is invalid.\nOpens nothing: Redis is not contacted.", stdout)
	if done, err := parse(fs, args, 0); done || err != nil {
		return err
	}
	cfg, err := readConfig(nil, getenv)
	if err != nil {
		return configError{listProblems(err)}
	}
	mode := "redis " + redactURL(cfg.Redis.URL)
	switch {
	case cfg.Redis.DevMode():
		mode = "dev: an embedded in-memory Redis and an in-process worker; nothing persists"
	case len(cfg.Redis.ClusterAddrs) > 0:
		mode = "redis cluster " + strings.Join(cfg.Redis.ClusterAddrs, ",")
	}
	fmt.Fprintf(stdout, "# streamgate api %s, mode %s\n", version, mode)
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "VARIABLE\tVALUE\tFROM")
	for _, v := range envVars {
		raw := strings.TrimSpace(getenv(v.Name))
		from := "default"
		if raw != "" {
			from = "environment"
		}
		val := raw
		switch {
		case v.Value != nil:
			val = v.Value(cfg, raw)
		case raw == "":
			val = v.Default
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", v.Name, val, from)
	}
	return tw.Flush()
}

// listProblems puts each of a joined error's problems on a line of its own.
func listProblems(err error) error {
	var joined interface{ Unwrap() []error }
	if !errors.As(err, &joined) || len(joined.Unwrap()) < 2 {
		return err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d problems:", len(joined.Unwrap()))
	for _, e := range joined.Unwrap() {
		b.WriteString("\n  - " + e.Error())
	}
	return errors.New(b.String())
}
