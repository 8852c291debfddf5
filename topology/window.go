package topology

// Window arithmetic, in milliseconds since the Unix epoch like Kafka
// timestamps. The runtime and Describe share it, so what describe promises
// is what runs.
//
// Tumbling and hopping windows are aligned to the epoch: a window starts at
// a multiple of the advance (of the size, for tumbling windows) and covers
// [start, start+size). A session window covers [first, last] event time of
// its records.
//
// A window closes when stream time reaches its end plus grace (for a
// session, its last event time plus gap plus grace); from then on, records
// that belong to it are late.

// SizeMillis is the window size; 0 for session windows.
func (w Window) SizeMillis() int64 {
	if w.Type == WindowSession {
		return 0
	}
	return w.Size.Milliseconds()
}

// AdvanceMillis is how far each window starts after the previous one: the
// advance of hopping windows, the size of tumbling windows, 0 for session
// windows.
func (w Window) AdvanceMillis() int64 {
	switch w.Type {
	case WindowTumbling:
		return w.Size.Milliseconds()
	case WindowHopping:
		return w.Advance.Milliseconds()
	}
	return 0
}

// GapMillis is the session gap; 0 for other windows.
func (w Window) GapMillis() int64 {
	if w.Type != WindowSession {
		return 0
	}
	return w.Gap.Milliseconds()
}

// GraceMillis is the grace period.
func (w Window) GraceMillis() int64 { return w.Grace.Milliseconds() }

// Starts returns the starts of the tumbling or hopping windows that contain
// event time ts, earliest first: one for tumbling windows, about
// size/advance for hopping ones. It returns nil for session windows.
func (w Window) Starts(ts int64) []int64 {
	size, adv := w.SizeMillis(), w.AdvanceMillis()
	if size <= 0 || adv <= 0 {
		return nil
	}
	last := floorDiv(ts, adv) * adv           // the latest start <= ts
	first := floorDiv(ts-size, adv)*adv + adv // the earliest start > ts-size
	var out []int64
	for st := first; st <= last; st += adv {
		out = append(out, st)
	}
	return out
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}
