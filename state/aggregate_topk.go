package state

// The heavy-hitters sketch of op top_k: a Misra-Gries summary, in its
// mergeable form (Agarwal, Cormode, Huang, Phillips, Wei and Yi,
// "Mergeable Summaries", PODS 2012).
//
// A summary of capacity m keeps at most m (value, counter) pairs and n,
// the number of values fed to it (directly or through merges). Adding a
// value increments its counter, or inserts it with 1 when fewer than m
// values are kept, or else decrements every counter by one (dropping
// those that reach 0) without inserting it. Merging adds the counters;
// when more than m remain, the (m+1)-th largest counter c is subtracted
// from every counter and those left at 0 or below are dropped.
//
// Error bound, kept through any sequence of adds and merges: with s the
// sum of the kept counters, every value's counter c and its true count f
// satisfy c <= f <= c + (n-s)/(m+1), and a value not kept has f <=
// (n-s)/(m+1). Each decrement step lowers the sum by at least m+1 times
// what it takes from any one value. While at most m distinct values were
// fed, nothing is ever decremented and the summary is exact.
//
// Unlike the other aggregates, the summary is not order independent once
// it has decremented: two rows fed the same values in different orders
// (or split differently between merged rows) may keep different counters,
// each within the bound. Below m distinct values it is exact, so order
// independent.
//
// Encoding (the payload of op top_k in a row, see AppendBinary):
//
//	topk = n:uv k:uv (len:uv value:len*byte count:uv)*k
//
// with the k entries sorted by value, strictly ascending, and counts >= 1
// summing to at most n: one encoding per state. The capacity is not
// stored: it comes from the spec, so changing k keeps the state valid (a
// row with more entries than the new capacity is reduced as by a merge).

import (
	"encoding/binary"
	"slices"
	"strings"
)

// TopKCapacity is the number of counters a top_k aggregate of k values
// keeps: ten per value reported, at least 64. topology.TopKCapacity is
// the same rule for describe (topology does not import state); a test
// checks they agree.
func TopKCapacity(k int) int { return max(10*k, 64) }

// TopKEntry is one value of a top_k result and its estimated count: a
// lower bound of its true count (see Row.TopKBound).
type TopKEntry struct {
	Value string
	Count uint64
}

// topK is the Misra-Gries summary of one top_k aggregate.
type topK struct {
	n      uint64            // values fed, through adds and merges
	counts map[string]uint64 // at most capacity entries, each >= 1
}

func newTopK() *topK { return &topK{counts: make(map[string]uint64)} }

func (t *topK) add(s string, capacity int) {
	t.n++
	if c, ok := t.counts[s]; ok {
		t.counts[s] = c + 1
		return
	}
	if len(t.counts) < capacity {
		t.counts[strings.Clone(s)] = 1
		return
	}
	for v, c := range t.counts {
		if c == 1 {
			delete(t.counts, v)
		} else {
			t.counts[v] = c - 1
		}
	}
}

func (t *topK) merge(o *topK, capacity int) {
	t.n += o.n
	for v, c := range o.counts {
		t.counts[v] += c
	}
	t.reduce(capacity)
}

// reduce brings t down to capacity counters: subtract the (capacity+1)-th
// largest counter from all and drop those left at 0.
func (t *topK) reduce(capacity int) {
	if len(t.counts) <= capacity {
		return
	}
	cs := make([]uint64, 0, len(t.counts))
	for _, c := range t.counts {
		cs = append(cs, c)
	}
	slices.SortFunc(cs, func(a, b uint64) int {
		switch {
		case a > b:
			return -1
		case a < b:
			return 1
		}
		return 0
	})
	cut := cs[capacity]
	for v, c := range t.counts {
		if c <= cut {
			delete(t.counts, v)
		} else {
			t.counts[v] = c - cut
		}
	}
}

func (t *topK) clone() *topK {
	c := &topK{n: t.n, counts: make(map[string]uint64, len(t.counts))}
	for v, n := range t.counts {
		c.counts[v] = n
	}
	return c
}

