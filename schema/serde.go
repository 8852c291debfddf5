package schema

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"sync"
	"time"

	"github.com/hamba/avro/v2"
)

// Decoder turns wire-format Avro records into maps of field name to value.
// It is safe for concurrent use by many tasks; each schema id is fetched
// (and, with a pinned subject, checked) once and then served from memory.
//
// Values are normalised so that callers see one Go type per kind of field:
//
//	Avro int, long                      int64
//	Avro float, double                  float64
//	Avro string, enum (symbol), uuid    string
//	Avro boolean                        bool
//	timestamp-millis/micros, date       time.Time (UTC)
//	local-timestamp-millis/micros       time.Time (the wall time, in UTC)
//	null, or the null branch of a union nil
//	a union                             the value of its branch, normalised
//	                                    (never a {"type": value} wrapper)
//	record, map                         map[string]any, normalised
//	array                               []any, normalised
//	bytes                               []byte; fixed: [N]byte
//	decimal                             *big.Rat
//	time-millis, time-micros            time.Duration
//
// Decode errors are *DecodeError values wrapping exactly one class:
// ErrTooShort, ErrBadMagic, ErrUnknownSchema, ErrWrongSubject, ErrAvroDecode
// (the record is bad: dead-letter it, see DeadLetterClass) or
// ErrRegistryUnavailable (undecided: retry it later).
type Decoder struct {
	reg     Registry
	subject string
	project map[string]bool // nil: every field
	negTTL  time.Duration
	now     func() time.Time
	api     avro.API
	readers sync.Pool

	mu  sync.RWMutex
	ids map[int]*decodeEntry
}

// decodeEntry is what the Decoder knows about one schema id: its schema
// (checked against the pinned subject), or why records with it are bad
// until the entry expires.
type decodeEntry struct {
	s     *Schema
	plan  *recordPlan // nil when the schema is not a record
	err   error
	until time.Time // for errors: ask the registry again after this
}

// DecoderOption configures a Decoder.
type DecoderOption func(*Decoder)

// PinSubject makes the Decoder accept only schemas registered under subject
// (typically "<topic>-value"); any other id is ErrWrongSubject. Default:
// not pinned, any id the registry knows is accepted.
func PinSubject(subject string) DecoderOption {
	return func(d *Decoder) { d.subject = subject }
}

// NegativeCacheTTL sets how long an id found unknown, or outside the pinned
// subject, is answered from memory before the registry is asked again (a
// producer may register it later). It bounds the registry load of a stream
// of bad records. Default 30s; 0 asks every time.
func NegativeCacheTTL(d time.Duration) DecoderOption {
	return func(dec *Decoder) { dec.negTTL = d }
}

// Project makes the Decoder return only the named top-level fields of
// each record: the others are read past without building their values
// (a record is still checked as far as reading it requires: a corrupt
// record fails alike). A pipeline decodes only the fields it reads.
// Default: every field.
func Project(fields []string) DecoderOption {
	return func(d *Decoder) {
		d.project = make(map[string]bool, len(fields))
		for _, f := range fields {
			d.project[f] = true
		}
	}
}

// DecoderClock sets the clock for NegativeCacheTTL. Default time.Now.
func DecoderClock(now func() time.Time) DecoderOption {
	return func(d *Decoder) { d.now = now }
}

// NewDecoder returns a Decoder reading schemas from reg.
func NewDecoder(reg Registry, opts ...DecoderOption) *Decoder {
	d := &Decoder{
		reg:    reg,
		negTTL: 30 * time.Second,
		now:    time.Now,
		api:    avro.Config{}.Freeze(),
		ids:    make(map[int]*decodeEntry),
	}
	for _, o := range opts {
		o(d)
	}
	d.readers.New = func() any { return avro.NewReader(nil, 0, avro.WithReaderConfig(d.api)) }
	return d
}

// Subject returns the pinned subject, "" when not pinned.
func (d *Decoder) Subject() string { return d.subject }

