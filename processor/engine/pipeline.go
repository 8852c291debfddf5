package engine

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/eddy-streams/eddy/processor/engine/alert"
	"github.com/eddy-streams/eddy/processor/engine/groupkey"
	"github.com/eddy-streams/eddy/state"
	"github.com/eddy-streams/eddy/topology"
)

// Error classes of records the engine cannot aggregate. The shell also
// uses the classes of the stateless steps (decode, event time, key); all
// are defined here so that one list names every class a dead-letter record
// can carry (processor re-exports them).
var (
	ErrDecode          = errors.New("decode")              // the value is not what the source format says
	ErrEventTime       = errors.New("event_time")          // the event time field is missing or unusable
	ErrFutureTimestamp = errors.New("future_timestamp")    // event time too far ahead of the wall clock
	ErrMissingKey      = errors.New("missing_key_field")   // a grouping key field is missing
	ErrExpression      = errors.New("expression")          // a derived field, filter or where expression failed
	ErrAggregateField  = errors.New("aggregate_field")     // an aggregate's input is not a usable value
	ErrKeyTooLong      = errors.New("key_too_long")        // the grouping key exceeds the store's limit
	ErrInternalHeader  = errors.New("bad_internal_record") // a repartition record lacks eddy's headers
	ErrLookupMiss      = errors.New("lookup_miss")         // no lookup table entry matched (on_miss: dead_letter)
)

// Pipeline is a validated, compiled spec: what every task of the pipeline
// needs, computed once. It is immutable after NewPipeline and may be
// shared by tasks on different goroutines (scratch space lives on Task).
type Pipeline struct {
	spec     *topology.Spec
	compiled *topology.Compiled
	aggSpecs []state.AggSpec
	alerts   *alert.Rules // nil without alert rules

	win        topology.WindowRule
	emitUpdate bool
	chained    bool // spec.From != "": fed by Task.Follow (chain.go)
}

// NewPipeline validates and compiles spec.
func NewPipeline(spec *topology.Spec) (*Pipeline, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	c, err := spec.Compile(nil)
	if err != nil {
		return nil, err
	}
	p := &Pipeline{
		spec:       spec,
		compiled:   c,
		win:        spec.Window.Rule(),
		emitUpdate: spec.Emit == "update",
		chained:    spec.From != "",
	}
	if p.chained && p.win.Type != topology.WindowTumbling {
		// topology validates chained rollups; Follow relies on this.
		return nil, fmt.Errorf("chained rollup %q: window type %q: a chained rollup's window must be tumbling", spec.RollupName, p.win.Type)
	}
	if p.alerts, err = alert.New(spec, p.win); err != nil {
		return nil, err
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

// Spec is the pipeline's spec. Callers must not modify it.
func (p *Pipeline) Spec() *topology.Spec { return p.spec }

// Compiled is the pipeline's compiled expressions.
func (p *Pipeline) Compiled() *topology.Compiled { return p.compiled }

// AggSpecs are the aggregates of a window row, in spec order: the row
// layout of the pipeline's store.
func (p *Pipeline) AggSpecs() []state.AggSpec { return p.aggSpecs }

// EmitUpdate reports whether results are written at every flush of a
// changed window (emit: update) rather than once, when it closes.
func (p *Pipeline) EmitUpdate() bool { return p.emitUpdate }

// HasAlerts reports whether the pipeline has alert rules.
func (p *Pipeline) HasAlerts() bool { return p.alerts != nil }

// Window is the pipeline's window rule (topology owns the arithmetic).
func (p *Pipeline) Window() topology.WindowRule { return p.win }

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
	case topology.AggTopK:
		return state.AggSpec{Op: state.OpTopK, K: a.K}, nil
	}
	return state.AggSpec{}, fmt.Errorf("aggregate %q: unknown op %q", a.Name, a.Op)
}

// aggInput is the input of one aggregate from one record. aggInputs
// evaluates every aggregate's input before any state changes, so a record
// either counts fully or goes to the dead-letter topic.
type aggInput struct {
	skip  bool // where was false or the field is absent
	num   float64
	str   string
	isStr bool
}

func (p *Pipeline) aggInputs(fields map[string]any, dst []aggInput) ([]aggInput, string, error) {
	dst = dst[:0]
	for i, a := range p.spec.Aggregates {
		in := aggInput{}
		if w := p.compiled.Where[i]; w != nil {
			ok, err := w.Eval(fields)
			if err != nil {
				return dst, a.Name, fmt.Errorf("%w: where of %q: %w", ErrExpression, a.Name, err)
			}
			if !ok {
				in.skip = true
				dst = append(dst, in)
				continue
			}
		}
		switch {
		case a.Op == topology.AggCount:
		case a.Op == topology.AggDistinct || a.Op == topology.AggTopK:
			// Values as text (KeyString): 200 and "200" are one value.
			s, ok := KeyString(fields[a.Field])
			if !ok {
				in.skip = true
			}
			in.str, in.isStr = s, true
		default:
			v, ok, err := numeric(fields[a.Field])
			if err != nil {
				return dst, a.Field, fmt.Errorf("%w: %w", ErrAggregateField, err)
			}
			in.num, in.skip = v, !ok
		}
		dst = append(dst, in)
	}
	return dst, "", nil
}

func apply(row *state.Row, ins []aggInput) {
	for i, in := range ins {
		switch {
		case in.skip:
		case in.isStr:
			row.AddString(i, in.str)
		default:
			row.Add(i, in.num)
		}
	}
}

// KeyString renders one key (or distinct) field value as text.
var KeyString = groupkey.FieldText

// numeric reads an aggregate's input value. ok is false when the field is
// absent or null (the aggregate is not updated by this record).
func numeric(v any) (f float64, ok bool, err error) {
	switch t := v.(type) {
	case nil:
		return 0, false, nil
	case float64:
		return t, true, nil
	case float32:
		return float64(t), true, nil
	case int64:
		return float64(t), true, nil
	case int32:
		return float64(t), true, nil
	case int:
		return float64(t), true, nil
	case bool:
		if t {
			return 1, true, nil
		}
		return 0, true, nil
	case string:
		f, err := strconv.ParseFloat(t, 64)
		if err != nil {
			return 0, false, fmt.Errorf("%q is not a number", t)
		}
		return f, true, nil
	}
	return 0, false, fmt.Errorf("type %T is not a number", v)
}
