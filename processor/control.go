package processor

import (
	"slices"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eddy-streams/eddy/state"
)

// Transaction markers.
//
// A transaction's commit (or abort) marker takes an offset of its own in
// every partition the transaction wrote, after its records. A partition
// whose last record was written in a transaction (eddy's repartition
// topic under exactly-once, a source topic written by a transactional
// producer: a Kafka Streams or Flink job, another eddy) therefore ends one
// past its last data record, and a consumer that sees only the data
// records takes it for a partition with a record still to read: never
// caught up, so never idle; its stream time would wait for it until
// max_wait, the repartition stage would hold every other partition's
// records back for it, and when the input stops, the wall clock would not
// close the last windows.
//
// So the group client keeps control records (kgo.KeepControlRecords) and
// the loop takes them out of every poll before anything else sees it
// (dropControl), noting where a partition's read position is when the last
// record fetched was a marker (fetchedTo). The transaction session commits
// the polled positions, which are then past the markers too.

// dropControl removes the control records from a poll, in place, and
// notes in a.ctlNext the position of every partition whose last fetched
// record was one.
func (a *App) dropControl(fs kgo.Fetches) {
	clear(a.ctlNext)
	for i := range fs {
		for j := range fs[i].Topics {
			ft := &fs[i].Topics[j]
			for k := range ft.Partitions {
				fp := &ft.Partitions[k]
				n := len(fp.Records)
				if n == 0 {
					continue
				}
				sp := state.SourcePartition{Topic: ft.Topic, Partition: fp.Partition}
				if last := fp.Records[n-1]; last.Attrs.IsControl() {
					a.ctlNext[sp] = last.Offset + 1
				} else {
					// A later fetch of the same partition in this poll
					// ended with data.
					delete(a.ctlNext, sp)
				}
				fp.Records = slices.DeleteFunc(fp.Records, isControl) // one pass; unchanged without markers
			}
		}
	}
}

func isControl(r *kgo.Record) bool { return r.Attrs.IsControl() }

// fetchedTo is the position after the records of sp this poll fetched
// (recs, its data records), markers included. Not for a partition whose
// poll had neither.
func (a *App) fetchedTo(sp state.SourcePartition, recs []*kgo.Record) int64 {
	if next, ok := a.ctlNext[sp]; ok {
		return next
	}
	return recs[len(recs)-1].Offset + 1
}

// markersOnly notes a fetch of sp that brought transaction markers and no
// data record: its position moved to next, and its end is hwm.
func (a *App) markersOnly(sp state.SourcePartition, next, hwm int64) {
	if st := a.stalled[sp]; st != nil {
		st.next = next // taken when its records are all decided
		return
	}
	a.readTo(sp, next, hwm)
	a.lagW.fetched(sp.Topic, sp.Partition, next, hwm)
}

// readTo notes that everything of sp before next was read (the offsets
// after its last data record were markers), and its end hwm when known
// (>= 0).
func (a *App) readTo(sp state.SourcePartition, next, hwm int64) {
	if st := a.stageOf(sp.Topic); st != nil {
		for _, t := range a.tasks[taskKey{st.idx, sp.Partition}] {
			t.inputFetched(max(t.inputNext, next), max(t.inputEnd, hwm))
		}
		return
	}
	a.pg.readTo(sp, next)
	if hwm >= 0 {
		a.pg.add(sp, nil, hwm, a.clock.Now())
	}
}
