package minheap

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// TestHeapSorts: pushing random values, interleaved with pops, and popping
// the rest gives every value back, each pop the smallest of those left
// (checked against a sorted copy).
func TestHeapSorts(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	h := New(func(a, b int) bool { return a < b })
	var left []int
	for i := range 5000 {
		v := rng.IntN(1000)
		h.Push(v)
		left = append(left, v)
		if i%3 == 0 {
			slices.Sort(left)
			if got := h.Pop(); got != left[0] {
				t.Fatalf("pop %d = %d, want %d", i, got, left[0])
			}
			left = left[1:]
		}
	}
	slices.Sort(left)
	for i, want := range left {
		if h.Min() != want {
			t.Fatalf("min before pop %d = %d, want %d", i, h.Min(), want)
		}
		if got := h.Pop(); got != want {
			t.Fatalf("final pop %d = %d, want %d", i, got, want)
		}
	}
	if h.Len() != 0 {
		t.Fatalf("len %d after popping everything", h.Len())
	}
}

// TestHeapPushDoesNotAllocate: a heap of int64 pushes without boxing
// (container/heap allocates for each).
func TestHeapPushDoesNotAllocate(t *testing.T) {
	h := New(func(a, b int64) bool { return a < b })
	for i := range 64 {
		h.Push(int64(i))
	}
	for h.Len() > 0 {
		h.Pop()
	}
	allocs := testing.AllocsPerRun(100, func() {
		for i := range 64 {
			h.Push(int64(64 - i))
		}
		for h.Len() > 0 {
			h.Pop()
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per 64 pushes and pops, want 0", allocs)
	}
}
