package memory

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

var sink [][]byte

// After a burst of allocations that are then dropped, a step returns the free heap to the
// system; right after, it waits for its gap; and with little free heap it does nothing.
func TestTrimmerReturnsABurst(t *testing.T) {
	tr := &Trimmer{MinFree: 32 << 20, Gap: time.Minute}
	tr.lastInUse = 1 << 40 // the heap is not growing
	for range 200 {
		sink = append(sink, make([]byte, 1<<20))
	}
	sink = nil
	runtime.GC() // the burst is garbage now, and its memory free heap still held
	if free, _ := Heap(); free < 64<<20 {
		t.Skipf("only %d bytes of free heap after dropping 200 MiB: the runtime returned it already", free)
	}
	now := time.Now()
	if !tr.Step(now) {
		t.Fatal("a step with 200 MiB free did nothing")
	}
	if free, _ := Heap(); free >= 32<<20 {
		t.Errorf("%d bytes of free heap still held after the step", free)
	}
	for range 200 {
		sink = append(sink, make([]byte, 1<<20))
	}
	sink = nil
	runtime.GC()
	if tr.Step(now.Add(time.Second)) {
		t.Error("a second step within the gap returned memory")
	}
	if !tr.Step(now.Add(2 * time.Minute)) {
		t.Error("a step after the gap did nothing")
	}
	// While the heap in use grows (a burst under way), nothing is returned.
	for range 100 {
		sink = append(sink, make([]byte, 1<<20))
	}
	keep := sink
	sink = nil
	for range 100 {
		sink = append(sink, make([]byte, 1<<20))
	}
	sink = nil
	runtime.GC()
	if tr.Step(now.Add(3 * time.Minute)) {
		t.Error("memory returned while the heap in use had grown by 100 MiB")
	}
	runtime.KeepAlive(keep)
	runtime.GC()
	tr.Step(now.Add(5 * time.Minute)) // returns what the burst left
	if tr.Step(now.Add(7 * time.Minute)) {
		t.Error("a step with nothing free returned memory")
	}
}

func TestContainerLimit(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		content string
		want    int64
	}{
		{"536870912\n", 512 << 20},
		{"max\n", 0},
		{"9223372036854771712\n", 0}, // cgroup v1's "no limit"
		{"", 0},
	} {
		if got := containerLimit(write("memory.max", tc.content)); got != tc.want {
			t.Errorf("memory.max %q: %d, want %d", tc.content, got, tc.want)
		}
	}
	if got := containerLimit(filepath.Join(dir, "none"), write("v1", "1073741824")); got != 1<<30 {
		t.Errorf("falling back to the v1 file: %d", got)
	}
	if got := containerLimit(filepath.Join(dir, "none")); got != 0 {
		t.Errorf("no file: %d", got)
	}
}
