// Package config reads Streamgate's environment variables, shared by cmd/api and cmd/worker:
// everything is read, defaulted and validated before anything opens a socket.
package config

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamgate/streamgate/internal/rawconn"
)

// Env reads variables the way os.Getenv does; tests pass their own.
type Env func(string) string

// Redis is where the data lives. Neither URL nor cluster addresses means dev mode.
type Redis struct {
	URL          string
	ClusterAddrs []string
}

// DevMode reports whether no Redis was configured: an embedded in-memory Redis is used.
func (r Redis) DevMode() bool { return r.URL == "" && len(r.ClusterAddrs) == 0 }

// ReadRedis reads REDIS_URL and REDIS_CLUSTER_ADDRS.
func ReadRedis(env Env) (Redis, error) {
	r := Redis{URL: strings.TrimSpace(env("REDIS_URL"))}
	if addrs := strings.TrimSpace(env("REDIS_CLUSTER_ADDRS")); addrs != "" {
		for _, a := range strings.Split(addrs, ",") {
			if a = strings.TrimSpace(a); a != "" {
				r.ClusterAddrs = append(r.ClusterAddrs, a)
			}
		}
		r.URL = "" // the cluster wins
	}
	if r.URL != "" {
		if _, err := redis.ParseURL(r.URL); err != nil {
			return Redis{}, fmt.Errorf("REDIS_URL: %w", err)
		}
	}
	return r, nil
}

// Client opens a client for r with timeouts short enough that a missing Redis answers 503
// quickly instead of hanging requests.
//
// It speaks RESP2 unless REDIS_URL asks for another protocol (?protocol=3): nothing here uses
// what RESP3 adds, and under RESP3 the client looks for push notifications before every
// command's reply, which cost about 5% of a node's CPU per publish.
func (r Redis) Client() (redis.UniversalClient, error) {
	const timeout = 2 * time.Second
	if len(r.ClusterAddrs) > 0 {
		return redis.NewClusterClient(&redis.ClusterOptions{
			Addrs: r.ClusterAddrs, DialTimeout: timeout, ReadTimeout: timeout, WriteTimeout: timeout,
			PoolTimeout: timeout, MaxRetries: 1, Protocol: defaultProtocol,
			ReadBufferSize: connBuffer, WriteBufferSize: connBuffer,
			PipelineReadBufferSize: connBuffer, PipelineWriteBufferSize: connBuffer,
			// go-redis's own dialer (its keep-alive probes: 30 s idle, every 5 s, 3 of them).
			Dialer: rawconn.Dialer(redis.NewDialer(&redis.Options{DialTimeout: timeout})),
		}), nil
	}
	opt, err := r.Options()
	if err != nil {
		return nil, err
	}
	return redis.NewClient(opt), nil
}

// connBuffer sizes each Redis connection's read and write buffers, pipelines' included. The
// client's defaults (32 KiB, 128 KiB for its pipeline pool) suit large values; a node's
// commands and replies are a few hundred bytes, a catch-up's some kilobytes, and what is larger
// goes through in more than one system call. The pools grow to their size in a burst of
// connects and keep every connection afterwards: with the defaults, 3 MB of buffers that a node
// whose clients left kept for good.
const connBuffer = 16 << 10

// defaultProtocol is the RESP version a client speaks unless REDIS_URL names one.
const defaultProtocol = 2

// Options are the single-Redis client's options (see Client).
func (r Redis) Options() (*redis.Options, error) {
	const timeout = 2 * time.Second
	opt, err := redis.ParseURL(r.URL)
	if err != nil {
		return nil, fmt.Errorf("REDIS_URL: %w", err)
	}
	opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout, opt.PoolTimeout = timeout, timeout, timeout, timeout
	opt.MaxRetries = 1
	if opt.Protocol == 0 {
		opt.Protocol = defaultProtocol
	}
	if opt.PipelineReadBufferSize == 0 {
		opt.PipelineReadBufferSize = connBuffer
	}
	if opt.PipelineWriteBufferSize == 0 {
		opt.PipelineWriteBufferSize = connBuffer
	}
	opt.ReadBufferSize, opt.WriteBufferSize = connBuffer, connBuffer
	opt.Dialer = rawconn.Dialer(redis.NewDialer(opt)) // its own, TLS included; raw reads and writes on TCP
	return opt, nil
}

// Reader collects the first error while reading typed variables, so a config function reads
// top to bottom and reports every problem with its variable's name.
type Reader struct {
	Env  Env
	errs []error
}

// String returns the variable or def when unset.
func (r *Reader) String(name, def string) string {
	if v := strings.TrimSpace(r.Env(name)); v != "" {
		return v
	}
	return def
}

// Int returns the variable as an integer in [min, max], or def when unset.
func (r *Reader) Int(name string, def, min, max int) int {
	v := strings.TrimSpace(r.Env(name))
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < min || n > max {
		r.errs = append(r.errs, fmt.Errorf("%s must be an integer from %d to %d, got %q", name, min, max, v))
		return def
	}
	return n
}

// Duration returns the variable as a Go duration ("10s", "500ms") in [min, max], or def.
func (r *Reader) Duration(name string, def, min, max time.Duration) time.Duration {
	v := strings.TrimSpace(r.Env(name))
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < min || d > max {
		r.errs = append(r.errs, fmt.Errorf("%s must be a duration from %s to %s, got %q", name, min, max, v))
		return def
	}
	return d
}

// OneOf returns the variable, which must be one of allowed, or def when unset.
func (r *Reader) OneOf(name, def string, allowed ...string) string {
	v := r.String(name, def)
	for _, a := range allowed {
		if v == a {
			return v
		}
	}
	r.errs = append(r.errs, fmt.Errorf("%s must be one of %s, got %q", name, strings.Join(allowed, ", "), v))
	return def
}

// Key32 returns the variable decoded from base64 as exactly 32 bytes, or nil when unset.
func (r *Reader) Key32(name string) []byte {
	v := strings.TrimSpace(r.Env(name))
	if v == "" {
		return nil
	}
	b, err := base64.StdEncoding.DecodeString(v)
	if err != nil {
		b, err = base64.RawStdEncoding.DecodeString(v)
	}
	if err != nil || len(b) != 32 {
		r.errs = append(r.errs, fmt.Errorf("%s must be base64 of exactly 32 bytes (openssl rand -base64 32)", name))
		return nil
	}
	return b
}

// Fail records a problem found by the caller.
func (r *Reader) Fail(err error) { r.errs = append(r.errs, err) }

// Err returns every problem found, or nil.
func (r *Reader) Err() error { return errors.Join(r.errs...) }
