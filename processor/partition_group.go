package processor

// The partition group orders the repartition stage's input by event time.
//
// Every source partition feeds every aggregation task through the
// repartition topic. A task's stream time is the lowest watermark of the
// source partitions (watermarks.go), so no record is late because another
// partition ran ahead; but if the stage forwarded one source partition's
// whole backlog before another's (which is what a fetch of a large backlog
// returns), windows would stay open until the slowest partition caught up,
// holding state and delaying results. So the stage buffers fetched records
// per source partition and always forwards the buffered head with the
// lowest event time, keeping each partition's own order. When a partition's buffer is empty but the partition is known
// to have more records (its high watermark is beyond what was fetched), the
// stage waits for them, up to maxWait, before moving on without it (as
// Kafka Streams' max.task.idle.ms).
//
// Buffered records stay buffered across commits in both processing modes:
// a commit names, per source partition, the offset of the first record not
// yet forwarded (at-least-once: the position after the last forwarded
// record; exactly-once: held, written into the transaction's offset commit
// by commitTxnLocked). A crash, a revoke or an aborted transaction drops
// the buffers, and the partitions are read again from those offsets.

import (
	"math"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eddy-streams/eddy/processor/engine"
	"github.com/eddy-streams/eddy/state"
)

type srcItem struct {
	rec *kgo.Record
	ev  event
	re  *RecordError
}

type srcQueue struct {
	sp    state.SourcePartition
	items []srcItem
	next  int64 // offset after the last buffered record (or the known position)
	hwm   int64 // high watermark from the latest fetch or listing
	// emptySince is when drain first found the buffer empty (zero: not
	// yet, or a full poll since, which may have left this partition's
	// records in the client): the wait for a lagging partition counts
	// from there, not from its assignment.
	emptySince time.Time
	// wm is the partition's watermark: the highest event time forwarded
	// (or filtered out) from it, 0 before any. The stage reports it to the
	// aggregation tasks (watermarks.go).
	wm int64
}

func (q *srcQueue) lagging() bool { return q.hwm > q.next }

type partitionGroup struct {
	queues  map[state.SourcePartition]*srcQueue
	maxWait time.Duration
}

func newPartitionGroup(maxWait time.Duration) *partitionGroup {
	return &partitionGroup{queues: make(map[state.SourcePartition]*srcQueue), maxWait: maxWait}
}

func (g *partitionGroup) queue(sp state.SourcePartition, now time.Time) *srcQueue {
	q := g.queues[sp]
	if q == nil {
		q = &srcQueue{sp: sp}
		g.queues[sp] = q
	}
	return q
}

// known records a partition's position and end, learned at assignment.
func (g *partitionGroup) known(sp state.SourcePartition, next, hwm int64, now time.Time) {
	q := g.queue(sp, now)
	q.next, q.hwm = next, hwm
}

// add buffers prepared records of one fetched partition.
func (g *partitionGroup) add(sp state.SourcePartition, items []srcItem, hwm int64, now time.Time) {
	q := g.queue(sp, now)
	q.items = append(q.items, items...)
	if n := len(items); n > 0 {
		q.next = items[n-1].rec.Offset + 1
	}
	q.hwm = max(q.hwm, hwm)
}

// readTo notes that sp's records before next are all fetched: those after
// its last buffered record were transaction markers (control.go).
func (g *partitionGroup) readTo(sp state.SourcePartition, next int64) {
	if q := g.queues[sp]; q != nil {
		q.next = max(q.next, next)
	}
}

// drop forgets a partition (revoked or lost).
func (g *partitionGroup) drop(sp state.SourcePartition) { delete(g.queues, sp) }

func itemTime(it srcItem) int64 {
	if it.re != nil || it.ev.filtered {
		return math.MinInt64 // nothing to order: forward at once
	}
	return it.ev.ts
}

