// Package changelog restores task stores from their changelog topics: the
// part of state that reads Kafka. The changelog's format (the key kinds:
// window rows, aux entries such as alert state, commit markers; the row
// and checkpoint encodings) is defined in package state (store.go,
// checkpoint.go).
package changelog

// Changelog format and restore.
//
// Each task's store has one partition of the compacted changelog topic
// "<app>-<store>-changelog". A flush writes, in this order, to that
// partition: one record per changed window (key: WindowKey encoding; value:
// Row encoding, or nil as a tombstone) and per changed aux entry (key: the
// aux kind byte, its version and the id; value: the entry's, or nil), then
// one commit marker (key:
// MarkerKey; value: Checkpoint encoding naming the input offset, stream time
// and upstream offsets the flush reflects). The marker is produced only
// after every row record and every output of the flush is acknowledged.
//
// Restore applies records in log order and advances the checkpoint at each
// marker. It applies them in large steps (up to applyRecords records or
// applyBytes bytes, at a marker), each one atomic with its checkpoint;
// large steps are ingested into Pebble as sorted SSTables
// (state.TaskStore.ApplyRestored), so restored rows are not written
// through the WAL and memtable and then flushed and compacted. Records after the last marker belong to a flush that did not
// finish (a crash between producing rows and the marker): they are not
// applied, and the input they came from is processed again from the
// marker's InputNext. Compaction keeps the newest marker (all share one key)
// and the newest value of every window, so restoring a compacted log from
// its start gives the same state as restoring the whole log.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/eddy-streams/eddy/state"
)

// How much restore applies at once, at the first marker past either
// bound. Large applications are ingested as SSTables
// (state.TaskStore.ApplyRestored): the larger they are, the fewer tables,
// and from scratch a partition of up to applyRecords rows is one table in
// the bottom level. The records stay in memory (the fetched batches) until
// applied: applyBytes bounds that per partition restoring.
const (
	applyRecords = 1 << 20
	applyBytes   = 64 << 20
)

// RestoreResult says what a restore did.
type RestoreResult struct {
	// FromScratch is true when local state was wiped and rebuilt from the
	// start of the changelog; Reason says why.
	FromScratch bool
	Reason      string
	// Records is the number of changelog records read.
	Records int64
	// Discarded is the number of records after the last marker (an
	// unfinished flush) that were not applied.
	Discarded int
	// GapAtTail is the number of offsets at the end of the changelog that
	// held no record (compacted away) and were skipped.
	GapAtTail int64
	// Checkpoint is the position the state reflects after restore.
	Checkpoint state.Checkpoint
	Took       time.Duration
}

// Restorer reads changelog partitions into task stores. It uses its own
// client (no group), consuming only while a restore runs.
//
// Where a restore ends. Restore measures the changelog's end (its high
// watermark) before it reads, and ends only when its position reaches
// that end: never after a quiet spell alone, which a stalled or
// restarting broker also gives, and which would leave the state behind
// what the group has committed. Two things can keep the position below
// the measured end:
//   - a transaction still open in the changelog (under exactly-once: the
//     previous owner's last transaction, committed but with its markers
//     not yet written, or about to be aborted). A read_committed reader
//     sees nothing past the last stable offset (LSO) until it ends; restore
//     waits for it, so a transaction that committed is restored whole.
//   - a compacted gap at the tail: no record is left between the position
//     and the end. A fetch tells: when the consumer has read nothing for
//     IdleEnd, Restore asks the partition's leader directly, and ends only
//     when the leader answers, twice IdleEnd apart, that the log is stable
//     up to the end and holds no record from the position on.
//
// Restore fails with *StalledError when it makes no progress for
// StallLimit (a broker down that long, a transaction that never ends).
type Restorer struct {
	cl  *kgo.Client
	adm *kadm.Client
	// Progress, when set, is called as records are read.
	Progress func(topic string, partition int32, done, total int64)
	// IdleEnd is how long a read may return nothing before the restorer
	// asks the leader whether anything is left before the end. Default 2s.
	IdleEnd time.Duration
	// StallLimit is how long a restore may make no progress towards the
	// end it measured before it fails. Default 5m.
	StallLimit time.Duration
	// applyRecords is applyRecords; tests lower it to restore in many
	// applications.
	applyRecords int
}

// ErrRestoreStalled is the class of *StalledError.
var ErrRestoreStalled = errors.New("restore stalled before the end of the changelog")

