package processor

// Watermarks through the repartition topic. A task's stream time is the
// lowest watermark of its input partitions (processor/engine/watermark.go).
// A task that reads its source partition directly learns that partition's
// watermark from the records themselves and whether it is caught up from
// the shell (reportInputs). A task behind the repartition topic waits for
// every source partition: the source stage, which owns some of them, sends
// every watermarkEvery a watermark record to every repartition partition
// with the watermark of each source partition it owns and whether that
// partition is caught up. Watermark records have no key and a header
// hdrWatermark; the aggregation tasks apply them (processAgg) and nothing
// else sees them. Records forwarded through the repartition topic carry
// their source partition's watermark at that moment (hdrSourceWatermark):
// the task that receives one learns that partition's progress at once, so
// with a single source partition every task's stream time is exactly that
// partition's watermark, record by record.
//
// Ordering: a watermark record follows, in its repartition partition, every
// record the same worker forwarded there before it (one producer, one
// partition; one transaction under exactly-once), so a task that applies it
// has applied every record it covers. A source partition's new owner starts
// from the group's committed offset and reports a watermark of 0 until it
// forwards records again; tasks keep the highest watermark they have heard
// (and checkpoint it), so its watermark never goes back.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eddy-streams/eddy/processor/engine"
	"github.com/eddy-streams/eddy/state"
	"github.com/eddy-streams/eddy/topology"
)

// hdrWatermark marks a watermark record of the repartition topic;
// hdrSourceWatermark, on a forwarded record, is its source partition's
// watermark when it was forwarded (ms, varint).
const (
	hdrWatermark       = "eddy.wm"
	hdrSourceWatermark = "eddy.src-wm"
)

// watermarkEvery is how often, at most, the source stage reports its
// partitions' watermarks to every repartition partition: results of a
// window can come this much later than the record that closed it. Each
// report is one small record per repartition partition. A report that
// would say nothing new is sent only after the heartbeat (reportEvery, at
// most watermarkHeartbeat): tasks that restart learn from it which
// partitions are caught up, and every task learns that the partitions'
// owner still runs.
const (
	watermarkEvery     = 200 * time.Millisecond
	watermarkHeartbeat = 2 * time.Second
)

// reportEvery is the source stage's heartbeat: how often, at least, it
// reports every source partition it owns. A fifth of the idle timeout,
// between watermarkEvery and watermarkHeartbeat, so that reports expire
// (reportTTL) well before a partition could be taken for idle.
func reportEvery(spec *topology.Spec) time.Duration {
	return min(max(spec.IdleTimeout/5, watermarkEvery), watermarkHeartbeat)
}

// reportTTL is how long a task behind the repartition topic takes a
// report for news (engine.Task.ExpireReports): three heartbeats, plus the
// commit interval under exactly-once (a report is read only once its
// transaction commits). A source partition not heard from for that long
// has lost its owner (killed, cut off, or its open transaction hides what
// follows): it holds windows back as a stalled partition does, instead of
// going idle while its records wait for the next owner. With the
// defaults, 6s (7s under exactly-once) against a 10s idle timeout.
func reportTTL(spec *topology.Spec) time.Duration {
	ttl := 3 * reportEvery(spec)
	if spec.Processing == topology.ExactlyOnce {
		ttl += spec.CommitInterval
	}
	return ttl
}

const watermarkVersion = 1

// appendWatermarks encodes a watermark record's value: a version byte,
// then per source partition its topic, partition, watermark and caught-up
// flag.
func appendWatermarks(dst []byte, ws []engine.Watermark) []byte {
	dst = append(dst, watermarkVersion)
	dst = binary.AppendUvarint(dst, uint64(len(ws)))
	for _, w := range ws {
		dst = binary.AppendUvarint(dst, uint64(len(w.Input.Topic)))
		dst = append(dst, w.Input.Topic...)
		dst = binary.AppendVarint(dst, int64(w.Input.Partition))
		dst = binary.AppendVarint(dst, w.Time)
		caught := byte(0)
		if w.CaughtUp {
			caught = 1
		}
		dst = append(dst, caught)
	}
	return dst
}

var errBadWatermark = errors.New("malformed watermark record")

// parseWatermarks decodes what appendWatermarks wrote into dst.
func parseWatermarks(dst []engine.Watermark, b []byte) ([]engine.Watermark, error) {
	if len(b) < 1 || b[0] != watermarkVersion {
		return dst, fmt.Errorf("%w: unknown version", errBadWatermark)
	}
	b = b[1:]
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)) {
		return dst, errBadWatermark
	}
	b = b[k:]
	for range n {
		l, k := binary.Uvarint(b)
		if k <= 0 || uint64(len(b)-k) < l {
			return dst, errBadWatermark
		}
		topic := string(b[k : k+int(l)])
		b = b[k+int(l):]
		p, k1 := binary.Varint(b)
		if k1 <= 0 {
			return dst, errBadWatermark
		}
		b = b[k1:]
		wm, k2 := binary.Varint(b)
		if k2 <= 0 || len(b) < k2+1 {
			return dst, errBadWatermark
		}
		caught := b[k2] == 1
		b = b[k2+1:]
		dst = append(dst, engine.Watermark{Input: state.SourcePartition{Topic: topic, Partition: int32(p)}, Time: wm, CaughtUp: caught})
	}
	if len(b) != 0 {
		return dst, fmt.Errorf("%w: %d trailing bytes", errBadWatermark, len(b))
	}
	return dst, nil
}

