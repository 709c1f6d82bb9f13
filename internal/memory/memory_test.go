package memory

import (
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"runtime/debug"
	"testing"
	"time"
)

var sink [][]byte

// burst allocates n MiB and drops it.
func burst(n int) {
	for range n {
		sink = append(sink, make([]byte, 1<<20))
	}
	sink = nil
}

// A burst's memory goes back once the burst is over: freed heap still held, and garbage no
// collection has looked at yet; not while the heap grows, not twice within the gap, and not
// when there is little to return.
func TestTrimmerReturnsABurst(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(-1)) // no collection but the trimmer's
	runtime.GC()
	debug.FreeOSMemory()
	tr := &Trimmer{MinFree: 32 << 20, Gap: time.Minute}
	now := time.Now()
	tr.Step(now) // the starting point
	now = now.Add(2 * time.Minute)

	// Garbage nobody collected: 200 MiB in use as far as the heap knows.
	burst(200)
	_, before := read()
	tr.lastInUse = before // the burst is over: not growing any more
	if !tr.Step(now) {
		t.Fatal("a step after a 200 MiB burst did nothing")
	}
	if free, inUse := read(); inUse > before-150<<20 || free >= 32<<20 {
		t.Errorf("after the step: %d MiB in use (%d before), %d MiB free still held", inUse>>20, before>>20, free>>20)
	}

	// Freed by a collection but still held.
	burst(200)
	runtime.GC()
	if free, _ := read(); free < 100<<20 {
		t.Fatalf("only %d MiB free after dropping 200 MiB and a collection", free>>20)
	}
	_, tr.lastInUse = read()
	if tr.Step(now.Add(time.Second)) {
		t.Error("a second return within the gap")
	}
	now = now.Add(2 * time.Minute)
	if !tr.Step(now) {
		t.Error("a step with 200 MiB free did nothing")
	}
	if free, _ := read(); free >= 32<<20 {
		t.Errorf("%d MiB free still held after the step", free>>20)
	}

	// While the heap in use grows (a burst under way), nothing is returned.
	burst(100)
	now = now.Add(2 * time.Minute)
	if tr.Step(now) {
		t.Error("memory returned while the heap in use was growing by 100 MiB")
	}
	if !tr.Step(now.Add(2 * time.Second)) {
		t.Error("nothing returned once the heap stopped growing")
	}

	// Nothing to return.
	if tr.Step(now.Add(4 * time.Minute)) {
		t.Error("a step with nothing to return returned memory")
	}
}

// Memory goes back once much of what the node held is gone (clients left, their streams with
// them), though the heap never looked freed: what they held is garbage no collection has seen.
func TestTrimmerReturnsWhenClientsLeave(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(-1)) // no collection but the trimmer's
	runtime.GC()
	debug.FreeOSMemory()
	streams := make([][]byte, 2*goneHeld)
	open := 0
	tr := &Trimmer{MinFree: 1 << 40, Gap: time.Minute, Held: func() int { return open }} // neither free nor grown heap ever counts
	now := time.Now()
	tr.Step(now)

	for i := range streams {
		streams[i] = make([]byte, 4<<10) // what a stream holds
	}
	open = len(streams)
	now = now.Add(2 * time.Minute)
	if tr.Step(now) {
		t.Fatal("memory returned while every stream was open")
	}
	clear(streams)
	open = goneHeld / 2
	now = now.Add(2 * time.Second)
	_, before := read()
	tr.lastInUse = before
	if !tr.Step(now) {
		t.Fatalf("nothing returned after %d of %d streams ended", 2*goneHeld-open, 2*goneHeld)
	}
	if _, inUse := read(); inUse > before-4<<20 {
		t.Errorf("after the step: %d KiB in use, %d KiB before", inUse>>10, before>>10)
	}
	if tr.Step(now.Add(2 * time.Minute)) {
		t.Error("returned again with nothing gone since")
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

// A map emptied after a burst is replaced by one sized to what is left; a map that only
// breathes a little is kept as it is.
func TestShrink(t *testing.T) {
	m := make(map[int]int)
	high := 0
	for i := range 10_000 {
		m[i] = i
	}
	copies := 0
	for i := range 9_000 {
		delete(m, i)
		before := reflect.ValueOf(m).UnsafePointer()
		m = Shrink(m, &high)
		if reflect.ValueOf(m).UnsafePointer() != before {
			copies++
		}
	}
	if copies != 1 {
		t.Errorf("%d copies while 10,000 entries went down to 1,000, want 1 (at a quarter)", copies)
	}
	if len(m) != 1_000 || m[9_500] != 9_500 {
		t.Fatalf("after shrinking: %d entries, m[9500] = %d; want 1,000 and the value kept", len(m), m[9_500])
	}
	small := map[int]int{1: 1, 2: 2}
	h := 0
	delete(small, 1)
	if got := Shrink(small, &h); reflect.ValueOf(got).UnsafePointer() != reflect.ValueOf(small).UnsafePointer() {
		t.Error("a small map was copied")
	}
}

// What a shrunk map holds on to is what its entries need, not what the burst made it grow to.
func TestShrinkGivesMemoryBack(t *testing.T) {
	var m map[int][8]int64
	high := 0
	live := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	base := live()
	m = make(map[int][8]int64)
	for i := range 200_000 {
		m[i] = [8]int64{}
	}
	full := live() - base
	for i := range 199_000 {
		delete(m, i)
		m = Shrink(m, &high)
	}
	if left := live() - base; left > full/10 {
		t.Errorf("a map of 1,000 entries holds %d KiB after shrinking, %d KiB at 200,000", left>>10, full>>10)
	}
	runtime.KeepAlive(m)
}
