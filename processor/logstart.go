package processor

import (
	"slices"

	"github.com/eddy-streams/eddy/state"
)

// Records deleted at a partition's end before the worker read them.
//
// When the broker deletes records a worker has not read yet (time or size
// retention, DeleteRecords), the worker's next fetch of the partition is
// out of range and franz-go moves its position to the new log start,
// quietly: the poll returns nothing for it. If later records follow, the
// log-start watch sees the gap in the next fetch (keeper.go). If none do
// (the deleted records were the partition's last), nothing would ever say
// so, and the worker would keep believing it has records to read there:
// the repartition stage would hold every other partition's records back
// for max_wait, the partition would never be caught up (never idle, so it
// would hold stream time back too), and eddy_consumer_lag_records would
// show the deleted records as lag.
//
// So the lag watch hands the loop every owned partition's log start with
// each listing, and the loop compares it with its own position there. A
// partition found below its log start at two listings in a row, with the
// same position, polls in between and no fetched records buffered in the
// client (else they may be records read before the deletion, about to be
// polled), has lost those records: the loop moves its position to the log
// start (the repartition stage and the tasks stop waiting, the next commit
// commits it) and the log-start watch reports and counts the records
// (skipped) as it does a gap in a fetch.

// belowStart is a partition the loop found positioned below its log start:
// its position then, and the poll count.
type belowStart struct {
	pos   int64
	polls uint64
}

// applyListedStarts (the loop, with a.mu) acts on the latest listing of
// log starts, if runLag made one since the last call.
func (a *App) applyListedStarts() {
	a.listed.Lock()
	starts := a.listed.starts
	a.listed.starts = nil
	a.listed.Unlock()
	if starts == nil {
		return
	}
	for sp := range a.belowStart {
		if !slices.ContainsFunc(starts, func(l listedStart) bool { return l.sp == sp }) {
			delete(a.belowStart, sp) // no longer owned
		}
	}
	paused := a.cl.PauseFetchPartitions(nil)
	committed := a.cl.CommittedOffsets()
	for _, l := range starts {
		pos, ok := a.readPosition(l.sp)
		if c, cok := committed[l.sp.Topic][l.sp.Partition]; ok && cok && c.Offset > pos {
			pos = c.Offset // the consumer starts there: a task without a checkpoint, not yet fetched
		}
		if ok && slices.Contains(paused[l.sp.Topic], l.sp.Partition) {
			ok = false // restoring, stalled or held: not fetching, so not out of range
		}
		if !ok || l.start <= pos {
			delete(a.belowStart, l.sp)
			continue
		}
		b, seen := a.belowStart[l.sp]
		if !seen || b.pos != pos {
			a.belowStart[l.sp] = belowStart{pos: pos, polls: a.polls}
			continue
		}
		if a.polls < b.polls+2 || a.cl.BufferedFetchRecords() > 0 {
			continue
		}
		delete(a.belowStart, l.sp)
		a.skipDeleted(l.sp, pos, l.start)
	}
}

// readPosition is the offset of sp the worker reads next, as the loop
// knows it: the repartition stage's position, or the lowest of its tasks'
// (fetched or applied) for an aggregation input. False when the worker
// does not read sp now (not owned, waiting for the registry).
func (a *App) readPosition(sp state.SourcePartition) (int64, bool) {
	if a.stalled[sp] != nil {
		return 0, false
	}
	if st := a.stageOf(sp.Topic); st != nil {
		ts := a.tasks[taskKey{st.idx, sp.Partition}]
		if len(ts) == 0 {
			return 0, false
		}
		pos := int64(-1)
		for _, t := range ts {
			p := max(t.inputNext, t.InputPositions()[sp])
			if pos < 0 || p < pos {
				pos = p
			}
		}
		return pos, true
	}
	if q := a.pg.queues[sp]; q != nil {
		return q.next, true
	}
	return 0, false
}

// skipDeleted moves the worker's position in sp from from to logStart:
// the records between were deleted before it read them.
func (a *App) skipDeleted(sp state.SourcePartition, from, logStart int64) {
	if st := a.stageOf(sp.Topic); st != nil {
		for _, t := range a.tasks[taskKey{st.idx, sp.Partition}] {
			t.inputFetched(max(t.inputNext, logStart), max(t.inputEnd, logStart))
			if t.InputPositions()[sp] < logStart {
				t.Skip(sp, logStart-1) // the next flush commits it
			}
		}
	} else {
		a.pg.readTo(sp, logStart)
		if a.srcPos[sp] < logStart {
			a.srcPos[sp] = logStart
			a.dirtySrc = true
		}
	}
	a.lagW.moved(sp.Topic, sp.Partition, logStart)
	if !a.watch.skipped(sp.Topic, sp.Partition, from, logStart) {
		a.log.Info("records deleted before the worker read them; reading on from the log start",
			"topic", sp.Topic, "partition", sp.Partition, "position", from, "log_start", logStart)
	}
}
