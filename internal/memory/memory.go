// Package memory keeps the api's resident memory close to what it uses: a limit for the Go
// runtime taken from the container when none is set, and heap returned to the system after a
// burst (of connects, of publishes) instead of being kept for the next one.
//
// Go returns free heap to the system gradually and keeps up to about the heap goal (twice the
// live heap by default) in reserve. A node that held 10,000 connection attempts a second ago
// and holds 10,000 idle streams now would otherwise keep the burst's memory for minutes.
package memory

import (
	"context"
	"log/slog"
	"math"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"time"
)

// LimitFromContainer sets the Go runtime's soft memory limit to 90% of the container's (cgroup
// v2 memory.max, else cgroup v1 memory.limit_in_bytes) unless GOMEMLIMIT is set or there is no
// limit. It returns the limit set, or 0.
func LimitFromContainer(getenv func(string) string, log *slog.Logger) int64 {
	if getenv("GOMEMLIMIT") != "" {
		return 0
	}
	limit := containerLimit("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")
	if limit <= 0 {
		return 0
	}
	set := limit / 10 * 9
	debug.SetMemoryLimit(set)
	log.Info("memory limit from the container", "container_bytes", limit, "go_limit_bytes", set)
	return set
}

// containerLimit reads the first of files that holds a byte count; "max" and the cgroup v1
// "no limit" value (near MaxInt64) mean none.
func containerLimit(files ...string) int64 {
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		if err != nil || n <= 0 || n > math.MaxInt64/2 {
			return 0
		}
		return n
	}
	return 0
}

// Trimmer returns free heap to the system once a burst is over.
type Trimmer struct {
	// Every is how often the heap is looked at.
	Every time.Duration
	// MinFree is free heap worth returning: below it, nothing is done.
	MinFree uint64
	// Gap is the least time between two returns (each is a full collection).
	Gap time.Duration

	last      time.Time
	lastInUse uint64
}

// NewTrimmer looks every 2 s and, once the heap in use stops growing (the burst is over),
// returns free heap above 32 MiB that is also more than half the heap in use, at most once
// every 10 s.
func NewTrimmer() *Trimmer {
	return &Trimmer{Every: 2 * time.Second, MinFree: 32 << 20, Gap: 10 * time.Second}
}

// Run trims until ctx ends.
func (t *Trimmer) Run(ctx context.Context) {
	tick := time.NewTicker(t.Every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			t.Step(now)
		}
	}
}

// Step looks at the heap once and returns its free part if that is worth it. It reports
// whether it did.
func (t *Trimmer) Step(now time.Time) bool {
	if !t.last.IsZero() && now.Sub(t.last) < t.Gap {
		return false
	}
	free, inUse := Heap()
	growing := inUse > t.lastInUse+t.lastInUse/20
	t.lastInUse = inUse
	if growing || free < t.MinFree || free < inUse/2 {
		return false
	}
	t.last = now
	debug.FreeOSMemory()
	return true
}

// Heap returns the heap memory that is free but still held from the system, and the heap
// memory in use by objects.
func Heap() (free, inUse uint64) {
	s := []metrics.Sample{{Name: "/memory/classes/heap/free:bytes"}, {Name: "/memory/classes/heap/objects:bytes"}, {Name: "/memory/classes/heap/unused:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64(), s[1].Value.Uint64() + s[2].Value.Uint64()
}
