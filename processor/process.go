package processor

// The shell's per-record steps. processFetches splits one poll: records of
// the aggregation input go to their tasks (processAgg), source records to
// the repartition stage (forwardSource, through the partition group's
// event-time order). In processAgg a record becomes an engine.Record
// (decode, stateless steps), each of its partition's tasks (one per
// rollup) decides (processor/engine), and the shell writes what they
// decided (results, late and dead-letter records, alert transitions).
// processAgg runs on the goroutine that owns the record's tasks for the
// turn (parallel.go), with that goroutine's scratch (an aggWorker), while
// the processing loop holds a.mu; punctuate runs on the loop itself, after
// every task's goroutine is done, with the loop's aggWorker.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eddy-streams/eddy/processor/engine"
	"github.com/eddy-streams/eddy/state"
)

// processAgg adds one record of the aggregation input to its task (the
// engine) and writes what the engine decided. An error wrapping
// schema.ErrRegistryUnavailable means the record could not be decoded now
// and nothing of it was applied: retry it later.
//
// It may run on several goroutines at once, each with its own w and for
// records of different tasks: it reads the tasks map (not changed while
// the loop holds a.mu) and touches nothing shared that is not safe for
// concurrent use (producing, metrics, the rate-limited log, the
// Alertmanager forwarder, the retention guard all are; the field counts
// and the JSON result encoder are per w).
func (a *App) processAgg(ctx context.Context, w *aggWorker, rec *kgo.Record) error {
	st := a.stageOf(rec.Topic)
	var ts []*task
	if st != nil {
		ts = a.tasks[taskKey{st.idx, rec.Partition}]
	}
	if ts == nil {
		// Not ours (revoked while buffered). A partition restoring has no
		// task either, but its fetches are paused (restore.go): none of
		// its records reaches here.
		a.warn.Warn("record of a partition without a task dropped", "topic", rec.Topic, "partition", rec.Partition, "offset", rec.Offset)
		return nil
	}
	in := state.SourcePartition{Topic: rec.Topic, Partition: rec.Partition}
	er := engine.Record{Input: in, Offset: rec.Offset, Source: in, SourceOffset: rec.Offset}
	if st.repart && isWatermark(rec) {
		now := a.clock.Now()
		for _, t := range ts {
			if t.r.from == nil {
				w.applyWatermarks(a, t, rec, now)
			}
		}
		return nil
	}
	if st.repart {
		var ok bool
		for _, h := range rec.Headers {
			switch h.Key {
			case hdrSource:
				er.Source.Topic, er.Source.Partition, er.SourceOffset, ok = decodeSource(h.Value)
			case hdrSourceWatermark:
				er.SourceWatermark, _ = binary.Varint(h.Value)
			}
		}
		if !ok {
			for _, t := range ts {
				if t.r.from == nil {
					t.Skip(in, rec.Offset)
				}
			}
			a.deadLetter(ctx, rec, &RecordError{Class: ErrInternalHeader, Err: errors.New("repartition record without eddy.src header")})
			return nil
		}
	}
	// Decode before the tasks record the input as applied, so that a
	// record waiting for the registry leaves no trace.
	// Nothing keeps a record's fields past this call (the engine copies
	// what it aggregates), so the worker's map is reused: one allocation
	// less per record.
	fields, re, uerr := a.p.decodeInto(ctx, rec, w.decoded)
	if uerr != nil {
		return uerr
	}
	if fields != nil {
		w.decoded = fields
	}
	now := w.now(a)
	var ev event
	switch {
	case re != nil:
	case st.repart:
		ev = repartitioned(fields, rec)
	default:
		ev, re = a.p.prepareFields(fields, rec, now)
	}
	if re != nil {
		er.Reject = &engine.Reject{Class: re.Class, Field: re.Field, Err: re.Err}
	}
	er.Key, er.Time, er.Fields, er.Filtered = ev.key, ev.ts, ev.fields, ev.filtered
	// Each rollup's task applies the record (and checks it for a
	// duplicate) on its own; what concerns the record itself (a
	// duplicate, filtered, refused by the stateless steps) is counted and
	// written once, by the first.
	for _, t := range ts {
		if t.r.from != nil {
			continue
		}
		first := t.r.slot == 0
		fx := &w.rfx[t.r.idx]
		if err := t.Process(er, now, fx); err != nil {
			return err
		}
		switch {
		case fx.Duplicate:
			if first {
				a.m.duplicates.Inc()
			}
			continue
		case fx.Filtered:
			if first {
				a.m.filtered.Inc()
			}
			continue
		}
		if fx.Aggregated && first {
			a.fields.observeInto(&w.fields, ev.fields)
		}
		if dl := fx.DeadLetter; dl != nil {
			switch {
			case er.Reject == nil:
				a.deadLetterWith(ctx, rec, &RecordError{Class: dl.Class, Field: dl.Field, Err: dl.Err}, rollupHeader(t.r))
			case first:
				a.deadLetter(ctx, rec, re)
			}
			continue
		}
		if late := fx.Late; late != nil {
			a.m.late.Inc()
			// Written with the wall clock as its timestamp (lateRecord).
			a.write(ctx, lateRecord(a.p.spec.LateTopic, rec, late, er.Source, er.SourceOffset, rollupHeader(t.r), now), rec)
		}
		a.applyWith(ctx, w.encs[t.r.idx], t, fx)
		if err := a.follow(ctx, w.encs, ts, t, fx, w.rfx); err != nil {
			return err
		}
	}
	return nil
}

