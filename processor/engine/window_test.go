package engine

import (
	"slices"
	"testing"

	"github.com/eddy-streams/eddy/topology"
)

// The window arithmetic is topology.WindowRule's; these check it as the
// engine uses it.

func tumblingWindow(ts, size int64) (int64, int64) {
	s := topology.WindowRule{Type: topology.WindowTumbling, Size: size, Advance: size}.AppendStarts(nil, ts)[0]
	return s, s + size
}

func hoppingWindows(dst []int64, ts, size, adv int64) []int64 {
	return topology.WindowRule{Type: topology.WindowHopping, Size: size, Advance: adv}.AppendStarts(dst, ts)
}

func TestTumblingWindow(t *testing.T) {
	for _, c := range []struct{ ts, size, start int64 }{
		{0, 10, 0}, {9, 10, 0}, {10, 10, 10}, {-1, 10, -10}, {-10, 10, -10}, {-11, 10, -20},
		{1_700_000_059_999, 60_000, 1_700_000_040_000},
	} {
		s, e := tumblingWindow(c.ts, c.size)
		if s != c.start || e != c.start+c.size {
			t.Errorf("tumblingWindow(%d, %d) = [%d,%d), want [%d,%d)", c.ts, c.size, s, e, c.start, c.start+c.size)
		}
	}
}

func TestHoppingWindows(t *testing.T) {
	for _, c := range []struct {
		ts, size, adv int64
		want          []int64
	}{
		{ts: 12, size: 10, adv: 5, want: []int64{5, 10}},
		{ts: 10, size: 10, adv: 5, want: []int64{5, 10}},
		{ts: 9, size: 10, adv: 5, want: []int64{0, 5}},
		{ts: 0, size: 10, adv: 10, want: []int64{0}},
		{ts: 7, size: 10, adv: 3, want: []int64{0, 3, 6}},
		{ts: -1, size: 10, adv: 5, want: []int64{-10, -5}},
		{ts: 59, size: 60, adv: 20, want: []int64{0, 20, 40}},
	} {
		got := hoppingWindows(nil, c.ts, c.size, c.adv)
		if !slices.Equal(got, c.want) {
			t.Errorf("hoppingWindows(ts=%d, size=%d, advance=%d) = %v, want %v", c.ts, c.size, c.adv, got, c.want)
		}
		// Independent check: every window containing ts, by brute force.
		var brute []int64
		for s := c.ts - c.size - c.adv; s <= c.ts; s++ {
			if s%c.adv == 0 && c.ts >= s && c.ts < s+c.size {
				brute = append(brute, s)
			}
		}
		if !slices.Equal(got, brute) {
			t.Errorf("hoppingWindows(ts=%d, size=%d, advance=%d) = %v, brute force says %v", c.ts, c.size, c.adv, got, brute)
		}
	}
}

func TestMergeSessions(t *testing.T) {
	ex := []session{{0, 10}, {25, 30}, {100, 100}}
	for _, c := range []struct {
		ts       int64
		merged   session
		absorbed []int
	}{
		{ts: 5, merged: session{0, 10}, absorbed: []int{0}},
		{ts: 18, merged: session{0, 30}, absorbed: []int{0, 1}}, // bridges two sessions
		{ts: 20, merged: session{0, 30}, absorbed: []int{0, 1}}, // exactly gap from both
		{ts: 45, merged: session{45, 45}, absorbed: nil},        // a new session
		{ts: 39, merged: session{25, 39}, absorbed: []int{1}},   // extends the end
		{ts: 41, merged: session{41, 41}, absorbed: nil},        // just past the gap: a new session
		{ts: 90, merged: session{90, 100}, absorbed: []int{2}},  // extends the start
		{ts: -10, merged: session{-10, 10}, absorbed: []int{0}},
	} {
		m, abs := mergeSessions(ex, c.ts, 10)
		if m != c.merged || !slices.Equal(abs, c.absorbed) {
			t.Errorf("mergeSessions(ts=%d) = %v %v, want %v %v", c.ts, m, abs, c.merged, c.absorbed)
		}
	}
}
