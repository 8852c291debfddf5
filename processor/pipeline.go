package processor

import (
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eddy-streams/eddy/state"
	"github.com/eddy-streams/eddy/topology"
)

// pipeline is a validated, compiled spec: everything the per-record code
// needs, computed once.
type pipeline struct {
	spec     *topology.Spec
	compiled *topology.Compiled
	aggSpecs []state.AggSpec
	dec      valueDecoder

	size, advance, gap, grace int64 // ms
	maxFuture                 time.Duration
	emitUpdate                bool

	startsBuf []int64
	insBuf    []aggInput
}

func newPipeline(spec *topology.Spec) (*pipeline, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	c, err := spec.Compile(nil)
	if err != nil {
		return nil, err
	}
	p := &pipeline{
		spec:       spec,
		compiled:   c,
		dec:        jsonDecoder{},
		size:       spec.Window.Size.Milliseconds(),
		advance:    spec.Window.Advance.Milliseconds(),
		gap:        spec.Window.Gap.Milliseconds(),
		grace:      spec.Window.Grace.Milliseconds(),
		maxFuture:  spec.Time.MaxFuture,
		emitUpdate: spec.Emit == "update",
	}
	if spec.Source.Format != "" && spec.Source.Format != "json" {
		return nil, fmt.Errorf("source.format %q: only json is supported by this build", spec.Source.Format)
	}
	if spec.Source.KeyedByGroupKey && len(spec.Source.Topics) > 1 {
		return nil, fmt.Errorf("source.keyed_by_group_key: supported with one source topic only (got %d); leave it false to repartition", len(spec.Source.Topics))
	}
	for _, a := range spec.Aggregates {
		as, err := aggSpec(a)
		if err != nil {
			return nil, err
		}
		p.aggSpecs = append(p.aggSpecs, as)
	}
	return p, nil
}

func aggSpec(a topology.Aggregate) (state.AggSpec, error) {
	switch a.Op {
	case topology.AggCount:
		return state.AggSpec{Op: state.OpCount}, nil
	case topology.AggSum:
		return state.AggSpec{Op: state.OpSum}, nil
	case topology.AggMin:
		return state.AggSpec{Op: state.OpMin}, nil
	case topology.AggMax:
		return state.AggSpec{Op: state.OpMax}, nil
	case topology.AggMean:
		return state.AggSpec{Op: state.OpMean}, nil
	case topology.AggDistinct:
		return state.AggSpec{Op: state.OpDistinct}, nil
	case topology.AggQuantile:
		return state.AggSpec{Op: state.OpQuantile, Quantile: a.Quantile}, nil
	}
	return state.AggSpec{}, fmt.Errorf("aggregate %q: unknown op %q", a.Name, a.Op)
}

// event is a decoded record ready for aggregation.
type event struct {
	fields   map[string]any
	ts       int64
	key      string
	filtered bool
}

// prepare runs decode, event time, filter and key extraction on a source
// record. A non-nil RecordError means the record goes to the dead-letter
// topic.
func (p *pipeline) prepare(rec *kgo.Record, now time.Time) (event, *RecordError) {
	var ev event
	fields, err := p.dec.Decode(rec.Value)
	if err != nil {
		return ev, &RecordError{Class: ErrDecode, Err: fmt.Errorf("%s value: %w", p.spec.Source.Format, err)}
	}
	ev.fields = fields
	ts, err := eventTime(fields, p.spec.Time.Field, rec)
	if err != nil {
		return ev, &RecordError{Class: ErrEventTime, Field: p.spec.Time.Field, Err: err}
	}
	if limit := now.Add(p.maxFuture).UnixMilli(); ts > limit {
		return ev, &RecordError{Class: ErrFutureTimestamp, Field: p.spec.Time.Field,
			Err: fmt.Errorf("event time %s is more than %s ahead of the wall clock (%s); raise time.max_future if this is expected",
				fmtTime(ts), p.maxFuture, fmtTime(now.UnixMilli()))}
	}
	ev.ts = ts
	if f := p.compiled.Filter; f != nil {
		ok, err := f.Eval(fields)
		if err != nil {
			return ev, &RecordError{Class: ErrExpression, Err: fmt.Errorf("filter: %w", err)}
		}
		if !ok {
			ev.filtered = true
			return ev, nil
		}
	}
	key, field, err := groupKey(fields, p.spec.Key)
	if err != nil {
		return ev, &RecordError{Class: ErrMissingKey, Field: field, Err: err}
	}
	if len(key) > state.MaxKeyLen {
		return ev, &RecordError{Class: ErrKeyTooLong, Err: fmt.Errorf("grouping key is %d bytes, limit %d", len(key), state.MaxKeyLen)}
	}
	ev.key = key
	return ev, nil
}

// prepareRepartitioned decodes a record from the repartition topic: the
// stateless steps already ran, the key is the grouping key and the
// timestamp is the event time.
func (p *pipeline) prepareRepartitioned(rec *kgo.Record) (event, *RecordError) {
	fields, err := p.dec.Decode(rec.Value)
	if err != nil {
		return event{}, &RecordError{Class: ErrDecode, Err: err}
	}
	return event{fields: fields, ts: rec.Timestamp.UnixMilli(), key: string(rec.Key)}, nil
}