// apply writes the window results and alert transitions of fx, on the
// processing loop (punctuate, the commit).
func (a *App) apply(ctx context.Context, t *task, fx *engine.Effects) {
	a.applyWith(ctx, a.loopW.encs[t.r.idx], t, fx)
}

// applyWith is apply with the JSON result encoder enc of the calling
// goroutine (for t's rollup).
func (a *App) applyWith(ctx context.Context, enc *resultEncoder, t *task, fx *engine.Effects) {
	for _, tr := range fx.Alerts {
		a.publishAlert(ctx, t, tr)
	}
	for _, r := range fx.Results {
		a.emit(ctx, t.r.p, enc, r)
	}
}

// punctuate advances idle tasks' stream time and closes due windows.
func (a *App) punctuate() error {
	now := a.clock.Now()
	a.warn.Flush()
	a.mergeFieldObs()
	for _, msg := range a.fields.report(now) {
		a.log.Warn(msg)
	}
	a.sendWatermarks(context.Background(), now)
	a.reportInputs(now)
	var longest waitingOn
	w := a.loopW
	for _, ts := range a.tasks {
		for _, t := range ts {
			if t.r.from != nil {
				continue // its time comes from the task it follows
			}
			fx := &w.rfx[t.r.idx]
			if err := t.Punctuate(now, fx); err != nil {
				return err
			}
			a.movedOn(t, fx.MovedOn)
			a.watermarkMetrics(t, now, &longest)
			a.apply(context.Background(), t, fx)
			if err := a.follow(context.Background(), w.encs, ts, t, fx, w.rfx); err != nil {
				return err
			}
		}
		for _, t := range ts {
			p := t.metricLabel()
			// A task that has had no record (in this run, or in the state
			// it restored) has no stream time: leave the series unset
			// rather than show the idle-advanced time since 1970.
			if t.HasTime() {
				a.m.streamTime.WithLabelValues(p).Set(float64(t.StreamTime()) / 1000)
			}
			a.m.openWindows.WithLabelValues(p).Set(float64(t.OpenWindows()))
		}
	}
	a.setWaiting(longest)
	return nil
}

// emit writes one window result to the output topic (a closed window's
// alert rules have run in the engine), encoded with enc, the calling
// goroutine's.
func (a *App) emit(ctx context.Context, p *pipeline, enc *resultEncoder, r result) {
	if r.Silent {
		return
	}
	value, err := p.encodeResultWith(enc, r)
	var key []byte
	switch {
	case err != nil:
	case p.keyEnc == nil: // the grouping key as it is
		key = enc.slab.str(r.Window.Key)
	default:
		key, err = p.encodeResultKey(r)
	}
	if err != nil {
		// The schema is derived from this very pipeline: a result that
		// does not fit it is a bug. Fail the next commit, do not skip it.
		a.setProduceErr(fmt.Errorf("encode result of window %s %s: %w", r.Window.Key, fmtWindow(r.Window), err))
		return
	}
	rec := enc.slab.record()
	rec.Topic, rec.Key, rec.Value, rec.Timestamp = p.spec.Output.Topic, key, value, time.UnixMilli(r.Window.End)
	a.write(ctx, rec, nil)
}

