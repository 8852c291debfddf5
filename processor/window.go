package processor

// Window assignment. Times are milliseconds since the Unix epoch. Time
// windows are half-open [Start, End). A session window is [Start, End]
// where End is its last event time.

// floorDiv returns floor(a/b) for b > 0, also for negative a.
func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && (a < 0) {
		q--
	}
	return q
}

// tumblingWindow returns the window of size that contains ts.
func tumblingWindow(ts, size int64) (start, end int64) {
	start = floorDiv(ts, size) * size
	return start, start + size
}

// hoppingWindows appends to dst the starts of every window of size,
// advancing by advance, that contains ts, oldest first.
func hoppingWindows(dst []int64, ts, size, advance int64) []int64 {
	last := floorDiv(ts, advance) * advance // the newest window starting at or before ts
	first := last - floorDiv(size-1, advance)*advance
	for s := first; s <= last; s += advance {
		if ts >= s && ts < s+size {
			dst = append(dst, s)
		}
	}
	return dst
}

// session is one session window of a key.
type session struct{ start, end int64 }

// mergeSessions returns the session that a record at ts forms with the
// existing sessions of its key (sorted by start), and the indexes of the
// sessions it absorbs. A session absorbs ts when ts lies within gap of it
// (start-gap <= ts <= end+gap); absorbing may bridge several sessions.
func mergeSessions(existing []session, ts, gap int64) (merged session, absorbed []int) {
	merged = session{ts, ts}
	for i, s := range existing {
		if ts >= s.start-gap && ts <= s.end+gap {
			absorbed = append(absorbed, i)
			merged.start = min(merged.start, s.start)
			merged.end = max(merged.end, s.end)
		}
	}
	return merged, absorbed
}
