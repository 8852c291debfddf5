package processor

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eddy-streams/eddy/processor/engine"
	"github.com/eddy-streams/eddy/schema"
	"github.com/eddy-streams/eddy/state"
	"github.com/eddy-streams/eddy/topology"
)

// pipeline is the shell's view of a compiled spec: the engine's pipeline
// (processor/engine: windows, aggregation, alert rules) plus what only the
// shell needs, the value decoder and the result and alert encoders.
type pipeline struct {
	eng      *engine.Pipeline
	spec     *topology.Spec
	compiled *topology.Compiled
	aggSpecs []state.AggSpec
	dec      valueDecoder
	enc      *schema.Encoder // Avro results (output.format avro); nil for JSON
	keyEnc   *schema.Encoder // Avro result keys (output.format avro); nil for JSON
	resEnc   *resultEncoder  // JSON results
	// alertEnc and alertKeyEnc: Avro alerts and their keys (output.format
	// avro); nil for JSON.
	alertEnc, alertKeyEnc *schema.Encoder

	// tables are the lookup tables, loaded by bindTables (lookup.go);
	// nil until then, and in pipelines without lookups.
	tables *lookupTables

	maxFuture  time.Duration
	emitUpdate bool

	// also are the other rollups' pipelines, on the first rollup's (which
	// runs the shared stateless steps): their fields are decoded too.
	also []*pipeline
	// keyLater: the pipeline's rollups have several grouping keys, so the
	// stateless steps leave the key out (prepareFields) and each stage
	// keys the record itself (forwardSource).
	keyLater bool
}

func newPipeline(spec *topology.Spec) (*pipeline, error) {
	eng, err := engine.NewPipeline(spec)
	if err != nil {
		return nil, err
	}
	p := &pipeline{
		eng:        eng,
		spec:       spec,
		compiled:   eng.Compiled(),
		aggSpecs:   eng.AggSpecs(),
		dec:        jsonDecoder{},
		maxFuture:  spec.Time.MaxFuture,
		emitUpdate: eng.EmitUpdate(),
	}
	aggNames := make([]string, len(spec.Aggregates))
	for i, a := range spec.Aggregates {
		aggNames[i] = a.Name
	}
	p.resEnc = newResultEncoder(spec.Key, aggNames)
	for i, a := range spec.Aggregates {
		if a.Op == topology.AggTopK {
			if p.resEnc.topK == nil {
				p.resEnc.topK = make([]bool, len(spec.Aggregates))
			}
			p.resEnc.topK[i] = true
		}
	}
	if spec.Source.Format == topology.FormatAvro {
		p.dec = nil // set by bindSchemas, which needs the registry
	}
	return p, nil
}

// inputFields returns the top-level input fields the pipeline reads: the
// key, the event time, the derived fields', filter's and where clauses'
// fields, the lookups' join fields and the aggregates' inputs, less the
// fields the pipeline computes itself (derived and lookup fields). all is
// true when an expression reads $env, and so any field. Avro input
// decodes only these fields.
func (p *pipeline) inputFields() (fields []string, all bool) {
	fields, all = p.ownInputFields()
	for _, o := range p.also {
		if all {
			return nil, true
		}
		var fs []string
		fs, all = o.ownInputFields()
		fields = append(fields, fs...)
	}
	if all {
		return nil, true
	}
	slices.Sort(fields)
	return slices.Compact(fields), false
}

// ownInputFields is inputFields of this pipeline's own spec.
func (p *pipeline) ownInputFields() (fields []string, all bool) {
	spec := p.spec
	fields = append(fields, spec.Key...)
	if spec.Time.Field != "" {
		fields = append(fields, spec.Time.Field)
	}
	for _, l := range spec.Lookups {
		fields = append(fields, l.On)
	}
	exprs := append(append(append([]*topology.Expr(nil), p.compiled.Derived...), p.compiled.Filter), p.compiled.Where...)
	for _, e := range exprs {
		if e == nil {
			continue
		}
		if e.ReadsEnv() {
			return nil, true
		}
		fields = append(fields, e.Fields()...)
	}
	for _, a := range spec.Aggregates {
		if a.Field != "" {
			fields = append(fields, a.Field)
		}
	}
	computed := make(map[string]bool)
	for _, d := range spec.Derived {
		computed[d.Name] = true
	}
	for _, l := range spec.Lookups {
		for _, f := range l.Fields {
			computed[f] = true
		}
	}
	fields = slices.DeleteFunc(fields, func(f string) bool { return computed[f] })
	slices.Sort(fields)
	return slices.Compact(fields), false
}

