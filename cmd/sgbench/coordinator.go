package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// sessionsPerWorker is how many sessions one worker process holds at most by default: well
// under the 20,000 descriptors a process may have on a stock machine.
const sessionsPerWorker = 15_000

// collectTimeout bounds the wait for the workers' results after the run, whatever -duration.
const collectTimeout = 30 * time.Second

// runBench is a coordinator: it sets the tenants up, starts the workers, waits for the
// sessions, publishes, waits for the deliveries, collects the workers' results and reports.
// It returns an error when setup fails, when no session could connect or when a signal cut the
// run short; the report is printed in the last two cases.
func runBench(ctx context.Context, cfg config, stdout, stderr io.Writer) error {
	nofile := raiseNoFile()
	runCtx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	deadline, _ := runCtx.Deadline()

	rest := newRESTClient()
	if err := rest.waitReady(runCtx, cfg.URLs, cfg.WaitReady); err != nil {
		return fmt.Errorf("api not ready: %w", err)
	}
	p := plan{Conns: cfg.Conns, Tenants: cfg.Tenants, Nodes: len(cfg.URLs), Mode: cfg.Mode, Prefix: "sgb-" + randomHex(4)}
	tenants, err := rest.setupTenants(runCtx, cfg, cfg.URLs[0], p.Prefix, tokenTTL(cfg.Duration))
	if err != nil {
		return err
	}
	rest.http.CloseIdleConnections()
	rep := newReport(cfg)
	rep.Warnings = limitWarnings(cfg, tenants)
	for _, w := range rep.Warnings {
		fmt.Fprintln(stderr, "sgbench: warning:", w)
	}
	samp := &sampler{pids: cfg.Pids, redis: cfg.RedisPid}
	if err := samp.take(phaseBefore); err != nil {
		return err
	}

	procs := workerCount(cfg.Conns, cfg.Procs, nofile)
	rep.Procs = procs
	keys, tokens := make([]string, len(tenants)), make([]string, len(tenants))
	var signing []signingKey
	for k, t := range tenants {
		keys[k], tokens[k] = t.APIKey, t.Token
		if cfg.Tokens == tokensPerUser && t.Signing.Secret != "" {
			signing = append(signing, t.Signing)
		}
	}
	if len(signing) != len(tenants) {
		signing = nil
		if cfg.Tokens == tokensPerUser {
			fmt.Fprintln(stderr, "sgbench: warning: no signing keys (they are shown only at -signup): the sessions share their tenant's token")
		}
	}
	rep.Tokens = tokensShared
	if signing != nil {
		rep.Tokens = tokensPerUser
	}
	// Every worker starts dialling at the same moment, once all have had time to start.
	start := time.Now().Add(200*time.Millisecond + time.Duration(procs)*50*time.Millisecond)
	var workers []*workerProc
	defer func() {
		for _, w := range workers {
			w.kill()
		}
	}()
	for k := range procs {
		w, err := startWorker(workerConfig{
			Plan: p, Worker: k, Procs: procs, URLs: cfg.URLs, Tokens: tokens, Signing: signing, TokenTTL: tokenTTL(cfg.Duration), Ramp: cfg.Ramp,
			Start: start.UnixNano(), Deadline: deadline.UnixNano(), ConnectTimeout: cfg.ConnectTimeout,
		}, stderr)
		if err != nil {
			return err
		}
		workers = append(workers, w)
	}

	live := newLiveLine(stderr, cfg, workers)
	live.start()
	defer live.stop()

	live.setPhase("connecting")
	perChannel := map[int]int64{}
	for k, w := range workers {
		select {
		case r := <-w.ready:
			for c, n := range r.PerChannel {
				perChannel[c] += n
			}
		case <-w.exited:
			return fmt.Errorf("worker %d exited early: %v", k, w.err)
		case <-runCtx.Done():
		}
	}
	live.setPhase("settling")
	_ = sleep(runCtx, cfg.Settle)
	_ = samp.take(phaseConnected)

	var pub pubResult
	if cfg.Events > 0 && runCtx.Err() == nil {
		live.setPhase("publishing")
		pb := newPublisher(cfg, p, keys, deadline)
		live.setPublisher(pb)
		pub = pb.run(runCtx)
		live.setPhase("draining")
		rep.Delivery.Expected = expectedDeliveries(p, pub.Ledger, perChannel)
		drain(runCtx, workers, rep.Delivery.Expected, cfg.Drain)
	}
	_ = samp.take(phaseEnd)
	live.stop()

	results := make([]workerResult, len(workers))
	errs := make([]error, len(workers))
	var wg sync.WaitGroup
	for k, w := range workers {
		wg.Go(func() { results[k], errs[k] = w.finish(pub.Ledger, collectTimeout) })
	}
	wg.Wait()
	var clientCPU time.Duration
	for k, w := range workers {
		clientCPU += w.stop()
		if errs[k] != nil {
			rep.Warnings = append(rep.Warnings, fmt.Sprintf("worker %d: %v; its sessions are missing from the figures", k, errs[k]))
		}
	}
	workers = nil
	if cfg.AfterLeave > 0 && ctx.Err() == nil {
		// The workers are gone and their sockets with them: what the api keeps now, it keeps
		// after a burst of clients.
		_ = sleep(ctx, cfg.AfterLeave)
		samp.afterLeave = cfg.AfterLeave
		_ = samp.take(phaseLeft)
	}
	if self, err := readProc(os.Getpid()); err == nil {
		clientCPU += time.Duration(self.CPU * float64(time.Second))
	}

	rep.fill(results, pub, samp, clientCPU)
	rep.Interrupted = ctx.Err() != nil
	if runCtx.Err() != nil && ctx.Err() == nil {
		rep.Warnings = append(rep.Warnings, fmt.Sprintf("the run reached -duration %s before it was done", cfg.Duration))
	}
	if err := rep.write(stdout, cfg); err != nil {
		return err
	}
	if rep.Interrupted {
		return errInterrupted
	}
	if cfg.Conns > 0 && rep.Connect.Established == 0 {
		return errors.New("no session could connect")
	}
	return nil
}

// errInterrupted is a run cut short by SIGINT or SIGTERM after printing what it measured. The
// process exits with status 130, so that scripts stop too.
var errInterrupted = errors.New("interrupted")

// workerCount is -procs, or by default enough workers that none holds more than
// sessionsPerWorker sessions or more than its descriptor limit allows.
func workerCount(conns, procs int, nofile uint64) int {
	if conns == 0 {
		return 0
	}
	if procs > 0 {
		return min(procs, conns)
	}
	per := sessionsPerWorker
	if nofile > fdsBesidesConn*2 {
		per = min(per, int(nofile)-fdsBesidesConn)
	}
	return min((conns+per-1)/per, maxProcs)
}

// expectedDeliveries is how many deliveries the run should see: every accepted event times the
// sessions established on its channel.
func expectedDeliveries(p plan, l ledger, perChannel map[int]int64) int64 {
	e := newExpectation(p, l)
	var n int64
	for c, sessions := range perChannel {
		n += e.accepted(c) * sessions
	}
	return n
}

// drain waits after publishing until the workers have seen the expected deliveries, none have
// arrived for quiet, or ctx ends.
func drain(ctx context.Context, workers []*workerProc, expected int64, quiet time.Duration) {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	last, lastChange := int64(-1), time.Now()
	for {
		var got int64
		for _, w := range workers {
			got += w.progress().Delivered
		}
		if got >= expected {
			return
		}
		if got != last {
			last, lastChange = got, time.Now()
		} else if time.Since(lastChange) >= quiet {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