func (t *topK) sum() uint64 {
	var s uint64
	for _, c := range t.counts {
		s += c
	}
	return s
}

// top returns the k entries with the highest counters, highest first, ties
// by value ascending.
func (t *topK) top(k int) []TopKEntry {
	out := make([]TopKEntry, 0, len(t.counts))
	for v, c := range t.counts {
		out = append(out, TopKEntry{Value: v, Count: c})
	}
	slices.SortFunc(out, func(a, b TopKEntry) int {
		switch {
		case a.Count > b.Count:
			return -1
		case a.Count < b.Count:
			return 1
		}
		return strings.Compare(a.Value, b.Value)
	})
	if len(out) > k {
		out = out[:k]
	}
	return out
}

func (t *topK) appendTo(dst []byte) []byte {
	dst = binary.AppendUvarint(dst, t.n)
	dst = binary.AppendUvarint(dst, uint64(len(t.counts)))
	vals := make([]string, 0, len(t.counts))
	for v := range t.counts {
		vals = append(vals, v)
	}
	slices.Sort(vals)
	for _, v := range vals {
		dst = binary.AppendUvarint(dst, uint64(len(v)))
		dst = append(dst, v...)
		dst = binary.AppendUvarint(dst, t.counts[v])
	}
	return dst
}

func (d *rowDecoder) topK(a *acc) {
	n := d.uvarint("top_k total")
	k := d.uvarint("top_k entries")
	if d.err != nil {
		return
	}
	// Each entry takes at least two bytes: a bound before allocating.
	if k > uint64(len(d.b)-d.off)/2 {
		d.fail("top_k: %d entries do not fit in the %d bytes left", k, len(d.b)-d.off)
		return
	}
	t := &topK{n: n, counts: make(map[string]uint64, k)}
	var prev string
	var sum uint64
	for i := uint64(0); i < k; i++ {
		l := d.uvarint("top_k value length")
		v := d.bytes(l, "top_k value")
		c := d.uvarint("top_k count")
		if d.err != nil {
			return
		}
		s := string(v)
		switch {
		case i > 0 && s <= prev:
			d.fail("top_k: values are not in strictly ascending order")
			return
		case c == 0:
			d.fail("top_k: value with a zero count")
			return
		case sum+c < sum || sum+c > n:
			d.fail("top_k: counts sum to more than the total %d", n)
			return
		}
		sum += c
		t.counts[s], prev = c, s
	}
	t.reduce(a.capacity())
	a.tk = t
}

// TopK returns the result of top_k aggregate i: its k values with the
// highest counts, highest first (ties by value), each count a lower bound
// of the true count. Empty when it saw no value; nil when aggregate i is
// not a top_k.
func (r *Row) TopK(i int) []TopKEntry {
	a := &r.accs[i]
	if a.op != OpTopK {
		return nil
	}
	if a.tk == nil {
		return []TopKEntry{}
	}
	return a.tk.top(a.k)
}

// TopKBound returns the error bound of top_k aggregate i: every reported
// count is at most this much below the true count, and a value not
// reported that has a higher true count than the last one reported has a
// count at most this much (see the sketch's comment). It is 0 while the
// aggregate saw at most TopKCapacity(k) distinct values: then the result
// is exact.
func (r *Row) TopKBound(i int) uint64 {
	a := &r.accs[i]
	if a.op != OpTopK || a.tk == nil {
		return 0
	}
	return (a.tk.n - a.tk.sum()) / uint64(a.capacity()+1)
}

func (a *acc) capacity() int { return TopKCapacity(a.k) }

// topKPayload reads a length-prefixed top_k payload.
func (d *rowDecoder) topKPayload(a *acc) {
	n := d.uvarint("top_k length")
	if n == 0 || d.err != nil {
		return
	}
	p := d.bytes(n, "top_k")
	if d.err != nil {
		return
	}
	sub := rowDecoder{b: p, acc: d.acc}
	sub.topK(a)
	if sub.err == nil && sub.off != len(p) {
		sub.fail("top_k: %d trailing bytes", len(p)-sub.off)
	}
	if sub.err != nil {
		d.err = sub.err
	}
}
