package main

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// report is the outcome of one run, as printed and as -json.
type report struct {
	Scenario    string         `json:"scenario,omitempty"`
	Started     time.Time      `json:"started"`
	URLs        []string       `json:"urls"`
	Mode        string         `json:"mode"`
	Conns       int            `json:"conns"`
	Tenants     int            `json:"tenants"`
	Procs       int            `json:"procs"`
	Events      int64          `json:"events"`
	Rate        float64        `json:"rate"`
	Payload     int            `json:"payload_bytes"`
	Tokens      string         `json:"tokens"`
	Connects    string         `json:"connects_asked"` // the ramp: "at 5000/s" or "unpaced"
	Connect     connectReport  `json:"connect"`
	Publish     publishReport  `json:"publish"`
	Delivery    deliveryReport `json:"delivery"`
	Server      *serverReport  `json:"server,omitempty"`
	Redis       *redisReport   `json:"redis,omitempty"`
	ClientCPU   float64        `json:"client_cpu_seconds"`
	Interrupted bool           `json:"interrupted,omitempty"`
	Warnings    []string       `json:"warnings,omitempty"`
}

// rampText says how connects are paced by -ramp (per second; 0: not at all).
func rampText(ramp float64) string {
	if ramp <= 0 {
		return "unpaced"
	}
	return fmt.Sprintf("at %.0f/s", ramp)
}

// latencyReport is a distribution in milliseconds.
type latencyReport struct {
	P50  float64 `json:"p50_ms"`
	P90  float64 `json:"p90_ms"`
	P99  float64 `json:"p99_ms"`
	Max  float64 `json:"max_ms"`
	Mean float64 `json:"mean_ms"`
}

type connectReport struct {
	Established  int64            `json:"established"`
	Failed       int64            `json:"failed"`
	NotAttempted int64            `json:"not_attempted"` // the run ended first
	Failures     map[string]int64 `json:"failures,omitempty"`
	Seconds      float64          `json:"seconds"` // first dial to last connected event
	PerSecond    float64          `json:"per_second"`
	Latency      latencyReport    `json:"latency"` // one session's dial to connected event
}

type publishReport struct {
	Attempted   int64            `json:"attempted"`
	Accepted    int64            `json:"accepted"`
	Errors      int64            `json:"errors"`
	ErrorsBy    map[string]int64 `json:"errors_by,omitempty"`
	RateLimited int64            `json:"rate_limited"`
	Seconds     float64          `json:"seconds"`
	PerSecond   float64          `json:"per_second"`
	MaxBehindMS float64          `json:"max_behind_ms"` // furthest a send fell behind the pace
	RTT         latencyReport    `json:"rtt"`
}

type deliveryReport struct {
	Expected     int64            `json:"expected"`
	Delivered    int64            `json:"delivered"`
	PerSecond    float64          `json:"per_second"` // from the first publish to the last delivery
	Lost         int64            `json:"lost"`
	Duplicated   int64            `json:"duplicated"`
	Misrouted    int64            `json:"misrouted"`
	ClosedEarly  int64            `json:"sessions_closed_early"`
	CloseReasons map[string]int64 `json:"close_reasons,omitempty"`
	Notices      map[string]int64 `json:"notices,omitempty"`
	Latency      latencyReport    `json:"latency"` // publish request sent to event received
}

type serverReport struct {
	Pids             []int   `json:"pids"`
	RSSBeforeKiB     int64   `json:"rss_before_kib"`
	RSSConnectedKiB  int64   `json:"rss_connected_kib"`
	RSSEndKiB        int64   `json:"rss_end_kib"`
	RSSLeftKiB       int64   `json:"rss_left_kib,omitempty"` // AfterLeave after the sessions left
	AfterLeave       string  `json:"after_leave,omitempty"`
	RSSPerConnKiB    float64 `json:"rss_per_conn_kib"`
	ConnectCPU       float64 `json:"connect_cpu_seconds"`
	CPUPerConnUS     float64 `json:"cpu_per_conn_us"`
	PublishCPU       float64 `json:"publish_cpu_seconds"` // from the first publish to the end of the drain
	CPUPerDeliveryUS float64 `json:"cpu_per_delivery_us"`
	CPUPerPublishMS  float64 `json:"cpu_per_publish_ms"`
}

type redisReport struct {
	Pid            int     `json:"pid"`
	CPU            float64 `json:"cpu_seconds"` // over the same span as the api's PublishCPU
	CPUPerPublishU float64 `json:"cpu_per_publish_us"`
	RSSKiB         int64   `json:"rss_kib"`
}

func newReport(cfg config) *report {
	return &report{
		Scenario: cfg.Scenario, Started: time.Now().UTC(), URLs: cfg.URLs, Mode: cfg.Mode,
		Conns: cfg.Conns, Tenants: cfg.Tenants, Events: cfg.Events, Rate: cfg.Rate, Payload: cfg.Payload,
		Connects: rampText(cfg.Ramp),
	}
}

