package main

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/streamgate/streamgate/internal/redistest"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// apiBinary builds this command once per test run, for tests that need a real process (one
// they can SIGKILL).
func apiBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "streamgate-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "api")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = err
			binPath = string(out)
		}
	})
	if buildErr != nil {
		t.Fatalf("build api: %v\n%s", buildErr, binPath)
	}
	return binPath
}

// processNode is an api started as its own process.
type processNode struct {
	*node
	cmd *exec.Cmd
}

func startProcessNode(t testing.TB, rs *redistest.Server, env map[string]string) *processNode {
	t.Helper()
	cmd := exec.Command(apiBinary(t))
	cmd.Env = append(os.Environ(),
		"REDIS_URL="+rs.URL(), "STREAMGATE_ADDR=127.0.0.1:0", "STREAMGATE_ADMIN_TOKEN="+testAdminToken,
		"STREAMGATE_SECRET_KEY="+testSecretKey, "STREAMGATE_DRAIN_DELAY=0")
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &processNode{node: &node{t: t, Redis: rs, logs: newLogSink()}, cmd: cmd}
	p.node.cancel = func() { _ = cmd.Process.Signal(syscall.SIGTERM) }
	p.node.done = make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			p.logs.Write(append(sc.Bytes(), '\n'))
		}
		p.node.done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.node.done
	})
	select {
	case addr := <-p.logs.listening:
		p.URL = "http://" + addr
	case <-time.After(20 * time.Second):
		t.Fatalf("api process did not start\n%s", p.logs)
	}
	p.waitReady()
	return p
}

// Kill ends the process with SIGKILL: no goodbye to clients, Redis or the cluster.
func (p *processNode) Kill() {
	_ = p.cmd.Process.Kill()
}