// Decode decodes one wire-format record value. The returned map is the
// caller's. ctx bounds the registry calls of an id not seen before.
func (d *Decoder) Decode(ctx context.Context, b []byte) (map[string]any, error) {
	return d.DecodeInto(ctx, b, nil)
}

// DecodeInto is Decode into m, which it empties first and returns (a new
// map when m is nil): a caller done with one record's fields before it
// decodes the next reuses one map instead of allocating one per record.
// On an error m's content is undefined.
func (d *Decoder) DecodeInto(ctx context.Context, b []byte, m map[string]any) (map[string]any, error) {
	id, body, err := ParseWire(b)
	if err != nil {
		return nil, &DecodeError{ID: -1, Subject: d.subject, Err: err}
	}
	e, err := d.entry(ctx, id)
	if err != nil {
		return nil, err
	}
	m, err = d.decodeBody(e, body, m)
	if err != nil {
		return nil, &DecodeError{ID: id, Subject: d.subject, Err: err}
	}
	return m, nil
}

func (d *Decoder) decodeBody(e *decodeEntry, body []byte, into map[string]any) (map[string]any, error) {
	s := e.s
	if e.plan == nil {
		return nil, fmt.Errorf("%w: schema %d is a %s, not a record", ErrAvroDecode, s.ID, s.Avro.Type())
	}
	r := d.readers.Get().(*avro.Reader)
	defer func() {
		r.Reset(nil) // do not keep the record alive in the pool
		d.readers.Put(r)
	}()
	r.Reset(body)
	r.Error = nil

	m := e.plan.readInto(r, into)
	if r.Error != nil {
		if errors.Is(r.Error, io.EOF) || errors.Is(r.Error, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("%w: the body (%d bytes) ends before the record does: truncated, or written with another schema", ErrAvroDecode, len(body))
		}
		return nil, fmt.Errorf("%w: %w", ErrAvroDecode, r.Error)
	}
	var one [1]byte
	if r.Read(one[:]); r.Error == nil {
		return nil, fmt.Errorf("%w: bytes left over after the record (body %d bytes): written with another schema, or corrupt", ErrAvroDecode, len(body))
	}
	return m, nil
}

// Schema returns the schema of id as the Decoder sees it: fetched, checked
// against the pinned subject, cached. Errors are *DecodeError values as
// from Decode. The processor can call it to resolve an id without a record.
func (d *Decoder) Schema(ctx context.Context, id int) (*Schema, error) {
	e, err := d.entry(ctx, id)
	if err != nil {
		return nil, err
	}
	return e.s, nil
}

func (d *Decoder) entry(ctx context.Context, id int) (*decodeEntry, error) {
	d.mu.RLock()
	e := d.ids[id]
	d.mu.RUnlock()
	if e != nil {
		if e.err == nil {
			return e, nil
		}
		if d.now().Before(e.until) {
			return nil, e.err
		}
	}

	s, err := d.resolve(ctx, id)
	if err != nil {
		derr := &DecodeError{ID: id, Subject: d.subject, Err: err}
		if _, bad := DeadLetterClass(err); bad && d.negTTL > 0 {
			d.mu.Lock()
			d.ids[id] = &decodeEntry{err: derr, until: d.now().Add(d.negTTL)}
			d.mu.Unlock()
		}
		return nil, derr
	}
	e = &decodeEntry{s: s}
	e.plan, _ = compilePlan(s.Avro, d.project)
	d.mu.Lock()
	d.ids[id] = e
	d.mu.Unlock()
	return e, nil
}

