// Package redistest starts private redis-server processes for tests, so that tests never share
// state through a common Redis and can stop and restart theirs at will.
//
// TEST_REDIS_URL points every test at an existing server instead. Where neither that nor a
// redis-server binary is available, tests fail with a message saying so: there is no fake.
package redistest

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Server is one redis-server process owned by a test.
type Server struct {
	tb   testing.TB
	Addr string // host:port
	dir  string
	args []string
	cmd  *exec.Cmd
}

// URL is the redis:// URL of the server.
func (s *Server) URL() string { return "redis://" + s.Addr }

// Start runs a private redis-server on a free loopback port, with its own temporary directory,
// and stops it when the test ends. extra are additional redis-server arguments.
// With TEST_REDIS_URL set it returns a Server for that URL, which Stop and Restart refuse.
func Start(tb testing.TB, extra ...string) *Server {
	tb.Helper()
	if u := os.Getenv("TEST_REDIS_URL"); u != "" {
		opt, err := redis.ParseURL(u)
		if err != nil {
			tb.Fatalf("TEST_REDIS_URL: %v", err)
		}
		return &Server{tb: tb, Addr: opt.Addr}
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		tb.Fatalf("tests need a real Redis: install redis-server (apt-get install redis-server) or set TEST_REDIS_URL")
	}
	s := &Server{tb: tb, dir: tb.TempDir()}
	port := freePort(tb)
	s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	s.args = append([]string{
		"--bind", "127.0.0.1", "--port", strconv.Itoa(port),
		"--dir", s.dir, "--save", "", "--appendonly", "no",
		"--daemonize", "no", "--logfile", filepath.Join(s.dir, "redis.log"),
	}, extra...)
	s.start()
	tb.Cleanup(s.Stop)
	return s
}

func (s *Server) start() {
	s.tb.Helper()
	s.cmd = exec.Command("redis-server", s.args...)
	s.cmd.Dir = s.dir
	if err := s.cmd.Start(); err != nil {
		s.tb.Fatalf("start redis-server: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c := redis.NewClient(&redis.Options{Addr: s.Addr, MaxRetries: -1})
		err := c.Ping(context.Background()).Err()
		c.Close()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			s.tb.Fatalf("redis-server on %s did not answer: %v\n%s", s.Addr, err, s.log())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Stop kills the server (idempotent). The port stays reserved for Restart only by convention.
func (s *Server) Stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}

// Restart starts the server again on the same port after Stop, with empty data.
func (s *Server) Restart() {
	s.tb.Helper()
	if s.args == nil {
		s.tb.Fatalf("cannot restart the Redis of TEST_REDIS_URL")
	}
	s.Stop()
	s.start()
}

// Client returns a client of the server, closed when the test ends.
func (s *Server) Client() *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: s.Addr})
	s.tb.Cleanup(func() { c.Close() })
	return c
}

func (s *Server) log() string {
	if s.dir == "" {
		return ""
	}
	f, err := os.Open(filepath.Join(s.dir, "redis.log"))
	if err != nil {
		return ""
	}
	defer f.Close()
	var b strings.Builder
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fmt.Fprintln(&b, sc.Text())
	}
	return b.String()
}

func freePort(tb testing.TB) int {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
