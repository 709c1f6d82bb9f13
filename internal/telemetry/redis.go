package telemetry

import (
	"context"
	"errors"
	"net"
	"strings"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// The kinds of Redis errors counted by CountRedisErrors.
const (
	RedisErrorTimeout = "timeout" // no answer in time: Redis busy, paused, or the link slow
	RedisErrorNetwork = "network" // no connection: refused, reset, closed
	RedisErrorServer  = "server"  // Redis answered with an error: OOM, READONLY, MOVED left over, LOADING…
)

// expectedReplies are error replies that are part of normal work, not faults: a script not
// cached yet (it is loaded and run again), and the update stream's own backpressure answer.
var expectedReplies = []string{"NOSCRIPT", "FULL "}

// CountRedisErrors counts the failed commands, pipelines and dials of rdb on m, as
// streamgate.redis.errors{kind}. A missing key (redis.Nil), a caller that went away and the
// expected replies above are not failures.
func CountRedisErrors(rdb redis.UniversalClient, m metric.Meter) error {
	c, err := m.Int64Counter(MetricRedisErrors, metric.WithUnit("{error}"),
		metric.WithDescription("Redis commands, pipelines and connections that failed, by kind (timeout, network, server)."))
	if err != nil {
		return err
	}
	kinds := map[string]metric.AddOption{}
	for _, k := range []string{RedisErrorTimeout, RedisErrorNetwork, RedisErrorServer} {
		kinds[k] = metric.WithAttributeSet(attribute.NewSet(attribute.String("kind", k)))
		c.Add(context.Background(), 0, kinds[k]) // every series exists from start, at 0
	}
	rdb.AddHook(errorHook{count: func(ctx context.Context, cmd redis.Cmder, err error) {
		if err == nil || (cmd != nil && handshake(cmd)) {
			return // the common case first: every command of the node passes here
		}
		if k := RedisErrorKind(err); k != "" {
			c.Add(context.WithoutCancel(ctx), 1, kinds[k])
		}
	}})
	return nil
}

// RedisErrorKind tells which kind of failure err is, or "" when it is none.
func RedisErrorKind(err error) string {
	if err == nil || errors.Is(err, redis.Nil) || errors.Is(err, context.Canceled) {
		return ""
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return RedisErrorTimeout
	}
	var nerr net.Error
	if errors.As(err, &nerr) && nerr.Timeout() {
		return RedisErrorTimeout
	}
	var rerr redis.Error
	if errors.As(err, &rerr) {
		for _, p := range expectedReplies {
			if strings.HasPrefix(rerr.Error(), p) {
				return ""
			}
		}
		return RedisErrorServer
	}
	return RedisErrorNetwork
}

// handshake tells the commands the client sends on a new connection to learn what the server
// supports: a server too old for them answers an error that is no fault.
func handshake(cmd redis.Cmder) bool {
	args := cmd.Args()
	if cmd.Name() != "client" || len(args) < 2 {
		return false
	}
	sub, _ := args[1].(string)
	return strings.EqualFold(sub, "setinfo") || strings.EqualFold(sub, "maint_notifications")
}

// errorHook hands the error of every dial, command and pipeline to count (cmd is nil for a
// dial; for a pipeline, each failed command is counted).
type errorHook struct {
	count func(ctx context.Context, cmd redis.Cmder, err error)
}

func (h errorHook) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := next(ctx, network, addr)
		h.count(ctx, nil, err)
		return conn, err
	}
}

func (h errorHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		h.count(ctx, cmd, err)
		return err
	}
}

func (h errorHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		if err == nil {
			return nil
		}
		counted := false
		for _, cmd := range cmds {
			if cerr := cmd.Err(); cerr != nil {
				h.count(ctx, cmd, cerr)
				counted = true
			}
		}
		if !counted {
			h.count(ctx, nil, err)
		}
		return err
	}
}