// resolve asks the registry about id. The error wraps exactly one of
// ErrUnknownSchema, ErrWrongSubject, ErrAvroDecode, ErrRegistryUnavailable.
func (d *Decoder) resolve(ctx context.Context, id int) (*Schema, error) {
	s, err := d.reg.GetByID(ctx, id)
	switch {
	case err == nil:
	case errors.Is(err, ErrRegistryUnavailable):
		return nil, err
	case errors.Is(err, ErrUnknownSchema):
		return nil, err
	case errors.Is(err, ErrInvalidSchema):
		return nil, fmt.Errorf("%w: %w", ErrAvroDecode, err)
	default:
		return nil, fmt.Errorf("%w: %w", ErrRegistryUnavailable, err)
	}
	if d.subject == "" {
		return s, nil
	}
	under, err := d.reg.Lookup(ctx, d.subject, s.Text)
	switch {
	case err == nil:
		// The text is registered under the subject (possibly under another
		// id if the registry does not deduplicate ids): it is the subject's.
		return &Schema{ID: id, Subject: d.subject, Version: under.Version, Text: s.Text, Avro: s.Avro}, nil
	case errors.Is(err, ErrRegistryUnavailable):
		return nil, err
	case errors.Is(err, ErrUnknownSchema) || errors.Is(err, ErrUnknownSubject) || errors.Is(err, ErrUnknownVersion):
		// %v, not %w: the error must carry one class, and the registry's
		// "unknown schema" here means "not under this subject".
		return nil, fmt.Errorf("%w: schema %d is not registered under subject %q (%v)", ErrWrongSubject, id, d.subject, err)
	default:
		return nil, fmt.Errorf("%w: %w", ErrRegistryUnavailable, err)
	}
}

// normalise maps hamba's generic values to the Decoder's types (see
// Decoder). It reuses maps and slices in place.
func normalise(v any) any {
	switch x := v.(type) {
	case int:
		return int64(x)
	case int32:
		return int64(x)
	case float32:
		return float64(x)
	case map[string]any:
		for k, e := range x {
			switch e.(type) {
			case int, int32, float32, map[string]any, []any:
				x[k] = normalise(e)
			}
		}
		return x
	case []any:
		for i, e := range x {
			x[i] = normalise(e)
		}
		return x
	}
	return v
}

// Encoder writes map values in the wire format under one registered
// schema. It is safe for concurrent use.
type Encoder struct {
	s       *Schema
	fields  []encodeField
	api     avro.API
	writers sync.Pool
}

type encodeField struct {
	name     string
	prim     avro.Type // the type of the value (the non-null branch of a nullable union)
	nullable bool
	hasDef   bool
}

// NewEncoder registers schema under subject (idempotent: an already
// registered schema gets its existing id) and returns an Encoder for it.
// The error is the registry's: ErrIncompatible when the subject's
// compatibility level refuses the schema, ErrInvalidSchema,
// ErrRegistryUnavailable.
func NewEncoder(ctx context.Context, reg Registry, subject, schema string) (*Encoder, error) {
	parsed, err := ParseSchema(schema)
	if err != nil {
		return nil, err
	}
	id, err := reg.Register(ctx, subject, schema)
	if err != nil {
		return nil, err
	}
	return NewEncoderFor(&Schema{ID: id, Subject: subject, Text: schema, Avro: parsed})
}

// NewEncoderFor returns an Encoder for an already registered schema (s.ID
// and s.Avro set), without asking a registry.
func NewEncoderFor(s *Schema) (*Encoder, error) {
	rec, ok := s.Avro.(*avro.RecordSchema)
	if !ok {
		return nil, fmt.Errorf("%w: schema %d is a %s; the Encoder writes records", ErrInvalidSchema, s.ID, s.Avro.Type())
	}
	e := &Encoder{s: s, api: avro.Config{}.Freeze()}
	for _, f := range rec.Fields() {
		ft := fieldType(f.Type())
		e.fields = append(e.fields, encodeField{name: f.Name(), prim: valueType(f.Type()), nullable: ft.Nullable, hasDef: f.HasDefault()})
	}
	e.writers.New = func() any { return avro.NewWriter(nil, 256, avro.WithWriterConfig(e.api)) }
	return e, nil
}

// Schema returns the Encoder's schema.
func (e *Encoder) Schema() *Schema { return e.s }

// ID returns the schema id the Encoder writes.
func (e *Encoder) ID() int { return e.s.ID }

// Encode returns v in the wire format. See Append.
func (e *Encoder) Encode(v map[string]any) ([]byte, error) {
	return e.Append(nil, v)
}

