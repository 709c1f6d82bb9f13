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
	"runtime"
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
//
// A burst leaves two kinds of memory behind: heap freed by a collection but still held from the
// system, and garbage no collection has looked at yet (the heap's goal is twice what was live,
// so on an idle node the next collection may be two minutes away). Once the heap in use stops
// growing, a Trimmer that sees either runs a collection and returns what is free. When much of
// what the node held has gone since it last returned memory (clients left: Held), it does the
// same, since what they held is garbage no collection may look at for minutes.
type Trimmer struct {
	// Every is how often the heap is looked at.
	Every time.Duration
	// MinFree is memory worth returning (free heap, or heap grown since the last return):
	// below it, nothing is done.
	MinFree uint64
	// Gap is the least time between two returns (each is a full collection).
	Gap time.Duration
	// Held counts what the node holds that a departure frees (its open streams); nil counts
	// the goroutines.
	Held func() int

	last      time.Time
	lastInUse uint64 // heap in use at the previous look
	baseline  uint64 // heap in use right after the last return
	peak      uint64 // the most Held since the last return
}

// goneHeld is how many of what the node held must have gone (and at least a quarter of the most
// there were) for their memory to be worth a return.
const goneHeld = 1000

// NewTrimmer looks every 2 s and, once the heap in use stops growing (the burst is over),
// returns memory when more than 32 MiB can go, at most once every 10 s.
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

// Step looks at the heap once and returns memory if that is worth it. It reports whether it
// did.
func (t *Trimmer) Step(now time.Time) bool {
	free, inUse := read()
	held := t.held()
	growing := inUse > t.lastInUse+t.lastInUse/20
	t.lastInUse = inUse
	t.peak = max(t.peak, held)
	if growing || (!t.last.IsZero() && now.Sub(t.last) < t.Gap) {
		return false
	}
	kept := free >= t.MinFree && free >= inUse/2               // freed, not returned
	grown := inUse >= t.baseline+t.MinFree                     // garbage or new live heap since the last return
	left := t.peak >= held+goneHeld && held <= t.peak-t.peak/4 // clients left since
	if !kept && !grown && !left {
		return false
	}
	t.last = now
	// Two collections: the first moves what sync.Pools hold to their victim caches, the second
	// (FreeOSMemory's) frees it. After a burst of connects those pools still point at the
	// requests' net/http buffers (through pooled gin contexts): kilobytes per connection.
	runtime.GC()
	debug.FreeOSMemory()
	_, t.baseline = read()
	t.lastInUse, t.peak = t.baseline, t.held()
	return true
}

// held is Held, or the number of goroutines.
func (t *Trimmer) held() uint64 {
	if t.Held != nil {
		return uint64(max(t.Held(), 0))
	}
	return uint64(runtime.NumGoroutine())
}

// read returns the heap memory that is free but still held from the system, and the heap
// memory in use by objects.
func read() (free, inUse uint64) {
	s := []metrics.Sample{{Name: "/memory/classes/heap/free:bytes"}, {Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/memory/classes/heap/unused:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64(), s[1].Value.Uint64() + s[2].Value.Uint64()
}

// Shrink returns m, or a copy of m sized to what it holds once that is under a quarter of the
// most it held since it was last sized, which *high tracks: Go maps never give back the room a
// burst of entries made them grow to. Call it after deleting from m and keep what it returns;
// copying is amortised over the deletes that led to it.
func Shrink[M ~map[K]V, K comparable, V any](m M, high *int) M {
	n := len(m)
	*high = max(*high, n+1) // m held one more before the delete
	if *high < shrinkFrom || n > *high/4 {
		return m
	}
	*high = n
	// Not maps.Clone: it keeps the capacity of what it copies.
	out := make(M, n)
	for k, v := range m {
		out[k] = v
	}
	return out
}

// shrinkFrom is the size below which a map is not worth resizing.
const shrinkFrom = 1024
