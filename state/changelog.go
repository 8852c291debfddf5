package state

// Changelog format and restore.
//
// Each task's store has one partition of the compacted changelog topic
// "<app>-<store>-changelog". A flush writes, in this order, to that
// partition: one record per changed window (key: WindowKey encoding; value:
// Row encoding, or nil as a tombstone), then one commit marker (key:
// MarkerKey; value: Checkpoint encoding naming the input offset, stream time
// and upstream offsets the flush reflects). The marker is produced only
// after every row record and every output of the flush is acknowledged.
//
// Restore applies records in log order and advances the checkpoint at each
// marker. Records after the last marker belong to a flush that did not
// finish (a crash between producing rows and the marker): they are not
// applied, and the input they came from is processed again from the
// marker's InputNext. Compaction keeps the newest marker (all share one key)
// and the newest value of every window, so restoring a compacted log from
// its start gives the same state as restoring the whole log.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// MarkerKey is the changelog key of commit markers. No window key can equal
// it: window keys start with a 2-byte length below 0x8000.
var MarkerKey = []byte{0xff, 0xff, 'e', 'd', 'd', 'y'}

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
	// Checkpoint is the position the state reflects after restore.
	Checkpoint Checkpoint
	Took       time.Duration
}

// Restorer reads changelog partitions into task stores. It uses its own
// client (no group), consuming only while a restore runs.
type Restorer struct {
	cl  *kgo.Client
	adm *kadm.Client
	// Progress, when set, is called as records are read.
	Progress func(topic string, partition int32, done, total int64)
	// IdleEnd is how long a read may return nothing before the restorer
	// concludes it reached the end (transaction markers at the tail are
	// never returned as records). Default 2s.
	IdleEnd time.Duration
}

// NewRestorer returns a restorer using cl (created with read_committed
// isolation, kgo.KeepControlRecords so the end of a transactional log is
// seen without waiting, and no consume topics) for reading and offsets.
func NewRestorer(cl *kgo.Client) *Restorer {
	return &Restorer{cl: cl, adm: kadm.NewClient(cl), IdleEnd: 2 * time.Second}
}

// Restore brings t up to the end of partition of topic. When the local
// state cannot be trusted it is wiped and rebuilt: no checkpoint, a
// changelog that was recreated (different topic id), a checkpoint beyond
// the changelog's end, or below its start.
func (r *Restorer) Restore(ctx context.Context, topic string, partition int32, t *TaskStore) (RestoreResult, error) {
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
		ends, err := r.adm.ListCommittedOffsets(ctx, topic)
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
		cp = Checkpoint{TopicID: td.ID, ChangelogNext: start}
	}
	t.DropCache()
	from := cp.ChangelogNext
	if from >= end {
		if res.FromScratch {
			// Record that the (empty) state reflects this changelog, so the
			// next start does not treat it as missing.
			if err := t.applyRaw(nil, nil, cp, true); err != nil {
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
		keys, values [][]byte // applied at the next marker
		pendKeys     [][]byte // since the last marker
		pendValues   [][]byte
		next         = from
		total        = end - from
		lastData     = time.Now()
	)
	flush := func(sync bool) error {
		if err := t.applyRaw(keys, values, cp, sync); err != nil {
			return fmt.Errorf("apply restored records: %w", err)
		}
		keys, values = keys[:0], values[:0]
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
			if bytes.Equal(rec.Key, MarkerKey) {
				m, perr := ParseCheckpoint(rec.Value)
				if perr != nil {
					ferr = fmt.Errorf("changelog %s/%d offset %d: marker: %w", topic, partition, rec.Offset, perr)
					return
				}
				keys = append(keys, pendKeys...)
				values = append(values, pendValues...)
				pendKeys, pendValues = pendKeys[:0], pendValues[:0]
				cp = Checkpoint{TopicID: td.ID, ChangelogNext: next, InputNext: m.InputNext,
					StreamTime: m.StreamTime, FlushSeq: m.FlushSeq, Upstream: m.Upstream}
				if len(keys) >= 32768 {
					ferr = flush(false)
				}
				return
			}
			if _, kerr := ParseWindowKey(rec.Key); kerr != nil {
				ferr = fmt.Errorf("changelog %s/%d offset %d: %w", topic, partition, rec.Offset, kerr)
				return
			}
			pendKeys = append(pendKeys, rec.Key)
			pendValues = append(pendValues, rec.Value)
		})
		if ferr != nil {
			return res, ferr
		}
		if r.Progress != nil && n > 0 {
			r.Progress(topic, partition, next-from, total)
		}
		if n > 0 {
			lastData = time.Now()
		} else if time.Since(lastData) > r.IdleEnd {
			break // only transaction markers remain before end
		}
	}
	if err := flush(true); err != nil {
		return res, err
	}
	res.Discarded = len(pendKeys)
	res.Checkpoint = cp
	res.Took = time.Since(began)
	return res, nil
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