// Append appends v in the wire format to dst. Values are coerced to the
// schema where no information is lost: any Go integer or float into an
// int, long, float or double field (a float into an int or long only when
// it is a whole number that fits); time.Time into timestamp fields; a
// missing nullable field is null. v is not modified. Errors are of class
// ErrAvroEncode and name the field.
func (e *Encoder) Append(dst []byte, v map[string]any) ([]byte, error) {
	rec := make(map[string]any, len(e.fields))
	for _, f := range e.fields {
		x, ok := v[f.name]
		if !ok {
			if f.nullable && !f.hasDef {
				rec[f.name] = nil
			}
			if !f.nullable && !f.hasDef {
				return dst, fmt.Errorf("%w: field %q is missing", ErrAvroEncode, f.name)
			}
			continue
		}
		if x == nil {
			rec[f.name] = nil
			continue
		}
		c, err := coerce(f.prim, x)
		if err != nil {
			return dst, fmt.Errorf("%w: field %q: %w", ErrAvroEncode, f.name, err)
		}
		rec[f.name] = c
	}
	w := e.writers.Get().(*avro.Writer)
	defer e.writers.Put(w)
	w.Reset(nil)
	w.Error = nil
	w.WriteVal(e.s.Avro, rec)
	if w.Error != nil {
		return dst, fmt.Errorf("%w: %w", ErrAvroEncode, w.Error)
	}
	return AppendWire(dst, e.s.ID, w.Buffer()), nil
}

// valueType is the Avro type of a field's values: the non-null branch of a
// nullable union, the type itself otherwise.
func valueType(t avro.Schema) avro.Type {
	if u, ok := t.(*avro.UnionSchema); ok && len(u.Types()) == 2 && u.Nullable() {
		for _, b := range u.Types() {
			if b.Type() != avro.Null {
				return b.Type()
			}
		}
	}
	return t.Type()
}

// coerce converts Go numbers to the type hamba expects for an Avro int,
// long, float or double, refusing conversions that lose information.
// Other values pass through for hamba to judge.
func coerce(t avro.Type, x any) (any, error) {
	switch t {
	case avro.Int, avro.Long:
		var n int64
		switch v := x.(type) {
		case int:
			n = int64(v)
		case int8:
			n = int64(v)
		case int16:
			n = int64(v)
		case int32:
			n = int64(v)
		case int64:
			n = v
		case uint8:
			n = int64(v)
		case uint16:
			n = int64(v)
		case uint32:
			n = int64(v)
		case uint:
			if uint64(v) > math.MaxInt64 {
				return nil, fmt.Errorf("%d overflows a long", v)
			}
			n = int64(v)
		case uint64:
			if v > math.MaxInt64 {
				return nil, fmt.Errorf("%d overflows a long", v)
			}
			n = int64(v)
		case float64:
			// A whole float, as eddy's aggregates hold counts and the
			// minimum of integers; a fraction would be lost.
			if v != math.Trunc(v) || v < -(1<<63) || v >= 1<<63 {
				return nil, fmt.Errorf("%v is not a whole number that fits a long", v)
			}
			n = int64(v)
		case float32:
			if float64(v) != math.Trunc(float64(v)) || v < -(1<<63) || v >= 1<<63 {
				return nil, fmt.Errorf("%v is not a whole number that fits a long", v)
			}
			n = int64(v)
		default:
			return x, nil
		}
		if t == avro.Int {
			if n < math.MinInt32 || n > math.MaxInt32 {
				return nil, fmt.Errorf("%d overflows an Avro int", n)
			}
			return int32(n), nil
		}
		return n, nil
	case avro.Float, avro.Double:
		var f float64
		switch v := x.(type) {
		case float64:
			f = v
		case float32:
			f = float64(v)
		case int:
			f = float64(v)
		case int32:
			f = float64(v)
		case int64:
			f = float64(v)
		case uint32:
			f = float64(v)
		case uint64:
			f = float64(v)
		default:
			return x, nil
		}
		if t == avro.Float {
			return float32(f), nil
		}
		return f, nil
	}
	return x, nil
}
