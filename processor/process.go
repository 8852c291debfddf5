package processor

// The shell's per-record step: a record of the aggregation input becomes an
// engine.Record (decode, stateless steps), the task's engine decides
// (processor/engine), and the shell writes what it decided (results, late
// and dead-letter records, alert transitions). processAgg runs on the
// goroutine that owns the record's task for the turn (parallel.go), with
// that goroutine's scratch (an aggWorker), while the processing loop
// holds a.mu; punctuate runs on the loop itself, after every task's
// goroutine is done, with a.fx as its scratch.

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
	fields, re, uerr := a.p.decode(ctx, rec)
	if uerr != nil {
		return uerr
	}
	now := a.clock.Now()
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
			lr := lateRecord(a.p.spec.LateTopic, rec, late, er.Source, er.SourceOffset, now)
			lr.Headers = append(lr.Headers, rollupHeader(t.r)...)
			a.write(ctx, lr, rec)
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
	if err == nil {
		key, err = p.encodeResultKey(r)
	}
	if err != nil {
		// The schema is derived from this very pipeline: a result that
		// does not fit it is a bug. Fail the next commit, do not skip it.
		a.setProduceErr(fmt.Errorf("encode result of window %s %s: %w", r.Window.Key, fmtWindow(r.Window), err))
		return
	}
	a.write(ctx, &kgo.Record{
		Topic:     p.spec.Output.Topic,
		Key:       key,
		Value:     value,
		Timestamp: time.UnixMilli(r.Window.End),
	}, nil)
}
