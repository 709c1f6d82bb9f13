package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"time"
)

// workerProc is one worker process as its coordinator sees it.
type workerProc struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	ready  chan workerReady  // one value, once
	result chan workerResult // one value, once
	exited chan struct{}     // closed when the process has been waited for
	err    error             // why it exited, valid after exited

	mu   sync.Mutex
	prog workerProgress
}

// startWorker re-executes this program as a worker and sends it its config. The worker's
// stderr goes to stderr.
func startWorker(cfg workerConfig, stderr io.Writer) (*workerProc, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find own executable to start workers: %w", err)
	}
	cmd := exec.Command(exe, "-worker")
	cmd.Stderr = stderr
	dieWithParent(cmd)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start worker %d: %w", cfg.Worker, err)
	}
	w := &workerProc{
		cmd: cmd, stdin: stdin,
		ready: make(chan workerReady, 1), result: make(chan workerResult, 1), exited: make(chan struct{}),
	}
	go w.read(stdout)
	if err := json.NewEncoder(stdin).Encode(cfg); err != nil {
		w.kill()
		return nil, fmt.Errorf("configure worker %d: %w", cfg.Worker, err)
	}
	return w, nil
}

// read consumes the worker's stdout until it closes, then waits for the process.
func (w *workerProc) read(stdout io.Reader) {
	defer close(w.exited)
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 0, 64<<10), 64<<20)
	for sc.Scan() {
		var m workerMsg
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			continue
		}
		switch {
		case m.Type == "progress" && m.Progress != nil:
			w.mu.Lock()
			w.prog = *m.Progress
			w.mu.Unlock()
		case m.Type == "ready" && m.Ready != nil:
			select {
			case w.ready <- *m.Ready:
			default:
			}
		case m.Type == "result" && m.Result != nil:
			w.mu.Lock()
			w.prog = workerProgress{Established: m.Result.Established, Failed: m.Result.Failed, Delivered: m.Result.Delivered, Closed: m.Result.Closed}
			w.mu.Unlock()
			select {
			case w.result <- *m.Result:
			default:
			}
		}
	}
	_, _ = io.Copy(io.Discard, stdout)
	w.err = w.cmd.Wait()
}

// progress is the worker's latest count.
func (w *workerProc) progress() workerProgress {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.prog
}

// finish sends the ledger and waits up to timeout for the result. The worker exits after it.
func (w *workerProc) finish(l ledger, timeout time.Duration) (workerResult, error) {
	if err := json.NewEncoder(w.stdin).Encode(finishMsg{Ledger: l}); err != nil {
		return workerResult{}, fmt.Errorf("send ledger: %w", err)
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case r := <-w.result:
		return r, nil
	case <-w.exited:
		select {
		case r := <-w.result:
			return r, nil
		default:
		}
		return workerResult{}, fmt.Errorf("exited without a result: %v", w.err)
	case <-t.C:
		return workerResult{}, errors.New("no result in time")
	}
}

// stop closes the worker's stdin, gives it a few seconds to exit, then kills it, and waits.
// It returns the worker's CPU time.
func (w *workerProc) stop() time.Duration {
	_ = w.stdin.Close()
	t := time.NewTimer(5 * time.Second)
	defer t.Stop()
	select {
	case <-w.exited:
	case <-t.C:
		w.kill()
	}
	if st := w.cmd.ProcessState; st != nil {
		return st.UserTime() + st.SystemTime()
	}
	return 0
}

// kill ends the worker at once and waits for it.
func (w *workerProc) kill() {
	_ = w.cmd.Process.Kill()
	_ = w.stdin.Close()
	<-w.exited
}