// isWatermark reports whether rec is a watermark record.
func isWatermark(rec *kgo.Record) bool {
	for _, h := range rec.Headers {
		if h.Key == hdrWatermark {
			return true
		}
	}
	return false
}

// listInputs returns every partition of the source topics: the input
// partitions a task behind the repartition topic waits for.
func listInputs(ctx context.Context, adm *kadm.Client, topics []string) ([]state.SourcePartition, error) {
	td, err := adm.ListTopics(ctx, topics...)
	if err != nil {
		return nil, fmt.Errorf("describe source topics: %w", err)
	}
	var ins []state.SourcePartition
	for _, t := range topics {
		d, ok := td[t]
		if !ok || d.Err != nil {
			return nil, fmt.Errorf("describe source topic %q: %v", t, d.Err)
		}
		for p := range d.Partitions {
			ins = append(ins, state.SourcePartition{Topic: t, Partition: p})
		}
	}
	slices.SortFunc(ins, state.CompareSourcePartitions)
	return ins, nil
}

// sendWatermarks is the source stage's report: every watermarkEvery, one
// watermark record to each repartition partition with the watermark of
// every source partition this worker owns.
func (a *App) sendWatermarks(ctx context.Context, now time.Time) {
	if !a.p.spec.NeedsRepartition() || now.Sub(a.wmSent) < watermarkEvery || a.aggParts == 0 {
		return
	}
	a.ownedWatermarks()
	if len(a.wmBuf) == 0 || (slices.Equal(a.wmBuf, a.wmLast) && now.Sub(a.wmSent) < reportEvery(a.p.spec)) {
		return
	}
	a.wmSent = now
	a.wmLast = append(a.wmLast[:0], a.wmBuf...)
	value := appendWatermarks(nil, a.wmBuf)
	for _, st := range a.stages {
		for p := range a.aggParts {
			a.write(ctx, watermarkRecord(st.topic(), p, value, now), nil)
		}
	}
}

// ownedWatermarks fills a.wmBuf with the report of every source partition
// this worker owns.
func (a *App) ownedWatermarks() {
	a.wmBuf = a.pg.watermarks(a.wmBuf[:0], func(sp state.SourcePartition) bool { return a.stalled[sp] != nil })
}

// watermarkRecord is the watermark record of value for partition p of
// repartition topic topic.
func watermarkRecord(topic string, p int32, value []byte, now time.Time) *kgo.Record {
	return &kgo.Record{
		Topic:     topic,
		Partition: p,
		Value:     value,
		Headers:   []kgo.RecordHeader{{Key: hdrWatermark, Value: []byte{watermarkVersion}}},
		Timestamp: now,
	}
}

// beforeLateForward sends, ahead of a record that may be late, a
// watermark record with every owned source partition's watermark to the
// repartition partition the record goes to. A record can be late only if
// its event time is more than the grace period behind every source
// partition's watermark; without the report, the task that receives it may
// not yet know how far the other partitions are (the periodic reports come
// every watermarkEvery), and would count in a window a record that the
// same data, read at another pace, makes late. With it, whether a record
// is late depends on the data the worker read, not on timing: a replay
// on one worker gives the live run's late records.
//
// It goes to stage st's partition of the record's key there; the stage's
// smallest grace decides (a record late for none of its rollups needs no
// report).
func (a *App) beforeLateForward(ctx context.Context, st *aggStage, sp state.SourcePartition, ts int64, key string) {
	grace := st.minGrace
	if ts >= a.pg.watermark(sp)-grace {
		return // within grace of its own partition: it cannot be late
	}
	a.ownedWatermarks()
	lowest := ts + grace + 1
	for _, w := range a.wmBuf {
		lowest = min(lowest, w.Time)
	}
	if ts >= lowest-grace {
		return
	}
	p := KeyPartition(st.topic(), key, int(a.aggParts))
	a.write(ctx, watermarkRecord(st.topic(), p, appendWatermarks(nil, a.wmBuf), a.clock.Now()), nil)
}

// applyWatermarks applies a watermark record read by task t, decoding
// into scratch (returned, for the next call: each goroutine has its own).
func (a *App) applyWatermarks(t *task, rec *kgo.Record, now time.Time, scratch []engine.Watermark) []engine.Watermark {
	in := state.SourcePartition{Topic: rec.Topic, Partition: rec.Partition}
	t.Skip(in, rec.Offset)
	ws, err := parseWatermarks(scratch[:0], rec.Value)
	if err != nil {
		// Only eddy writes this topic; a bad one is skipped, not fatal:
		// the next report, 200 ms later, says the same.
		a.warn.Warn("watermark record skipped", "topic", rec.Topic, "partition", rec.Partition, "offset", rec.Offset, "err", err)
		return ws
	}
	t.ObserveWatermarks(ws, now)
	return ws
}

