package main

import (
	"fmt"
	"time"
)

// A coordinator talks to each of its worker processes over the worker's stdin and stdout, one
// JSON value per line. Secrets (the tokens) travel this way rather than on a command line that
// any user of the machine can read.
//
//	coordinator → worker: workerConfig, then later finishMsg (or EOF: abandon the run)
//	worker → coordinator: workerMsg "progress" lines, one "ready" line once every session has
//	                      connected or failed, and one "result" line after finishMsg

// workerConfig is a worker's share of the run.
type workerConfig struct {
	Plan   plan     `json:"plan"`
	Worker int      `json:"worker"` // this worker owns the sessions j with j mod Procs = Worker
	Procs  int      `json:"procs"`
	URLs   []string `json:"urls"`
	Tokens []string `json:"tokens"` // one per tenant
	// Signing holds, per tenant, the key that signs each session a token of its own; empty
	// when the sessions share their tenant's token.
	Signing        []signingKey  `json:"signing,omitempty"`
	TokenTTL       time.Duration `json:"token_ttl,omitempty"`
	Ramp           float64       `json:"ramp"`  // connections per second over all workers; 0: unpaced
	Start          int64         `json:"start"` // unix nanoseconds: when every worker starts connecting
	Deadline       int64         `json:"deadline"`
	ConnectTimeout time.Duration `json:"connect_timeout"`
}

// check guards a worker against a config that would make it index out of range.
func (c workerConfig) check() error {
	p := c.Plan
	switch {
	case c.Procs < 1 || c.Worker < 0 || c.Worker >= c.Procs:
		return fmt.Errorf("worker %d of %d", c.Worker, c.Procs)
	case p.Tenants < 1 || len(c.Tokens) != p.Tenants:
		return fmt.Errorf("%d tokens for %d tenants", len(c.Tokens), p.Tenants)
	case len(c.Signing) != 0 && len(c.Signing) != p.Tenants:
		return fmt.Errorf("%d signing keys for %d tenants", len(c.Signing), p.Tenants)
	case p.Nodes < 1 || len(c.URLs) != p.Nodes:
		return fmt.Errorf("%d URLs for %d nodes", len(c.URLs), p.Nodes)
	case p.Mode != modeBroadcast && p.Mode != modePerConn:
		return fmt.Errorf("channel mode %q", p.Mode)
	case p.Conns < 0 || c.ConnectTimeout <= 0 || c.Ramp < 0:
		return fmt.Errorf("conns %d, connect timeout %s, ramp %g", p.Conns, c.ConnectTimeout, c.Ramp)
	}
	return nil
}

// finishMsg tells a worker that publishing is over: it closes its sessions and reports.
type finishMsg struct {
	Ledger ledger `json:"ledger"`
}

// workerMsg is one line from a worker.
type workerMsg struct {
	Type     string          `json:"type"` // "progress", "ready" or "result"
	Progress *workerProgress `json:"progress,omitempty"`
	Ready    *workerReady    `json:"ready,omitempty"`
	Result   *workerResult   `json:"result,omitempty"`
}

// workerProgress is a worker's running count.
type workerProgress struct {
	Established int64 `json:"established"`
	Failed      int64 `json:"failed"`
	Delivered   int64 `json:"delivered"`
	Closed      int64 `json:"closed"` // sessions that ended before the run did
}

// workerReady says every session of the worker has connected or failed, and how many are on
// each channel, from which the coordinator knows how many deliveries to wait for.
type workerReady struct {
	PerChannel map[int]int64 `json:"per_channel"`
}

// workerResult is everything a worker measured, in a form the coordinator can add up exactly.
type workerResult struct {
	Established     int64            `json:"established"`
	Failed          int64            `json:"failed"`
	Failures        map[string]int64 `json:"failures,omitempty"` // reason → sessions
	FirstStart      int64            `json:"first_start"`        // unix ns of the first dial
	LastEstablished int64            `json:"last_established"`   // unix ns of the last connected event
	Connect         histData         `json:"connect"`            // ns from dial to connected event
	Latency         histData         `json:"latency"`            // ns from publish to receipt
	Delivered       int64            `json:"delivered"`
	Duplicated      int64            `json:"duplicated"`
	Lost            int64            `json:"lost"`
	Foreign         int64            `json:"foreign"` // events of this run on the wrong session
	Closed          int64            `json:"closed"`
	CloseReasons    map[string]int64 `json:"close_reasons,omitempty"`
	Notices         map[string]int64 `json:"notices,omitempty"` // lagging, disconnect, auth_failed
	FirstRecv       int64            `json:"first_recv"`
	LastRecv        int64            `json:"last_recv"`
	NoFile          uint64           `json:"nofile"` // its RLIMIT_NOFILE after raising
}