func latency(d histData) latencyReport {
	ms := func(ns int64) float64 { return float64(ns) / 1e6 }
	return latencyReport{
		P50: ms(d.quantile(.50)), P90: ms(d.quantile(.90)), P99: ms(d.quantile(.99)),
		Max: ms(d.Max), Mean: d.mean() / 1e6,
	}
}

// fill merges the workers' results and the publisher's and sampler's figures into r.
func (r *report) fill(results []workerResult, pub pubResult, s *sampler, clientCPU time.Duration) {
	var conn, lat histData
	var firstStart, lastEst, lastRecv int64
	sum := func(dst *map[string]int64, src map[string]int64) {
		for k, v := range src {
			if *dst == nil {
				*dst = map[string]int64{}
			}
			(*dst)[k] += v
		}
	}
	for _, w := range results {
		c, d := &r.Connect, &r.Delivery
		c.Established += w.Established
		c.Failed += w.Failed
		sum(&c.Failures, w.Failures)
		conn.merge(w.Connect)
		lat.merge(w.Latency)
		if w.FirstStart > 0 && (firstStart == 0 || w.FirstStart < firstStart) {
			firstStart = w.FirstStart
		}
		lastEst = max(lastEst, w.LastEstablished)
		lastRecv = max(lastRecv, w.LastRecv)
		d.Delivered += w.Delivered
		d.Duplicated += w.Duplicated
		d.Lost += w.Lost
		d.Misrouted += w.Foreign
		d.ClosedEarly += w.Closed
		sum(&d.CloseReasons, w.CloseReasons)
		sum(&d.Notices, w.Notices)
	}
	r.Connect.NotAttempted = max(int64(r.Conns)-r.Connect.Established-r.Connect.Failed, 0)
	if firstStart > 0 && lastEst > firstStart {
		r.Connect.Seconds = float64(lastEst-firstStart) / 1e9
		r.Connect.PerSecond = float64(r.Connect.Established) / r.Connect.Seconds
	}
	r.Connect.Latency = latency(conn)
	r.Delivery.Latency = latency(lat)

	r.Publish = publishReport{
		Attempted: pub.Attempted, Accepted: pub.Accepted, ErrorsBy: pub.Errors,
		RateLimited: pub.RateLimited, RTT: latency(pub.RTT), MaxBehindMS: float64(pub.MaxBehind) / 1e6,
	}
	for _, n := range pub.Errors {
		r.Publish.Errors += n
	}
	if pub.Attempted > 0 {
		r.Publish.Seconds = pub.End.Sub(pub.Start).Seconds()
		if r.Publish.Seconds > 0 {
			r.Publish.PerSecond = float64(pub.Accepted) / r.Publish.Seconds
		}
		if span := float64(lastRecv-pub.Start.UnixNano()) / 1e9; lastRecv > 0 && span > 0 {
			r.Delivery.PerSecond = float64(r.Delivery.Delivered) / span
		}
	}
	if pub.RateLimited > 0 {
		r.Warnings = append(r.Warnings, fmt.Sprintf("%d publishes got 429: raise the tenant's publish_per_second (STREAMGATE_DEFAULT_PUBLISH_PER_SECOND for new tenants, or PATCH /admin/api/tenants/{id})", pub.RateLimited))
	}
	if n := r.Connect.Failures["HTTP 403 limit_exceeded"]; n > 0 {
		r.Warnings = append(r.Warnings, fmt.Sprintf("%d sessions got 403 limit_exceeded: raise the tenant's max_connections (or max_subscriptions_per_session)", n))
	}

	if cpu, rss, ok := s.apiDelta(phaseBefore, phaseConnected); ok {
		sv := &serverReport{Pids: s.pids, RSSBeforeKiB: s.apiRSS(phaseBefore), RSSConnectedKiB: s.apiRSS(phaseConnected), ConnectCPU: cpu}
		if n := r.Connect.Established; n > 0 {
			sv.RSSPerConnKiB = float64(rss) / float64(n)
			sv.CPUPerConnUS = cpu / float64(n) * 1e6
		}
		if cpu, _, ok := s.apiDelta(phaseConnected, phaseEnd); ok && pub.Attempted > 0 {
			sv.RSSEndKiB = s.apiRSS(phaseEnd)
			sv.PublishCPU = cpu
			if r.Delivery.Delivered > 0 {
				sv.CPUPerDeliveryUS = cpu / float64(r.Delivery.Delivered) * 1e6
			}
			if pub.Accepted > 0 {
				sv.CPUPerPublishMS = cpu / float64(pub.Accepted) * 1e3
			}
		}
		if s.ok[phaseLeft] {
			sv.RSSLeftKiB, sv.AfterLeave = s.apiRSS(phaseLeft), s.afterLeave.String()
		}
		r.Server = sv
	}
	if cpu, ok := s.redisCPU(phaseConnected, phaseEnd); ok {
		rd := &redisReport{Pid: s.redis, CPU: cpu, RSSKiB: s.red[phaseEnd].RSSKiB}
		if pub.Accepted > 0 {
			rd.CPUPerPublishU = cpu / float64(pub.Accepted) * 1e6
		}
		r.Redis = rd
	}
	if s.lastE != nil {
		r.Warnings = append(r.Warnings, "server sampling failed: "+s.lastE.Error())
	}
	r.ClientCPU = clientCPU.Seconds()
}