// inputFetched notes a fetch of task t's own input partition: the offset
// after its last record, and the partition's high watermark.
func (t *task) inputFetched(next, hwm int64) { t.inputNext, t.inputEnd = next, hwm }

// reportInputs tells each task whether its own input partition is caught
// up (nothing known left to read, nothing waiting for the registry); a
// task that reads its source directly also learns it as that partition's
// state.
func (a *App) reportInputs(now time.Time) {
	for k, ts := range a.tasks {
		st := a.stages[k.stage]
		in := state.SourcePartition{Topic: st.topics[0], Partition: k.p}
		for _, t := range ts {
			if t.r.from != nil {
				continue
			}
			caught := t.inputNext >= t.inputEnd && a.stalled[in] == nil
			t.SetInputCaughtUp(caught)
			if !st.repart {
				t.ObserveWatermark(engine.Watermark{Input: in, CaughtUp: caught}, now)
			}
		}
	}
}

// watermarkMetrics exports how long task t's stream time has waited on its
// slowest input partition, and which one.
func (a *App) watermarkMetrics(t *task, now time.Time, longest *waitingOn) {
	p := t.metricLabel()
	in, waited, waiting, ok := t.HeldBy(now)
	holder := ""
	// /readyz names only a partition records wait on: a caught-up one is
	// merely quiet, and is left out once idle.
	if ok && waiting && waited > longest.waited {
		*longest = waitingOn{task: t.partition, input: in, waited: waited}
	}
	if ok {
		holder = in.Topic + "/" + strconv.Itoa(int(in.Partition))
		a.m.wmWait.WithLabelValues(p).Set(waited.Seconds())
	} else {
		a.m.wmWait.WithLabelValues(p).Set(0)
	}
	if holder != t.holder {
		if t.holder != "" {
			a.m.wmHolder.DeleteLabelValues(p, t.holder)
		}
		if holder != "" {
			a.m.wmHolder.WithLabelValues(p, holder).Set(1)
		}
		t.holder = holder
	}
}

// movedOn logs and counts the input partitions stream time moved on
// without.
func (a *App) movedOn(t *task, ms []engine.MovedOn) {
	for _, m := range ms {
		input := m.Input.Topic + "/" + strconv.Itoa(int(m.Input.Partition))
		a.m.wmMovedOn.WithLabelValues(input).Inc()
		a.log.Warn("stream time moved on without a stalled input partition",
			"task", t.partition, "input", input, "waited", m.Waited.Round(time.Millisecond),
			"watermark", fmtTime(m.Watermark),
			"why", "records wait on it but it made no progress for max_wait (its worker died, it is paused for the schema registry, or restoring); its records older than the windows closed meanwhile go to the late topic")
	}
}

// dropWatermarkMetrics removes task partition p's watermark series.
func (a *App) dropWatermarkMetrics(t *task) {
	p := t.metricLabel()
	a.m.wmWait.DeleteLabelValues(p)
	if t.holder != "" {
		a.m.wmHolder.DeleteLabelValues(p, t.holder)
	}
}

// waitingOn is the input partition results have waited on longest.
type waitingOn struct {
	task   int32
	input  state.SourcePartition
	waited time.Duration
}

// setWaiting records, for /readyz and the console, the input partition
// results have waited on for longer than the idle timeout (or half of
// max_wait, when that is shorter), if any.
func (a *App) setWaiting(w waitingOn) {
	why := ""
	if w.waited >= min(a.p.spec.IdleTimeout, a.p.spec.MaxWait/2) {
		why = fmt.Sprintf("results of task %d wait on input partition %s/%d, which has made no progress for %s "+
			"(records wait on it; after max_wait %s stream time moves on without it)",
			w.task, w.input.Topic, w.input.Partition, w.waited.Round(time.Second), a.p.spec.MaxWait)
	}
	a.waiting.Store(&why)
}

// Waiting says which input partition results wait on, when one has made
// no progress for longer than the idle timeout (or half of max_wait) while
// records wait on it; "" otherwise.
func (a *App) Waiting() string {
	if p := a.waiting.Load(); p != nil {
		return *p
	}
	return ""
}

// countIn counts a fetch's records in eddy_records_in_total, watermark
// records apart (eddy_watermark_records_total): the record counts are the
// pipeline's data.
func (a *App) countIn(fp kgo.FetchTopicPartition) {
	n := len(fp.Records)
	if st := a.stageOf(fp.Topic); st != nil && st.repart {
		wm := 0
		for _, r := range fp.Records {
			if isWatermark(r) {
				wm++
			}
		}
		a.m.wmRecords.WithLabelValues("in").Add(float64(wm))
		n -= wm
	}
	a.m.recordsIn.WithLabelValues(fp.Topic).Add(float64(n))
}

// countOut counts an acknowledged record in eddy_records_out_total, or a
// watermark record in eddy_watermark_records_total.
func (a *App) countOut(r *kgo.Record) {
	if isWatermark(r) {
		a.m.wmRecords.WithLabelValues("out").Inc()
		return
	}
	a.m.recordsOut.WithLabelValues(r.Topic).Inc()
}