// processFetches processes one poll: the aggregation input's records on
// the tasks' goroutines (parallel.go), the repartition stage's on this
// one meanwhile, and returns when all are done.
func (a *App) processFetches(ctx context.Context, fs kgo.Fetches) error {
	now := a.clock.Now()
	var jobs []*aggJob
	var byPart map[state.SourcePartition]*aggJob
	var src []kgo.FetchTopicPartition
	fs.EachPartition(func(fp kgo.FetchTopicPartition) {
		sp := state.SourcePartition{Topic: fp.Topic, Partition: fp.Partition}
		if len(fp.Records) == 0 {
			if next, ok := a.ctlNext[sp]; ok {
				a.markersOnly(sp, next, fp.HighWatermark)
			}
			return
		}
		a.countIn(fp)
		if st := a.stalled[sp]; st != nil {
			st.recs = append(st.recs, fp.Records...) // fetched before the pause took effect
			st.next = a.fetchedTo(sp, fp.Records)
			return
		}
		st := a.stageOf(fp.Topic)
		if st == nil {
			src = append(src, fp)
			return
		}
		for _, t := range a.tasks[taskKey{st.idx, fp.Partition}] {
			t.inputFetched(a.fetchedTo(sp, fp.Records), fp.HighWatermark)
		}
		if byPart == nil {
			byPart = make(map[state.SourcePartition]*aggJob)
		}
		jobs = a.addAggJob(byPart, jobs, sp, fp)
	})
	wait := a.runAggJobs(ctx, jobs)
	var err error
	for _, fp := range src {
		if err != nil {
			break
		}
		sp := state.SourcePartition{Topic: fp.Topic, Partition: fp.Partition}
		if st := a.stalled[sp]; st != nil { // stalled by an earlier fetch of this poll
			st.recs = append(st.recs, fp.Records...)
			st.next = a.fetchedTo(sp, fp.Records)
			continue
		}
		items := make([]srcItem, 0, len(fp.Records))
		for i, rec := range fp.Records {
			ev, re, uerr := a.p.prepare(ctx, rec, now)
			if uerr != nil {
				err = a.stall(sp, fp.Records[i:], false, uerr)
				break
			}
			items = append(items, srcItem{rec: rec, ev: ev, re: re})
		}
		a.pg.add(sp, items, fp.HighWatermark, now)
		if err == nil {
			next := a.fetchedTo(sp, fp.Records)
			a.pg.readTo(sp, next)
			a.lagW.fetched(fp.Topic, fp.Partition, next, fp.HighWatermark)
		}
	}
	wait()
	// Every task's goroutine is done: act on what they returned, here.
	for _, j := range jobs {
		switch {
		case j.err == nil:
			a.lagW.fetched(j.sp.Topic, j.sp.Partition, a.fetchedTo(j.sp, j.recs), j.hwm)
		case isUndecided(j.err):
			if serr := a.stall(j.sp, j.recs[j.done:], true, j.err); err == nil {
				err = serr
			}
		case err == nil:
			err = j.err
		}
	}
	if err != nil {
		return err
	}
	return a.pg.drain(now, func(it srcItem) error { return a.forwardSource(ctx, it) })
}

// deadLetter routes rec to the dead-letter topic with headers saying why.
// Its Kafka timestamp is the time eddy writes it (the wall clock), so that
// the topic's retention counts from then; the source record's timestamp is
// in the eddy.source.timestamp header.
func (a *App) deadLetter(ctx context.Context, rec *kgo.Record, re *RecordError) {
	a.deadLetterWith(ctx, rec, re, nil)
}

// deadLetterWith is deadLetter with extra headers.
func (a *App) deadLetterWith(ctx context.Context, rec *kgo.Record, re *RecordError, extra []kgo.RecordHeader) {
	out := deadLetterRecord(a.p.spec.DeadLetterTopic, rec, re, extra, a.clock.Now())
	a.m.deadLetters.WithLabelValues(re.Class.Error()).Inc()
	a.log.Debug("dead letter", "err", re)
	a.write(ctx, out, nil)
}

// forwardSource finishes the stateless steps of a source record (already
// prepared when it was buffered) and forwards it through the repartition
// topic of each stage, keyed by the stage's grouping key.
func (a *App) forwardSource(ctx context.Context, it srcItem) error {
	rec, ev := it.rec, it.ev
	sp := state.SourcePartition{Topic: rec.Topic, Partition: rec.Partition}
	a.srcPos[sp] = rec.Offset + 1
	a.dirtySrc = true
	if it.re != nil {
		a.deadLetter(ctx, rec, it.re)
		return nil
	}
	if ev.filtered {
		a.m.filtered.Inc()
		return nil
	}
	var headers []kgo.RecordHeader
	for _, st := range a.stages {
		key := ev.key
		if a.p.keyLater {
			var re *RecordError
			if key, re = stageKey(ev.fields, st.key); re != nil {
				a.deadLetterWith(ctx, rec, re, rollupHeader(st.rollups[0]))
				continue
			}
		}
		a.beforeLateForward(ctx, st, sp, ev.ts, key)
		if headers == nil {
			headers = append(append(make([]kgo.RecordHeader, 0, len(rec.Headers)+4), rec.Headers...),
				kgo.RecordHeader{Key: hdrSource, Value: encodeSource(rec.Topic, rec.Partition, rec.Offset)},
				kgo.RecordHeader{Key: hdrOrigKey, Value: rec.Key},
				kgo.RecordHeader{Key: hdrOrigTS, Value: binary.AppendVarint(nil, rec.Timestamp.UnixMilli())},
				kgo.RecordHeader{Key: hdrSourceWatermark, Value: binary.AppendVarint(nil, a.pg.watermark(sp))},
			)
		}
		a.write(ctx, &kgo.Record{
			Topic:     st.topic(),
			Key:       []byte(key),
			Value:     rec.Value,
			Headers:   headers,
			Timestamp: time.UnixMilli(ev.ts),
		}, rec)
	}
	return nil
}
