package state

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"sort"
	"testing"
)

// exactCounts counts each value of vals: the reference the sketch is
// checked against (plain loops, no sketch code).
func exactCounts(vals []string) map[string]uint64 {
	c := make(map[string]uint64)
	for _, v := range vals {
		c[v]++
	}
	return c
}

// exactTop is the exact top k of counts: highest count first, ties by
// value ascending.
func exactTop(counts map[string]uint64, k int) []TopKEntry {
	var all []TopKEntry
	for v, n := range counts {
		all = append(all, TopKEntry{Value: v, Count: n})
	}
	sort.Slice(all, func(i, j int) bool {
		if all[i].Count != all[j].Count {
			return all[i].Count > all[j].Count
		}
		return all[i].Value < all[j].Value
	})
	if len(all) > k {
		all = all[:k]
	}
	return all
}

// zipfValues draws n values from a skewed distribution over distinct
// values: value i has weight about 1/(i+1).
func zipfValues(rng *rand.Rand, n, distinct int) []string {
	z := rand.NewZipf(rng, 1.1, 1, uint64(distinct-1))
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("v%04d", z.Uint64())
	}
	return out
}

// splitMerge feeds vals to parts rows (each value to a random row), then
// merges the rows in a random order into one, round-tripping every row
// through its encoding first, as rows travel through changelogs.
func splitMerge(t *testing.T, rng *rand.Rand, specs []AggSpec, vals []string, parts int) *Row {
	t.Helper()
	rows := make([]*Row, parts)
	for i := range rows {
		rows[i] = NewRow(specs)
	}
	for _, v := range vals {
		rows[rng.IntN(parts)].AddString(0, v)
	}
	for i, r := range rows {
		d, err := DecodeRow(specs, r.AppendBinary(nil))
		if err != nil {
			t.Fatal(err)
		}
		rows[i] = d
	}
	rng.Shuffle(len(rows), func(i, j int) { rows[i], rows[j] = rows[j], rows[i] })
	for len(rows) > 1 {
		// Merge two random rows: a random merge tree.
		i := rng.IntN(len(rows) - 1)
		rows[i].Merge(rows[i+1])
		rows = append(rows[:i+1], rows[i+2:]...)
	}
	return rows[0]
}

// TestTopKExactBelowCapacity: while a window has at most TopKCapacity(k)
// distinct values, top_k is exact whatever the order and the merges, and
// its bound is 0.
func TestTopKExactBelowCapacity(t *testing.T) {
	for seed := uint64(1); seed <= 20; seed++ {
		rng := rand.New(rand.NewPCG(seed, 7))
		k := 1 + rng.IntN(10)
		distinct := 1 + rng.IntN(TopKCapacity(k))
		vals := zipfValues(rng, 5000, distinct)
		specs := []AggSpec{{Op: OpTopK, K: k}}

		seq := NewRow(specs)
		for _, v := range vals {
			seq.AddString(0, v)
		}
		merged := splitMerge(t, rng, specs, vals, 1+rng.IntN(8))
		want := exactTop(exactCounts(vals), k)
		for name, r := range map[string]*Row{"sequential": seq, "merged": merged} {
			if got := r.TopK(0); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("seed %d, k %d, %d distinct, %s: got %v, want %v", seed, k, distinct, name, got, want)
			}
			if b := r.TopKBound(0); b != 0 {
				t.Fatalf("seed %d, %s: bound %d, want 0 below capacity", seed, name, b)
			}
		}
	}
}

