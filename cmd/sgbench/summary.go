package main

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
)

// summary prints the key figures of several -out results side by side, one column each, for
// the end of `make bench`.
func summary(out io.Writer, files []string) error {
	if len(files) == 0 {
		return errors.New("summary: name the -out JSON files to summarise")
	}
	var reps []report
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return fmt.Errorf("summary: %w", err)
		}
		var r report
		if err := json.Unmarshal(b, &r); err != nil {
			return fmt.Errorf("summary: %s: %w", f, err)
		}
		if r.Scenario == "" {
			r.Scenario = f
		}
		reps = append(reps, r)
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	line := func(name string, cell func(r report) string) {
		fmt.Fprintf(tw, "%-20s\t", name) // padded: the right alignment is meant for the figures
		for _, r := range reps {
			fmt.Fprint(tw, cell(r)+"\t")
		}
		fmt.Fprintln(tw)
	}
	f0 := func(v float64) string { return fmt.Sprintf("%.0f", v) }
	d := func(v int64) string { return fmt.Sprintf("%d", v) }
	server := func(get func(s *serverReport) string) func(r report) string {
		return func(r report) string {
			if r.Server == nil {
				return "-"
			}
			return get(r.Server)
		}
	}
	published := func(get func(r report) string) func(r report) string {
		return func(r report) string {
			if r.Events == 0 {
				return "-"
			}
			return get(r)
		}
	}
	line("scenario", func(r report) string { return r.Scenario })
	line("api nodes", func(r report) string { return d(int64(len(r.URLs))) })
	line("sessions", func(r report) string { return fmt.Sprintf("%d %s", r.Conns, r.Mode) })
	line("tokens", func(r report) string { return r.Tokens })
	line("connects asked", func(r report) string { return cmp.Or(r.Connects, "-") })
	line("established", func(r report) string { return d(r.Connect.Established) })
	line("failed", func(r report) string { return d(r.Connect.Failed) })
	line("connect time s", func(r report) string { return fmt.Sprintf("%.2f", r.Connect.Seconds) })
	line("published", published(func(r report) string { return fmt.Sprintf("%d at %.0f/s", r.Publish.Accepted, r.Publish.PerSecond) }))
	line("publish errors", published(func(r report) string { return d(r.Publish.Errors) }))
	line("delivered", published(func(r report) string { return d(r.Delivery.Delivered) }))
	line("delivered/s", published(func(r report) string { return f0(r.Delivery.PerSecond) }))
	line("latency p50 ms", published(func(r report) string { return num(r.Delivery.Latency.P50) }))
	line("latency p90 ms", published(func(r report) string { return num(r.Delivery.Latency.P90) }))
	line("latency p99 ms", published(func(r report) string { return num(r.Delivery.Latency.P99) }))
	line("latency max ms", published(func(r report) string { return num(r.Delivery.Latency.Max) }))
	line("lost", published(func(r report) string { return d(r.Delivery.Lost) }))
	line("duplicated", published(func(r report) string { return d(r.Delivery.Duplicated) }))
	line("closed early", func(r report) string { return d(r.Delivery.ClosedEarly) })
	line("api RSS/conn KiB", server(func(s *serverReport) string { return fmt.Sprintf("%.1f", s.RSSPerConnKiB) }))
	line("api RSS after leaving", server(func(s *serverReport) string {
		if s.RSSLeftKiB == 0 || s.RSSBeforeKiB == 0 {
			return "-"
		}
		return fmt.Sprintf("%.0f%% of before", 100*float64(s.RSSLeftKiB)/float64(s.RSSBeforeKiB))
	}))
	line("api CPU/delivery µs", published(server(func(s *serverReport) string { return fmt.Sprintf("%.2f", s.CPUPerDeliveryUS) })))
	line("api CPU/publish ms", published(server(func(s *serverReport) string { return fmt.Sprintf("%.3f", s.CPUPerPublishMS) })))
	line("redis CPU s", published(func(r report) string {
		if r.Redis == nil {
			return "-"
		}
		return fmt.Sprintf("%.2f", r.Redis.CPU)
	}))
	line("sgbench CPU s", func(r report) string { return fmt.Sprintf("%.1f", r.ClientCPU) })
	return tw.Flush()
}
