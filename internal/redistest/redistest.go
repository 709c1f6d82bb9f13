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

// Client returns a client of the server, closed when the test ends. It speaks RESP2, as the
// nodes' clients do (config.Redis.Client).
func (s *Server) Client() *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: s.Addr, Protocol: 2})
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

// MoveOptions shape a slot move.
type MoveOptions struct {
	// Batch is how many keys each MIGRATE carries (redis-cli's --cluster-pipeline, 10 by
	// default).
	Batch int
	// During, when set, runs once the slot is migrating and again after each batch, with the
	// number of keys moved so far: while it runs the slot's keys are split between the two
	// masters.
	During func(moved int)
}

// MoveSlot moves a hash slot, keys and all, from its master to the master to, the way
// redis-cli --cluster reshard does: to imports it, its master migrates it, the keys go over in
// batches (MIGRATE), then to and its old master, then the other masters, are told the slot's
// new owner. It returns once every master sees to as the owner.
func (c *Cluster) MoveSlot(tb testing.TB, slot int, to *Server, opts MoveOptions) {
	tb.Helper()
	if opts.Batch <= 0 {
		opts.Batch = 10
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	clients := make(map[*Server]*redis.Client, len(c.Nodes))
	ids := make(map[*Server]string, len(c.Nodes))
	for _, n := range c.Nodes {
		cl := redis.NewClient(&redis.Options{Addr: n.Addr})
		defer cl.Close()
		id, err := cl.ClusterMyID(ctx).Result()
		if err != nil {
			tb.Fatalf("CLUSTER MYID on %s: %v", n.Addr, err)
		}
		clients[n], ids[n] = cl, id
	}
	from := c.MasterOf(tb, slot)
	if from == to {
		tb.Fatalf("slot %d is on %s already", slot, to.Addr)
	}
	do := func(n *Server, args ...any) {
		tb.Helper()
		if err := clients[n].Do(ctx, args...).Err(); err != nil {
			tb.Fatalf("%v on %s: %v", args, n.Addr, err)
		}
	}
	do(to, "CLUSTER", "SETSLOT", slot, "IMPORTING", ids[from])
	do(from, "CLUSTER", "SETSLOT", slot, "MIGRATING", ids[to])
	host, port, _ := net.SplitHostPort(to.Addr)
	moved := 0
	for {
		if opts.During != nil {
			opts.During(moved)
		}
		ks, err := clients[from].ClusterGetKeysInSlot(ctx, slot, opts.Batch).Result()
		if err != nil {
			tb.Fatalf("CLUSTER GETKEYSINSLOT on %s: %v", from.Addr, err)
		}
		if len(ks) == 0 {
			break
		}
		args := []any{"MIGRATE", host, port, "", 0, 10000, "REPLACE", "KEYS"}
		for _, k := range ks {
			args = append(args, k)
		}
		do(from, args...)
		moved += len(ks)
	}
	do(to, "CLUSTER", "SETSLOT", slot, "NODE", ids[to])
	do(from, "CLUSTER", "SETSLOT", slot, "NODE", ids[to])
	for _, n := range c.Nodes {
		if n != to && n != from {
			do(n, "CLUSTER", "SETSLOT", slot, "NODE", ids[to])
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for _, n := range c.Nodes {
		for c.ownerSeenBy(tb, n, slot) != to.Addr {
			if time.Now().After(deadline) {
				tb.Fatalf("%s does not see slot %d on %s", n.Addr, slot, to.Addr)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// MasterOf returns the master serving slot, as the first node sees it.
func (c *Cluster) MasterOf(tb testing.TB, slot int) *Server {
	tb.Helper()
	addr := c.ownerSeenBy(tb, c.Nodes[0], slot)
	for _, n := range c.Nodes {
		if n.Addr == addr {
			return n
		}
	}
	tb.Fatalf("slot %d is served by %q, not a node of the cluster", slot, addr)
	return nil
}

// ownerSeenBy returns the address of the master serving slot in n's view.
func (c *Cluster) ownerSeenBy(tb testing.TB, n *Server, slot int) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cl := redis.NewClient(&redis.Options{Addr: n.Addr})
	defer cl.Close()
	shards, err := cl.ClusterShards(ctx).Result()
	if err != nil {
		tb.Fatalf("CLUSTER SHARDS on %s: %v", n.Addr, err)
	}
	for _, sh := range shards {
		for _, r := range sh.Slots {
			if int64(slot) < r.Start || int64(slot) > r.End {
				continue
			}
			for _, node := range sh.Nodes {
				if node.Role == "master" {
					return net.JoinHostPort(node.IP, strconv.FormatInt(node.Port, 10))
				}
			}
		}
	}
	return ""
}

// Slot returns the hash slot of key (its hash tag's, when it has one), asking the cluster.
func (c *Cluster) Slot(tb testing.TB, key string) int {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cl := redis.NewClient(&redis.Options{Addr: c.Nodes[0].Addr})
	defer cl.Close()
	slot, err := cl.ClusterKeySlot(ctx, key).Result()
	if err != nil {
		tb.Fatalf("CLUSTER KEYSLOT: %v", err)
	}
	return int(slot)
}