// StalledError says where a restore stopped and why it could not go on.
type StalledError struct {
	Topic     string
	Partition int32
	At, End   int64 // the position reached and the end measured
	LSO       int64 // the last stable offset the leader last reported; -1: it did not answer
	For       time.Duration
}

func (e *StalledError) Error() string {
	why := "the broker did not answer"
	if e.LSO >= 0 && e.LSO < e.End {
		why = fmt.Sprintf("a transaction keeps the last stable offset at %d", e.LSO)
	} else if e.LSO >= 0 {
		why = "records below the end were not delivered"
	}
	return fmt.Sprintf("%s: %s/%d at offset %d of %d for %s (%s)", ErrRestoreStalled, e.Topic, e.Partition, e.At, e.End, e.For.Round(time.Second), why)
}

// Is makes errors.Is(err, ErrRestoreStalled) true.
func (e *StalledError) Is(target error) bool { return target == ErrRestoreStalled }

// NewRestorer returns a restorer using cl (created with read_committed
// isolation, kgo.KeepControlRecords so the end of a transactional log is
// seen without waiting, and no consume topics) for reading and offsets.
func NewRestorer(cl *kgo.Client) *Restorer {
	return &Restorer{cl: cl, adm: kadm.NewClient(cl), IdleEnd: 2 * time.Second, StallLimit: 5 * time.Minute, applyRecords: applyRecords}
}