// event is a decoded record ready for aggregation.
type event struct {
	fields   map[string]any
	ts       int64
	key      string
	filtered bool
}

// decode decodes a record value. A non-nil RecordError means the record
// goes to the dead-letter topic; a non-nil error means its fate is
// undecided (the schema registry is unavailable): the record must be
// retried later, neither dead-lettered nor committed past.
func (p *pipeline) decode(ctx context.Context, rec *kgo.Record) (map[string]any, *RecordError, error) {
	return p.decodeInto(ctx, rec, nil)
}

// decodeInto is decode into into (emptied first; a new map when nil), for
// a caller done with one record's fields before it decodes the next.
func (p *pipeline) decodeInto(ctx context.Context, rec *kgo.Record, into map[string]any) (map[string]any, *RecordError, error) {
	fields, err := p.dec.DecodeInto(ctx, rec.Value, into)
	if err == nil {
		return fields, nil, nil
	}
	if p.spec.Source.Format != topology.FormatAvro {
		return nil, &RecordError{Class: ErrDecode, Err: fmt.Errorf("%s value: %w", p.spec.Source.Format, err)}, nil
	}
	if class, bad := schema.DeadLetterClass(err); bad {
		return nil, &RecordError{Class: class, Err: err}, nil
	}
	// schema.ErrRegistryUnavailable, or the context ended: not the record's fault.
	if !errors.Is(err, schema.ErrRegistryUnavailable) {
		err = fmt.Errorf("%w: %w", schema.ErrRegistryUnavailable, err)
	}
	return nil, nil, err
}

// prepare runs decode, event time, filter and key extraction on a source
// record. A non-nil RecordError means the record goes to the dead-letter
// topic; a non-nil error (wrapping schema.ErrRegistryUnavailable) means it
// could not be decided now and must be retried.
func (p *pipeline) prepare(ctx context.Context, rec *kgo.Record, now time.Time) (event, *RecordError, error) {
	fields, re, err := p.decode(ctx, rec)
	if re != nil || err != nil {
		return event{}, re, err
	}
	ev, re := p.prepareFields(fields, rec, now)
	return ev, re, nil
}

// prepareFields runs the derived fields and lookups (enrich), event
// time, filter and key extraction on decoded fields. It adds the derived
// and lookup fields to fields and, when the record goes through the
// repartition topic, to rec's headers (fields_derived.go).
func (p *pipeline) prepareFields(fields map[string]any, rec *kgo.Record, now time.Time) (event, *RecordError) {
	var ev event
	ev.fields = fields
	if p.enriches() {
		if re := p.enrich(fields); re != nil {
			return ev, re
		}
		if p.spec.NeedsRepartition() {
			p.carryFields(rec, fields)
		}
	}
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
	if p.keyLater {
		return ev, nil
	}
	var re *RecordError
	ev.key, re = stageKey(fields, p.spec.Key)
	return ev, re
}

// stageKey is the grouping key of fields by keyFields, or why the record
// has none.
func stageKey(fields map[string]any, keyFields []string) (string, *RecordError) {
	key, field, err := groupKey(fields, keyFields)
	if err != nil {
		return "", &RecordError{Class: ErrMissingKey, Field: field, Err: err}
	}
	if len(key) > state.MaxKeyLen {
		return "", &RecordError{Class: ErrKeyTooLong, Err: fmt.Errorf("grouping key is %d bytes, limit %d", len(key), state.MaxKeyLen)}
	}
	return key, nil
}

// repartitioned makes the event of a decoded record from the repartition
// topic: the stateless steps already ran, the key is the grouping key,
// the timestamp is the event time, and the derived and lookup fields are
// those the stateless step computed, carried in a header
// (fields_derived.go). A malformed header (only a record not written by
// eddy can have one) leaves them missing: aggregates skip them.
func repartitioned(fields map[string]any, rec *kgo.Record) event {
	_ = carriedFields(rec, fields)
	return event{fields: fields, ts: rec.Timestamp.UnixMilli(), key: string(rec.Key)}
}
