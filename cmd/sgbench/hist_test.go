package main

import (
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
)

func TestBucketBoundsHoldTheirValues(t *testing.T) {
	values := []int64{0, 1, 127, 128, 129, 255, 256, 1000, 1 << 20, 123_456_789, math.MaxInt64 / 3, math.MaxInt64}
	r := rand.New(rand.NewPCG(1, 2))
	for range 10_000 {
		values = append(values, r.Int64N(1<<uint(r.IntN(62)+1)))
	}
	for _, v := range values {
		i := bucketOf(v)
		if i < 0 || i >= histBuckets {
			t.Fatalf("bucketOf(%d) = %d, outside 0…%d", v, i, histBuckets-1)
		}
		lo, hi := bucketBounds(i)
		if v < lo || v > hi {
			t.Fatalf("value %d in bucket %d = [%d, %d]", v, i, lo, hi)
		}
		if width := hi - lo; float64(width) > float64(lo)/histHalf {
			t.Fatalf("bucket %d = [%d, %d] is wider than 1/%d of its floor", i, lo, hi, histHalf)
		}
	}
	// The buckets tile the range: each starts right after the one before.
	for i := 1; i < histBuckets; i++ {
		_, prevHi := bucketBounds(i - 1)
		lo, _ := bucketBounds(i)
		if lo != prevHi+1 {
			t.Fatalf("bucket %d starts at %d, previous ends at %d", i, lo, prevHi)
		}
	}
}

func TestQuantilesMatchASortedSample(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	var h histogram
	var sample []int64
	for range 50_000 {
		v := int64(r.ExpFloat64() * 5e6) // latencies around 5 ms with a long tail
		h.record(v)
		sample = append(sample, v)
	}
	slices.Sort(sample)
	d := h.snapshot()
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999} {
		want := sample[int(math.Ceil(q*float64(len(sample))))-1]
		got := d.quantile(q)
		if got < want || float64(got-want) > float64(want)/histHalf+1 {
			t.Errorf("quantile(%g) = %d, want %d within 1/%d above", q, got, want, histHalf)
		}
	}
	if got, want := d.Max, sample[len(sample)-1]; got != want {
		t.Errorf("max = %d, want %d", got, want)
	}
	if got, want := d.Min, sample[0]; got != want {
		t.Errorf("min = %d, want %d", got, want)
	}
	if got, want := d.quantile(1), sample[len(sample)-1]; got != want {
		t.Errorf("quantile(1) = %d, want the max %d", got, want)
	}
}

func TestMergeIsExact(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	var all histogram
	parts := make([]histogram, 3)
	for range 9_000 {
		v := r.Int64N(1e9)
		all.record(v)
		parts[r.IntN(len(parts))].record(v)
	}
	var merged histData
	for i := range parts {
		merged.merge(parts[i].snapshot())
	}
	want := all.snapshot()
	if !slices.Equal(merged.Buckets, want.Buckets) || merged.Count != want.Count || merged.Sum != want.Sum ||
		merged.Min != want.Min || merged.Max != want.Max {
		t.Fatalf("merged = count %d sum %d min %d max %d, want count %d sum %d min %d max %d (or buckets differ)",
			merged.Count, merged.Sum, merged.Min, merged.Max, want.Count, want.Sum, want.Min, want.Max)
	}
}

func TestEmptyAndConcurrentHistograms(t *testing.T) {
	var empty histData
	if got := empty.quantile(0.99); got != 0 {
		t.Errorf("empty quantile = %d, want 0", got)
	}
	empty.merge(histData{})
	if empty.Count != 0 || empty.mean() != 0 {
		t.Errorf("merging two empty histograms gave %+v", empty)
	}

	var h histogram
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 1000 {
				h.record(int64(g*1000 + i + 1))
			}
		})
	}
	wg.Wait()
	d := h.snapshot()
	if d.Count != 8000 || d.Min != 1 || d.Max != 8000 || d.Sum != 8000*8001/2 {
		t.Errorf("concurrent recording gave count %d min %d max %d sum %d", d.Count, d.Min, d.Max, d.Sum)
	}
	h.record(-5) // a clock step backwards counts as 0, not as a negative latency
	if d := h.snapshot(); d.Min != 0 {
		t.Errorf("min after a negative value = %d, want 0", d.Min)
	}
}