// Restore brings t up to the end of partition of topic. When the local
// state cannot be trusted it is wiped and rebuilt: no checkpoint, a
// changelog that was recreated (different topic id), a checkpoint beyond
// the changelog's end, or below its start.
func (r *Restorer) Restore(ctx context.Context, topic string, partition int32, t *state.TaskStore) (RestoreResult, error) {
	began := time.Now()
	var res RestoreResult
	var (
		td         kadm.TopicDetail
		start, end int64
	)
	// Metadata and offsets, retried while the cluster settles (a new
	// topic without a leader yet, a leader election, a broker restart).
	err := retry(ctx, 60*time.Second, func() error {
		topics, err := r.adm.ListTopics(ctx, topic)
		if err != nil {
			return fmt.Errorf("describe changelog %s: %w", topic, err)
		}
		var ok bool
		if td, ok = topics[topic]; !ok || td.Err != nil {
			return fmt.Errorf("changelog %s: missing: %v", topic, td.Err)
		}
		if td.ID == (kadm.TopicID{}) {
			return fmt.Errorf("changelog %s: metadata has no topic id yet", topic)
		}
		starts, err := r.adm.ListStartOffsets(ctx, topic)
		if err == nil {
			err = starts.Error()
		}
		if err != nil {
			return fmt.Errorf("changelog %s start offsets: %w", topic, err)
		}
		// The high watermark, not the last stable offset: a transaction
		// still open below it is waited for (see Restorer).
		ends, err := r.adm.ListEndOffsets(ctx, topic)
		if err == nil {
			err = ends.Error()
		}
		if err != nil {
			return fmt.Errorf("changelog %s end offsets: %w", topic, err)
		}
		so, ok1 := starts.Lookup(topic, partition)
		eo, ok2 := ends.Lookup(topic, partition)
		if !ok1 || !ok2 {
			return fmt.Errorf("changelog %s has no partition %d", topic, partition)
		}
		start, end = so.Offset, eo.Offset
		return nil
	})
	if err != nil {
		return res, err
	}

	cp, ok, err := t.Checkpoint()
	if err != nil {
		ok, res.Reason = false, err.Error()
	}
	switch {
	case !ok && res.Reason == "":
		res.Reason = "no checkpoint"
	case !ok:
	case cp.TopicID != td.ID:
		ok, res.Reason = false, "changelog was recreated (reset)"
	case cp.ChangelogNext > end:
		ok, res.Reason = false, fmt.Sprintf("state is ahead of the changelog (checkpoint %d, end %d)", cp.ChangelogNext, end)
	case cp.ChangelogNext < start:
		ok, res.Reason = false, fmt.Sprintf("changelog was truncated past the checkpoint (checkpoint %d, start %d)", cp.ChangelogNext, start)
	}
	if !ok {
		res.FromScratch = true
		if err := t.Wipe(); err != nil {
			return res, fmt.Errorf("wipe stale state: %w", err)
		}
		cp = state.Checkpoint{TopicID: td.ID, ChangelogNext: start}
	}
	t.DropCache()
	from := cp.ChangelogNext
	if from >= end {
		if res.FromScratch {
			// Record that the (empty) state reflects this changelog, so the
			// next start does not treat it as missing.
			if err := t.ApplyRestored(nil, nil, cp, true); err != nil {
				return res, err
			}
		}
		res.Checkpoint = cp
		res.Took = time.Since(began)
		return res, nil
	}

	r.cl.AddConsumePartitions(map[string]map[int32]kgo.Offset{topic: {partition: kgo.NewOffset().At(from)}})
	defer r.cl.RemoveConsumePartitions(map[string][]int32{topic: {partition}})

	var (
		// The records read and not applied yet, in log order: the first
		// marked up to the last marker (applied at the next flush), the
		// rest since it. Sized for the restore, up to 256k records (12
		// MiB of slice headers), so that appending rarely copies.
		keys       = make([][]byte, 0, min(end-from, int64(r.applyRecords), 1<<18))
		values     = make([][]byte, 0, cap(keys))
		marked     int   // records up to the last marker
		markedSize int   // their bytes (keys and values)
		readSize   int   // bytes of all of keys and values
		next             = from
		total            = end - from
		lastData         = time.Now()
		leader     int32 = -1
		probe      tailProbe
	)
	if pd, ok := td.Partitions[partition]; ok {
		leader = pd.Leader
	}
	flush := func(sync bool) error {
		if err := t.ApplyRestored(keys[:marked], values[:marked], cp, sync); err != nil {
			return fmt.Errorf("apply restored records: %w", err)
		}
		// What follows the marker moves to the front (clearing the rest
		// lets the applied records' fetch buffers go).
		n := copy(keys, keys[marked:])
		copy(values, values[marked:])
		clear(keys[n:])
		clear(values[n:])
		keys, values = keys[:n], values[:n]
		readSize -= markedSize
		marked, markedSize = 0, 0
		return nil
	}
	for next < end {
		pctx, cancel := context.WithTimeout(ctx, 250*time.Millisecond)
		fs := r.cl.PollRecords(pctx, 10000)
		cancel()
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		var ferr error
		fs.EachError(func(_ string, _ int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				ferr = err
			}
		})
		if ferr != nil {
			return res, fmt.Errorf("read changelog %s/%d: %w", topic, partition, ferr)
		}
		n := 0
		fs.EachRecord(func(rec *kgo.Record) {
			if rec.Topic != topic || rec.Partition != partition {
				return
			}
			n++
			next = rec.Offset + 1
			if rec.Attrs.IsControl() {
				return // a transaction marker: it only moves the position
			}
			res.Records++
			if state.IsMarkerKey(rec.Key) {
				m, perr := state.ParseCheckpoint(rec.Value)
				if perr != nil {
					ferr = fmt.Errorf("changelog %s/%d offset %d: marker: %w", topic, partition, rec.Offset, perr)
					return
				}
				marked, markedSize = len(keys), readSize
				cp = state.Checkpoint{TopicID: td.ID, ChangelogNext: next, InputNext: m.InputNext,
					StreamTime: m.StreamTime, FlushSeq: m.FlushSeq, Upstream: m.Upstream, Watermarks: m.Watermarks}
				if marked >= r.applyRecords || markedSize >= applyBytes {
					ferr = flush(false)
				}
				return
			}
			if kerr := state.CheckChangelogKey(rec.Key); kerr != nil {
				ferr = fmt.Errorf("changelog %s/%d offset %d: %w", topic, partition, rec.Offset, kerr)
				return
			}
			keys = append(keys, rec.Key)
			values = append(values, rec.Value)
			readSize += len(rec.Key) + len(rec.Value)
		})
		if ferr != nil {
			return res, ferr
		}
		if r.Progress != nil && n > 0 {
			r.Progress(topic, partition, next-from, total)
		}
		if n > 0 {
			lastData, probe = time.Now(), tailProbe{}
			continue
		}
		idle := time.Since(lastData)
		if idle < r.IdleEnd || time.Since(probe.at) < r.IdleEnd {
			continue
		}
		if r.tailIsEmpty(ctx, &probe, td, topic, partition, leader, next, end) {
			res.GapAtTail = end - next
			break
		}
		if idle > r.StallLimit {
			return res, &StalledError{Topic: topic, Partition: partition, At: next, End: end, LSO: probe.lso, For: idle}
		}
	}
	if err := flush(true); err != nil {
		return res, err
	}
	res.Discarded = len(keys) - marked
	res.Checkpoint = cp
	res.Took = time.Since(began)
	return res, nil
}

// tailProbe remembers the last direct fetch of a quiet partition.
type tailProbe struct {
	at    time.Time
	lso   int64 // -1: no answer
	empty int   // consecutive answers saying nothing is left before the end
}

