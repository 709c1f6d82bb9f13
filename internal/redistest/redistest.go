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
	// exited is closed when cmd's process has exited.
	exited chan struct{}
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
	// The free port is only free until someone takes it: tests starting servers in parallel
	// can race for it, and the loser exits at once, so it tries again on another port.
	var err error
	for range 5 {
		port := freePort(tb)
		s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		s.args = append([]string{
			"--bind", "127.0.0.1", "--port", strconv.Itoa(port),
			"--dir", s.dir, "--save", "", "--appendonly", "no",
			"--daemonize", "no", "--logfile", filepath.Join(s.dir, "redis.log"),
		}, extra...)
		if err = s.start(); err == nil {
			tb.Cleanup(s.Stop)
			return s
		}
	}
	tb.Fatalf("%v\n%s", err, s.log())
	return nil
}

// start runs redis-server with s.args and waits until it answers, or until it exits.
func (s *Server) start() error {
	s.cmd = exec.Command("redis-server", s.args...)
	s.cmd.Dir = s.dir
	if err := s.cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	exited := make(chan struct{})
	cmd := s.cmd
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	s.exited = exited
	deadline := time.Now().Add(10 * time.Second)
	for {
		c := redis.NewClient(&redis.Options{Addr: s.Addr, MaxRetries: -1})
		err := c.Ping(context.Background()).Err()
		c.Close()
		if err == nil {
			return nil
		}
		select {
		case <-exited:
			s.cmd = nil
			return fmt.Errorf("redis-server on %s exited at start", s.Addr)
		default:
		}
		if time.Now().After(deadline) {
			s.Stop()
			return fmt.Errorf("redis-server on %s did not answer: %w", s.Addr, err)
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
	<-s.exited
	s.cmd = nil
}

// Restart starts the server again on the same port after Stop, with empty data.
func (s *Server) Restart() {
	s.tb.Helper()
	if s.args == nil {
		s.tb.Fatalf("cannot restart the Redis of TEST_REDIS_URL")
	}
	s.Stop()
	if err := s.start(); err != nil {
		s.tb.Fatalf("%v\n%s", err, s.log())
	}
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

// Cluster is a Redis Cluster of private redis-server processes on loopback.
type Cluster struct {
	Nodes []*Server
}

// Addrs is the comma-separated seed list for REDIS_CLUSTER_ADDRS.
func (c *Cluster) Addrs() string {
	addrs := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		addrs[i] = n.Addr
	}
	return strings.Join(addrs, ",")
}

// StartCluster starts masters redis-server processes in cluster mode and joins them with
// redis-cli --cluster create (no replicas), waiting until the cluster reports ok. It needs the
// redis-cli binary and is stopped when the test ends.
func StartCluster(tb testing.TB, masters int) *Cluster {
	tb.Helper()
	if _, err := exec.LookPath("redis-cli"); err != nil {
		tb.Fatalf("a Redis Cluster needs redis-cli (apt-get install redis-tools)")
	}
	c := &Cluster{}
	for range masters {
		c.Nodes = append(c.Nodes, Start(tb, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", "2000"))
	}
	if c.Nodes[0].args == nil {
		tb.Fatalf("StartCluster cannot use TEST_REDIS_URL")
	}
	args := []string{"--cluster", "create"}
	for _, n := range c.Nodes {
		args = append(args, n.Addr)
	}
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command("redis-cli", args...).CombinedOutput(); err != nil {
		tb.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	deadline := time.Now().Add(20 * time.Second)
	for _, n := range c.Nodes {
		for {
			cl := redis.NewClient(&redis.Options{Addr: n.Addr})
			info, err := cl.ClusterInfo(context.Background()).Result()
			cl.Close()
			if err == nil && strings.Contains(info, "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				tb.Fatalf("cluster not ok on %s: %v %s", n.Addr, err, info)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return c
}