// drain forwards buffered records in event-time order until a lagging
// partition's buffer is empty (and has been for less than maxWait) or all
// buffers are empty.
func (g *partitionGroup) drain(now time.Time, fn func(srcItem) error) error {
	for {
		var best *srcQueue
		for _, q := range g.queues {
			if len(q.items) == 0 {
				if q.emptySince.IsZero() {
					q.emptySince = now
				}
				if q.lagging() && now.Sub(q.emptySince) < g.maxWait {
					return nil // wait for this partition's records
				}
				continue
			}
			if best == nil || itemTime(q.items[0]) < itemTime(best.items[0]) ||
				(itemTime(q.items[0]) == itemTime(best.items[0]) && state.CompareSourcePartitions(q.sp, best.sp) < 0) {
				best = q
			}
		}
		if best == nil {
			return nil
		}
		it := best.items[0]
		if it.re == nil {
			best.wm = max(best.wm, it.ev.ts)
		}
		best.items[0] = srcItem{}
		best.items = best.items[1:]
		if len(best.items) == 0 {
			best.items = nil
			best.emptySince = now
		}
		if err := fn(it); err != nil {
			return err
		}
	}
}

// held returns, for every partition with buffered records, the offset (and
// leader epoch) of its first buffered record: the position a commit may
// name for it, since nothing from there on has been forwarded yet.
func (g *partitionGroup) held() map[state.SourcePartition]kgo.EpochOffset {
	var out map[state.SourcePartition]kgo.EpochOffset
	for sp, q := range g.queues {
		if len(q.items) == 0 {
			continue
		}
		if out == nil {
			out = make(map[state.SourcePartition]kgo.EpochOffset)
		}
		r := q.items[0].rec
		out[sp] = kgo.EpochOffset{Epoch: r.LeaderEpoch, Offset: r.Offset}
	}
	return out
}

// rewind forgets every buffered record after the consumer went back to the
// committed offsets (an aborted transaction): each partition is positioned
// at its committed offset when known, else at its first buffered record,
// and keeps its high watermark, so that drain still waits for a partition
// whose records are to be read again.
func (g *partitionGroup) rewind(committed map[string]map[int32]kgo.EpochOffset, now time.Time) {
	for sp, q := range g.queues {
		if c, ok := committed[sp.Topic][sp.Partition]; ok && c.Offset >= 0 {
			q.next = c.Offset
		} else if len(q.items) > 0 {
			q.next = q.items[0].rec.Offset
		}
		clear(q.items)
		q.items = nil
		q.emptySince = time.Time{}
		// What was forwarded since the last commit is gone: report no
		// progress until it is forwarded again (tasks keep the highest
		// watermark they heard, so this holds nothing back).
		q.wm = 0
	}
}

// watermark is source partition sp's watermark (0 if not owned).
func (g *partitionGroup) watermark(sp state.SourcePartition) int64 {
	if q := g.queues[sp]; q != nil {
		return q.wm
	}
	return 0
}

// watermarks reports the watermark of every owned source partition, and
// whether it is caught up: nothing buffered, nothing known left to read,
// and not waiting for the schema registry (stalled).
func (g *partitionGroup) watermarks(dst []engine.Watermark, stalled func(state.SourcePartition) bool) []engine.Watermark {
	for sp, q := range g.queues {
		dst = append(dst, engine.Watermark{Input: sp, Time: q.wm,
			CaughtUp: len(q.items) == 0 && !q.lagging() && !stalled(sp)})
	}
	slices.SortFunc(dst, func(a, b engine.Watermark) int { return state.CompareSourcePartitions(a.Input, b.Input) })
	return dst
}

// polled notes a poll that returned as many records as it may (full): the
// client may still hold fetched records of the partitions whose buffers
// are empty, so their wait starts again.
func (g *partitionGroup) polled(full bool) {
	if !full {
		return
	}
	for _, q := range g.queues {
		if len(q.items) == 0 {
			q.emptySince = time.Time{}
		}
	}
}