// tailIsEmpty asks the leader, with a fetch at next, whether the log holds
// any record between next and end. It reports true only on the second
// consecutive answer (IdleEnd apart, the consumer having read nothing in
// between) that the log is stable up to end and has no record batch with
// records at or after next. An error, no answer, an open transaction
// below end (LSO < end), or a batch of records from next on: false.
func (r *Restorer) tailIsEmpty(ctx context.Context, p *tailProbe, td kadm.TopicDetail, topic string, partition, leader int32, next, end int64) bool {
	p.at, p.lso = time.Now(), -1
	if leader < 0 {
		return false
	}
	req := kmsg.NewPtrFetchRequest()
	req.ReplicaID = -1
	req.MaxWaitMillis = 0
	req.MinBytes = 1
	req.MaxBytes = 1 << 20
	req.IsolationLevel = 1 // read_committed
	req.SessionEpoch = -1
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic, rt.TopicID = topic, td.ID
	rp := kmsg.NewFetchRequestTopicPartition()
	rp.Partition, rp.FetchOffset, rp.CurrentLeaderEpoch, rp.LogStartOffset = partition, next, -1, -1
	rp.PartitionMaxBytes = 1 << 20
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	pctx, cancel := context.WithTimeout(ctx, max(r.IdleEnd, time.Second))
	defer cancel()
	kresp, err := r.cl.Broker(int(leader)).Request(pctx, req)
	if err != nil {
		p.empty = 0
		return false
	}
	resp := kresp.(*kmsg.FetchResponse)
	if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
		p.empty = 0
		return false
	}
	fp := resp.Topics[0].Partitions[0]
	if fp.ErrorCode != 0 {
		p.empty = 0
		return false
	}
	p.lso = fp.LastStableOffset
	if fp.LastStableOffset < end || fp.HighWatermark < end || hasRecordsFrom(fp.RecordBatches, next) {
		p.empty = 0
		return false
	}
	p.empty++
	return p.empty >= 2
}

// hasRecordsFrom reports whether raw record batches (a fetch response's)
// may hold a record at or after offset next: a batch that ends at or after
// next with records in it. (A batch that starts before next counts: which
// of its records compaction kept is not in its header.)
func hasRecordsFrom(b []byte, next int64) bool {
	for len(b) >= 12 {
		var batch kmsg.RecordBatch
		size := int(binary.BigEndian.Uint32(b[8:12])) + 12
		if size > len(b) || batch.ReadFrom(b[:size]) != nil {
			return true // truncated or unknown: assume data
		}
		b = b[size:]
		if batch.Magic != 2 {
			return true
		}
		if batch.FirstOffset+int64(batch.LastOffsetDelta) >= next && batch.NumRecords > 0 {
			return true
		}
	}
	return false
}

// retry calls fn until it succeeds, ctx ends, or limit passes, backing off
// from 100ms to 2s between tries. It returns fn's last error.
func retry(ctx context.Context, limit time.Duration, fn func() error) error {
	deadline := time.Now().Add(limit)
	wait := 100 * time.Millisecond
	for {
		err := fn()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return errors.Join(err, ctx.Err())
		case <-time.After(wait):
		}
		wait = min(2*wait, 2*time.Second)
	}
}

// DataBetween reports whether partition of topic holds a committed data
// record (not a transaction marker, not aborted) at an offset in
// [from, to). It reads with the restorer's read_committed client, for at
// most limit; ok is false when it could not tell in that time.
func (r *Restorer) DataBetween(ctx context.Context, topic string, partition int32, from, to int64, limit time.Duration) (found, ok bool) {
	if from >= to {
		return false, true
	}
	r.cl.AddConsumePartitions(map[string]map[int32]kgo.Offset{topic: {partition: kgo.NewOffset().At(from)}})
	defer r.cl.RemoveConsumePartitions(map[string][]int32{topic: {partition}})
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		pctx, cancel := context.WithTimeout(ctx, 250*time.Millisecond)
		fs := r.cl.PollRecords(pctx, 1000)
		cancel()
		if ctx.Err() != nil {
			return false, false
		}
		done := false
		fs.EachRecord(func(rec *kgo.Record) {
			if done || rec.Topic != topic || rec.Partition != partition {
				return
			}
			if rec.Offset >= to {
				done = true
				return
			}
			if !rec.Attrs.IsControl() {
				found, done = true, true
				return
			}
			if rec.Offset+1 >= to {
				done = true
			}
		})
		if done {
			return found, true
		}
	}
	return false, false
}
