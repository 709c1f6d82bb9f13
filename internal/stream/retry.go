package stream

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// A script whose keys' slot is moving between two Redis Cluster masters (resharding) is refused
// until the move ends: with TRYAGAIN while its keys are split between them (a publish always
// finds some of its keys missing: its request id is new), with ASK or MOVED while the client's
// view of the cluster lags. go-redis follows ASK and MOVED and tries TRYAGAIN again, but within
// milliseconds, and a move lasts until the slot's last key has been migrated. Refused, the
// script did not run: running it again cannot apply it twice.

// scriptAttempts bounds how often RunScript runs a script that Redis refuses for a moving slot:
// with the pauses between, about three seconds.
const scriptAttempts = 12

// RunScript runs s like Script.Run, and runs it again, after a growing pause, while Redis
// Cluster refuses it because its slot is moving, at most scriptAttempts times and within ctx.
// It returns the last attempt's result.
func RunScript(ctx context.Context, rdb redis.Scripter, s *redis.Script, keys []string, args ...any) *redis.Cmd {
	pause := 10 * time.Millisecond
	for attempt := 1; ; attempt++ {
		cmd := s.Run(ctx, rdb, keys, args...)
		if attempt == scriptAttempts || !SlotMoving(cmd.Err()) {
			return cmd
		}
		select {
		case <-time.After(pause):
		case <-ctx.Done():
			return cmd
		}
		pause = min(2*pause, 500*time.Millisecond)
	}
}

// SlotMoving reports whether err is Redis Cluster refusing a command because its slot is being
// moved to another master (or has just been): TRYAGAIN, ASK or MOVED. The command did not run.
func SlotMoving(err error) bool {
	if err == nil || errors.Is(err, redis.Nil) {
		return false
	}
	if redis.IsTryAgainError(err) {
		return true
	}
	if _, ok := redis.IsMovedError(err); ok {
		return true
	}
	if _, ok := redis.IsAskError(err); ok {
		return true
	}
	// A reply go-redis did not type (as it passes through some paths, or a wrapped redis.Error).
	var rerr redis.Error
	if errors.As(err, &rerr) {
		msg := rerr.Error()
		return strings.HasPrefix(msg, "TRYAGAIN") || strings.HasPrefix(msg, "MOVED ") || strings.HasPrefix(msg, "ASK ")
	}
	return false
}