// TestTopKMergeErrorBound: with many more distinct values than counters,
// rows fed disjoint parts of a stream and merged in a random tree keep
// the stated bound against the exact counts: every reported count c of a
// value with true count f has c <= f <= c + bound, bound <= n/(m+1), and
// every value whose true count exceeds bound plus the k-th reported count
// is reported.
func TestTopKMergeErrorBound(t *testing.T) {
	decremented := false
	defer func() {
		if !decremented && !t.Failed() {
			t.Error("no run exceeded the capacity: the bound was never exercised")
		}
	}()
	for seed := uint64(1); seed <= 20; seed++ {
		rng := rand.New(rand.NewPCG(seed, 11))
		k := 1 + rng.IntN(5)
		m := TopKCapacity(k)
		n := 20000 + rng.IntN(20000)
		vals := zipfValues(rng, n, 20*m)
		specs := []AggSpec{{Op: OpTopK, K: k}}
		r := splitMerge(t, rng, specs, vals, 1+rng.IntN(16))
		exact := exactCounts(vals)

		bound := r.TopKBound(0)
		decremented = decremented || bound > 0
		if limit := uint64(n) / uint64(m+1); bound > limit {
			t.Fatalf("seed %d: bound %d above n/(m+1) = %d", seed, bound, limit)
		}
		got := r.TopK(0)
		if len(got) != k {
			t.Fatalf("seed %d: %d entries, want %d", seed, len(got), k)
		}
		reported := make(map[string]bool)
		for _, e := range got {
			f := exact[e.Value]
			if e.Count > f || f > e.Count+bound {
				t.Fatalf("seed %d: %s counted %d, true count %d, bound %d", seed, e.Value, e.Count, f, bound)
			}
			reported[e.Value] = true
		}
		kth := got[len(got)-1].Count
		for v, f := range exact {
			if f > kth+bound && !reported[v] {
				t.Fatalf("seed %d: %s has true count %d > k-th count %d + bound %d, and is not reported", seed, v, f, kth, bound)
			}
		}
		// The exact top value of a skewed stream is found.
		if top := exactTop(exact, 1)[0]; got[0].Value != top.Value && exact[got[0].Value] < top.Count-bound {
			t.Fatalf("seed %d: top value %s (true %d), exact top %v", seed, got[0].Value, exact[got[0].Value], top)
		}
	}
}

// TestTopKEncoding: the encoding round-trips, is canonical (the same
// state gives the same bytes, whatever the insertion order), survives a
// change of k (a smaller capacity reduces the row as a merge does), and
// DecodeRow refuses truncated or reordered input without panicking.
func TestTopKEncoding(t *testing.T) {
	specs := []AggSpec{{Op: OpCount}, {Op: OpTopK, K: 2}}
	a, b := NewRow(specs), NewRow(specs)
	vals := []string{"x", "y", "x", "z", "", "x", "y"}
	for i := range vals {
		a.AddString(0, vals[i])
		a.AddString(1, vals[i])
		b.AddString(0, vals[len(vals)-1-i])
		b.AddString(1, vals[len(vals)-1-i])
	}
	ea, eb := a.AppendBinary(nil), b.AppendBinary(nil)
	if !bytes.Equal(ea, eb) {
		t.Fatalf("same values in another order encode differently:\n%x\n%x", ea, eb)
	}
	d, err := DecodeRow(specs, ea)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := fmt.Sprint(d.TopK(1)), "[{x 3} {y 2}]"; got != want {
		t.Fatalf("decoded top_k %s, want %s", got, want)
	}
	if !bytes.Equal(d.AppendBinary(nil), ea) {
		t.Fatal("re-encoding a decoded row changed its bytes")
	}
	if got := NewRow(specs).TopK(1); got == nil || len(got) != 0 {
		t.Fatalf("empty row: %v, want an empty list", got)
	}
	// Every truncation fails cleanly.
	for i := 0; i < len(ea); i++ {
		if _, err := DecodeRow(specs, ea[:i]); err == nil {
			t.Fatalf("truncated to %d bytes: decoded", i)
		}
	}
	// Random corruption never panics.
	rng := rand.New(rand.NewPCG(3, 3))
	for i := 0; i < 2000; i++ {
		c := bytes.Clone(ea)
		c[rng.IntN(len(c))] = byte(rng.IntN(256))
		_, _ = DecodeRow(specs, c)
	}
	// Values out of order are refused.
	r := NewRow([]AggSpec{{Op: OpTopK, K: 1}})
	r.AddString(0, "a")
	r.AddString(0, "b")
	enc := r.AppendBinary(nil)
	swapped := bytes.Replace(bytes.Replace(enc, []byte{1, 'a'}, []byte{1, '#'}, 1), []byte{1, 'b'}, []byte{1, 'a'}, 1)
	swapped = bytes.Replace(swapped, []byte{1, '#'}, []byte{1, 'b'}, 1)
	if _, err := DecodeRow([]AggSpec{{Op: OpTopK, K: 1}}, swapped); err == nil {
		t.Fatal("entries out of order: decoded")
	}
}

// TestTopKCapacity: the capacity rule (processor checks that topology's
// copy, used by describe, agrees).
func TestTopKCapacity(t *testing.T) {
	for k, want := range map[int]int{1: 64, 6: 64, 7: 70, 10: 100, 1000: 10000} {
		if got := TopKCapacity(k); got != want {
			t.Errorf("TopKCapacity(%d) = %d, want %d", k, got, want)
		}
	}
}
