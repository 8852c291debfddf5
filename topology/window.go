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
func (w Window) Starts(ts int64) []int64 { return w.Rule().AppendStarts(nil, ts) }

// Rule is the window in milliseconds, the form the runtime evaluates.
func (w Window) Rule() WindowRule {
	return WindowRule{Type: w.Type, Size: w.SizeMillis(), Advance: w.AdvanceMillis(),
		Gap: w.GapMillis(), Grace: w.GraceMillis()}
}

// WindowRule is a window spec in milliseconds: assignment (AppendStarts),
// the close rule (CloseTime) and retention (Retained). It is the one
// definition of each, used by the runtime (processor/engine) and Describe.
type WindowRule struct {
	Type                      string
	Size, Advance, Gap, Grace int64 // ms; Size and Advance 0 for sessions, Gap 0 for others
}

// Session reports whether windows are session windows.
func (r WindowRule) Session() bool { return r.Type == WindowSession }

// AppendStarts appends to dst the starts of the tumbling or hopping
// windows that contain ts, earliest first. It appends nothing for session
// windows.
func (r WindowRule) AppendStarts(dst []int64, ts int64) []int64 {
	if r.Size <= 0 || r.Advance <= 0 {
		return dst
	}
	last := FloorDiv(ts, r.Advance) * r.Advance                   // the latest start <= ts
	first := FloorDiv(ts-r.Size, r.Advance)*r.Advance + r.Advance // the earliest start > ts-size
	for st := first; st <= last; st += r.Advance {
		dst = append(dst, st)
	}
	return dst
}

// CloseTime is the stream time at which the window [start, end) (for a
// session, [start, end] with end its last event time) closes: its end plus
// grace. A record at end+gap still joins a session, so a session closes
// only once stream time passes that instant (plus grace). A record whose
// every window has CloseTime <= stream time is late.
func (r WindowRule) CloseTime(start, end int64) int64 {
	if r.Session() {
		return end + r.Gap + r.Grace + 1
	}
	return end + r.Grace
}

// ClosedSessionRetention is how long after a closed session's last event
// time the runtime remembers it: a record within gap of that session
// would have joined it, so it is late rather than a session of its own;
// past end+2*gap+grace+1 no such record can arrive in time.
func (r WindowRule) ClosedSessionRetention(end int64) int64 {
	return end + 2*r.Gap + r.Grace + 1
}

// FloorDiv returns floor(a/b), also for negative a or b.
func FloorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}