// write prints the report as a table, or as JSON with -json, and writes it to -out as JSON.
func (r *report) write(stdout io.Writer, cfg config) error {
	if cfg.Out != "" {
		b, err := json.MarshalIndent(r, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(cfg.Out, append(b, '\n'), 0o644); err != nil {
			return fmt.Errorf("write -out: %w", err)
		}
	}
	if cfg.JSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	return r.table(stdout)
}

// table prints the report for a person: one figure per line.
func (r *report) table(out io.Writer) error {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	row := func(k, format string, a ...any) { fmt.Fprintf(tw, "  %s\t"+format+"\n", append([]any{k}, a...)...) }
	title := r.Scenario
	if title == "" {
		title = "sgbench"
	}
	fmt.Fprintf(tw, "%s: %d sessions, %s, %s tokens, connects %s, %d tenant(s), %d api node(s), %d worker(s)\n",
		title, r.Conns, r.Mode, r.Tokens, r.Connects, r.Tenants, len(r.URLs), r.Procs)
	c := r.Connect
	row("connected", "%d of %d in %.2f s (%.0f/s), %d failed, %d not attempted", c.Established, r.Conns, c.Seconds, c.PerSecond, c.Failed, c.NotAttempted)
	if len(c.Failures) > 0 {
		row("  failures", "%s", counts(c.Failures))
	}
	row("connect latency", "%s", ms(c.Latency))
	if r.Events > 0 {
		p := r.Publish
		row("published", "%d accepted of %d events in %.2f s (%.1f/s, asked %g/s), %d errors", p.Accepted, r.Events, p.Seconds, p.PerSecond, r.Rate, p.Errors)
		if len(p.ErrorsBy) > 0 {
			row("  errors", "%s", counts(p.ErrorsBy))
		}
		row("publish request", "%s; fell behind pace by at most %.0f ms", ms(p.RTT), p.MaxBehindMS)
		d := r.Delivery
		row("delivered", "%d of %d expected (%.0f/s)", d.Delivered, d.Expected, d.PerSecond)
		row("latency", "%s", ms(d.Latency))
		row("lost / duplicated", "%d / %d (misrouted %d)", d.Lost, d.Duplicated, d.Misrouted)
	}
	if d := r.Delivery; d.ClosedEarly > 0 || len(d.Notices) > 0 {
		row("closed early", "%d sessions: %s; notices: %s", d.ClosedEarly, counts(d.CloseReasons), counts(d.Notices))
	}
	if s := r.Server; s != nil {
		row("api RSS", "%.0f → %.0f MiB: %.1f KiB per connection", float64(s.RSSBeforeKiB)/1024, float64(s.RSSConnectedKiB)/1024, s.RSSPerConnKiB)
		if s.RSSLeftKiB > 0 && s.RSSBeforeKiB > 0 {
			row("api RSS after leaving", "%.0f MiB %s after every session left: %.0f%% of before", float64(s.RSSLeftKiB)/1024, s.AfterLeave, 100*float64(s.RSSLeftKiB)/float64(s.RSSBeforeKiB))
		}
		row("api CPU connecting", "%.2f s (%.0f µs per connection)", s.ConnectCPU, s.CPUPerConnUS)
		if r.Events > 0 {
			row("api CPU publishing", "%.2f s: %.2f µs per delivery, %.3f ms per publish", s.PublishCPU, s.CPUPerDeliveryUS, s.CPUPerPublishMS)
		}
	}
	if s := r.Redis; s != nil && r.Events > 0 {
		row("redis CPU", "%.2f s (%.0f µs per publish), RSS %.0f MiB", s.CPU, s.CPUPerPublishU, float64(s.RSSKiB)/1024)
	}
	row("sgbench CPU", "%.2f s", r.ClientCPU)
	if r.Interrupted {
		row("interrupted", "yes: figures are partial")
	}
	for _, w := range r.Warnings {
		row("warning", "%s", w)
	}
	return tw.Flush()
}

func ms(l latencyReport) string {
	return fmt.Sprintf("p50 %s  p90 %s  p99 %s  max %s ms", num(l.P50), num(l.P90), num(l.P99), num(l.Max))
}

// num prints a millisecond figure with about three significant digits.
func num(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

// counts prints a reason → count map, largest first.
func counts(m map[string]int64) string {
	if len(m) == 0 {
		return "none"
	}
	keys := slices.Sorted(maps.Keys(m))
	slices.SortStableFunc(keys, func(a, b string) int { return cmp.Compare(m[b], m[a]) })
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%d %s", m[k], k)
	}
	return strings.Join(parts, ", ")
}
