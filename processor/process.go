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
	"strconv"
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
	t := a.tasks[rec.Partition]
	if t == nil {
		// Not ours (revoked while buffered). A partition restoring has no
		// task either, but its fetches are paused (restore.go): none of
		// its records reaches here.
		a.warn.Warn("record of a partition without a task dropped", "topic", rec.Topic, "partition", rec.Partition, "offset", rec.Offset)
		return nil
	}
	in := state.SourcePartition{Topic: rec.Topic, Partition: rec.Partition}
	er := engine.Record{Input: in, Offset: rec.Offset, Source: in, SourceOffset: rec.Offset}
	repart := a.p.spec.NeedsRepartition()
	if repart && isWatermark(rec) {
		w.applyWatermarks(a, t, rec, a.clock.Now())
		return nil
	}
	if repart {
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
			t.Skip(in, rec.Offset)
			a.deadLetter(ctx, rec, &RecordError{Class: ErrInternalHeader, Err: errors.New("repartition record without eddy.src header")})
			return nil
		}
	}
	// Decode before the task records the input as applied, so that a
	// record waiting for the registry leaves no trace.
	fields, re, uerr := a.p.decode(ctx, rec)
	if uerr != nil {
		return uerr
	}
	now := a.clock.Now()
	var ev event
	switch {
	case re != nil:
	case repart:
		ev = repartitioned(fields, rec)
	default:
		ev, re = a.p.prepareFields(fields, rec, now)
	}
	if re != nil {
		er.Reject = &engine.Reject{Class: re.Class, Field: re.Field, Err: re.Err}
	}
	er.Key, er.Time, er.Fields, er.Filtered = ev.key, ev.ts, ev.fields, ev.filtered
	fx := &w.fx
	if err := t.Process(er, now, fx); err != nil {
		return err
	}
	switch {
	case fx.Duplicate:
		a.m.duplicates.Inc()
		return nil
	case fx.Filtered:
		a.m.filtered.Inc()
		return nil
	}
	if fx.Aggregated {
		a.fields.observeInto(&w.fields, ev.fields)
	}
	if dl := fx.DeadLetter; dl != nil {
		a.deadLetter(ctx, rec, &RecordError{Class: dl.Class, Field: dl.Field, Err: dl.Err})
		return nil
	}
	if late := fx.Late; late != nil {
		a.m.late.Inc()
		// Written with the wall clock as its timestamp (lateRecord).
		a.write(ctx, lateRecord(a.p.spec.LateTopic, rec, late, er.Source, er.SourceOffset, now), rec)
	}
	a.applyWith(ctx, w.enc, t, fx)
	return nil
}

// apply writes the window results and alert transitions of fx, on the
// processing loop (punctuate, the commit).
func (a *App) apply(ctx context.Context, t *task, fx *engine.Effects) {
	a.applyWith(ctx, a.p.resEnc, t, fx)
}

// applyWith is apply with the JSON result encoder enc of the calling
// goroutine.
func (a *App) applyWith(ctx context.Context, enc *resultEncoder, t *task, fx *engine.Effects) {
	for _, tr := range fx.Alerts {
		a.publishAlert(ctx, t, tr)
	}
	for _, r := range fx.Results {
		a.emit(ctx, enc, r)
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
	for _, t := range a.tasks {
		if err := t.Punctuate(now, &a.fx); err != nil {
			return err
		}
		a.movedOn(t, a.fx.MovedOn)
		a.watermarkMetrics(t, now, &longest)
		a.apply(context.Background(), t, &a.fx)
		p := strconv.Itoa(int(t.partition))
		// A task that has had no record (in this run, or in the state it
		// restored) has no stream time: leave the series unset rather
		// than show the idle-advanced time since 1970.
		if t.HasTime() {
			a.m.streamTime.WithLabelValues(p).Set(float64(t.StreamTime()) / 1000)
		}
		a.m.openWindows.WithLabelValues(p).Set(float64(t.OpenWindows()))
	}
	a.setWaiting(longest)
	return nil
}

// emit writes one window result to the output topic (a closed window's
// alert rules have run in the engine), encoded with enc, the calling
// goroutine's.
func (a *App) emit(ctx context.Context, enc *resultEncoder, r result) {
	if r.Silent {
		return
	}
	value, err := a.p.encodeResultWith(enc, r)
	var key []byte
	if err == nil {
		key, err = a.p.encodeResultKey(r)
	}
	if err != nil {
		// The schema is derived from this very pipeline: a result that
		// does not fit it is a bug. Fail the next commit, do not skip it.
		a.setProduceErr(fmt.Errorf("encode result of window %s %s: %w", r.Window.Key, fmtWindow(r.Window), err))
		return
	}
	a.write(ctx, &kgo.Record{
		Topic:     a.p.spec.Output.Topic,
		Key:       key,
		Value:     value,
		Timestamp: time.UnixMilli(r.Window.End),
	}, nil)
}
