package schema

import (
	"time"

	"github.com/hamba/avro/v2"
)

// A decode plan is a schema compiled once into a tree of functions that
// read Avro primitives and build the Decoder's normalised values directly,
// instead of hamba's reflective decode into interfaces followed by a
// normalising pass: about half the allocations and time for a typical
// event (see BenchmarkDecode). Types the plan does not cover (fixed,
// decimal, durations) are read by hamba and normalised, so the values are
// the same either way; TestDecoderTypes checks them.

// readFn reads one value; errors are left on the Reader.
type readFn func(r *avro.Reader) any

// recordPlan reads a record into a map.
type recordPlan struct {
	names []string
	reads []readFn
	keep  []bool // false: the field is read past (skipped), not stored
	kept  int
}

func (p *recordPlan) read(r *avro.Reader) map[string]any { return p.readInto(r, nil) }

// readInto is read into m, emptied first (a new map when m is nil).
func (p *recordPlan) readInto(r *avro.Reader, m map[string]any) map[string]any {
	if m == nil {
		m = make(map[string]any, p.kept)
	} else {
		clear(m)
	}
	for i, read := range p.reads {
		v := read(r)
		if r.Error != nil {
			return m
		}
		if p.keep[i] {
			m[p.names[i]] = v
		}
	}
	return m
}

// planner compiles schemas; records already being compiled are shared so
// recursive types terminate.
type planner struct {
	records map[string]*recordPlan
}

// compilePlan compiles the plan of a record schema. With a non-nil
// project, only the top-level fields it names are stored; the others are
// read past without building values (see skipper), still checked as far
// as reading them requires.
func compilePlan(s avro.Schema, project map[string]bool) (*recordPlan, bool) {
	if ref, ok := s.(*avro.RefSchema); ok {
		s = ref.Schema()
	}
	rec, ok := s.(*avro.RecordSchema)
	if !ok {
		return nil, false
	}
	p := &planner{records: make(map[string]*recordPlan)}
	if project == nil {
		return p.record(rec), true
	}
	rp := &recordPlan{}
	sp := &skipPlanner{records: make(map[string]*[]readFn)}
	for _, f := range rec.Fields() {
		keep := project[f.Name()]
		read := sp.skipper(f.Type())
		if keep {
			read = p.compile(f.Type())
			rp.kept++
		}
		rp.names = append(rp.names, f.Name())
		rp.reads = append(rp.reads, read)
		rp.keep = append(rp.keep, keep)
	}
	return rp, true
}

func (p *planner) record(rec *avro.RecordSchema) *recordPlan {
	if rp, ok := p.records[rec.FullName()]; ok {
		return rp
	}
	rp := &recordPlan{}
	p.records[rec.FullName()] = rp
	for _, f := range rec.Fields() {
		rp.names = append(rp.names, f.Name())
		rp.reads = append(rp.reads, p.compile(f.Type()))
		rp.keep = append(rp.keep, true)
		rp.kept++
	}
	return rp
}

func (p *planner) compile(s avro.Schema) readFn {
	if ref, ok := s.(*avro.RefSchema); ok {
		s = ref.Schema()
	}
	var logical avro.LogicalType
	if lt, ok := s.(avro.LogicalTypeSchema); ok && lt.Logical() != nil {
		logical = lt.Logical().Type()
	}
	switch s.Type() {
	case avro.Null:
		return func(*avro.Reader) any { return nil }
	case avro.Boolean:
		return func(r *avro.Reader) any { return r.ReadBool() }
	case avro.Int:
		switch logical {
		case "":
			return func(r *avro.Reader) any { return int64(r.ReadInt()) }
		case avro.Date:
			return func(r *avro.Reader) any { return time.Unix(int64(r.ReadInt())*86400, 0).UTC() }
		}
	case avro.Long:
		switch logical {
		case "":
			return func(r *avro.Reader) any { return r.ReadLong() }
		case avro.TimestampMillis, avro.LocalTimestampMillis:
			return func(r *avro.Reader) any { return time.UnixMilli(r.ReadLong()).UTC() }
		case avro.TimestampMicros, avro.LocalTimestampMicros:
			return func(r *avro.Reader) any { return time.UnixMicro(r.ReadLong()).UTC() }
		}
	case avro.Float:
		return func(r *avro.Reader) any { return float64(r.ReadFloat()) }
	case avro.Double:
		return func(r *avro.Reader) any { return r.ReadDouble() }
	case avro.String:
		return func(r *avro.Reader) any { return r.ReadString() }
	case avro.Bytes:
		if logical == "" {
			return func(r *avro.Reader) any { return r.ReadBytes() }
		}
	case avro.Enum:
		symbols := s.(*avro.EnumSchema).Symbols()
		return func(r *avro.Reader) any {
			i := int(r.ReadInt())
			if i < 0 || i >= len(symbols) {
				r.ReportError("ReadEnum", "unknown enum symbol")
				return nil
			}
			return symbols[i]
		}
	case avro.Union:
		types := s.(*avro.UnionSchema).Types()
		branches := make([]readFn, len(types))
		for i, t := range types {
			branches[i] = p.compile(t)
		}
		return func(r *avro.Reader) any {
			i := int(r.ReadLong())
			if i < 0 || i >= len(branches) {
				r.ReportError("ReadUnion", "unknown union branch")
				return nil
			}
			return branches[i](r)
		}
	case avro.Record:
		rp := p.record(s.(*avro.RecordSchema))
		return func(r *avro.Reader) any { return rp.read(r) }
	case avro.Array:
		item := p.compile(s.(*avro.ArraySchema).Items())
		return func(r *avro.Reader) any {
			arr := []any{}
			readBlocks(r, func() { arr = append(arr, item(r)) })
			return arr
		}
	case avro.Map:
		value := p.compile(s.(*avro.MapSchema).Values())
		return func(r *avro.Reader) any {
			m := map[string]any{}
			readBlocks(r, func() {
				k := r.ReadString()
				m[k] = value(r)
			})
			return m
		}
	}
	// Fixed, decimal, time-millis, time-micros and anything newer: hamba.
	return func(r *avro.Reader) any {
		var v any
		r.ReadVal(s, &v)
		return normalise(v)
	}
}

// maxItems bounds the items of one array or map. A corrupt block count
// must not make a task loop for hours (hamba's ReadArrayCB would): no event
// has a million items.
const maxItems = 1 << 20

// readBlocks reads the blocks of an array or map, calling item for each
// item, and stops at the first error.
func readBlocks(r *avro.Reader, item func()) {
	total := int64(0)
	for r.Error == nil {
		n, _ := r.ReadBlockHeader()
		if n == 0 || r.Error != nil {
			return
		}
		if total += n; total > maxItems {
			r.ReportError("ReadBlock", "more than 1048576 items in an array or map")
			return
		}
		for ; n > 0 && r.Error == nil; n-- {
			item()
		}
	}
}

// skipPlanner compiles skippers; like planner, it shares records so that
// recursive types terminate.
type skipPlanner struct {
	records map[string]*[]readFn
}

// skipper returns a readFn that reads past a value of s without building
// it, returning nil. It checks what reading does (lengths, union branches,
// enum symbols, item counts, varints, booleans) so that a corrupt record
// fails as it would when read; types it does not cover are read and
// dropped.
func (sp *skipPlanner) skipper(s avro.Schema) readFn {
	if ref, ok := s.(*avro.RefSchema); ok {
		s = ref.Schema()
	}
	if lt, ok := s.(avro.LogicalTypeSchema); ok && lt.Logical() != nil {
		switch lt.Logical().Type() {
		case avro.Decimal, avro.Duration:
			return dropper(s)
		}
	}
	switch s.Type() {
	case avro.Null:
		return func(*avro.Reader) any { return nil }
	// Primitives are read as when decoding (the same checks, no
	// allocation); strings and bytes are what skipping saves.
	case avro.Boolean:
		return func(r *avro.Reader) any { r.ReadBool(); return nil }
	case avro.Int:
		return func(r *avro.Reader) any { r.ReadInt(); return nil }
	case avro.Long:
		return func(r *avro.Reader) any { r.ReadLong(); return nil }
	case avro.Float:
		return func(r *avro.Reader) any { r.ReadFloat(); return nil }
	case avro.Double:
		return func(r *avro.Reader) any { r.ReadDouble(); return nil }
	case avro.String, avro.Bytes:
		return func(r *avro.Reader) any { skipLength(r); return nil }
	case avro.Enum:
		n := len(s.(*avro.EnumSchema).Symbols())
		return func(r *avro.Reader) any {
			if i := int(r.ReadInt()); r.Error == nil && (i < 0 || i >= n) {
				r.ReportError("ReadEnum", "unknown enum symbol")
			}
			return nil
		}
	case avro.Union:
		types := s.(*avro.UnionSchema).Types()
		branches := make([]readFn, len(types))
		for i, t := range types {
			branches[i] = sp.skipper(t)
		}
		return func(r *avro.Reader) any {
			i := int(r.ReadLong())
			if r.Error != nil {
				return nil
			}
			if i < 0 || i >= len(branches) {
				r.ReportError("ReadUnion", "unknown union branch")
				return nil
			}
			return branches[i](r)
		}
	case avro.Record:
		rec := s.(*avro.RecordSchema)
		skips, ok := sp.records[rec.FullName()]
		if !ok {
			// Registered before its fields compile, so a recursive record
			// shares this slice; it is complete before any record is read.
			skips = new([]readFn)
			sp.records[rec.FullName()] = skips
			for _, f := range rec.Fields() {
				*skips = append(*skips, sp.skipper(f.Type()))
			}
		}
		return func(r *avro.Reader) any {
			for _, skip := range *skips {
				if skip(r); r.Error != nil {
					return nil
				}
			}
			return nil
		}
	case avro.Array:
		item := sp.skipper(s.(*avro.ArraySchema).Items())
		return func(r *avro.Reader) any {
			readBlocks(r, func() { item(r) })
			return nil
		}
	case avro.Map:
		value := sp.skipper(s.(*avro.MapSchema).Values())
		return func(r *avro.Reader) any {
			readBlocks(r, func() {
				skipLength(r)
				value(r)
			})
			return nil
		}
	}
	return dropper(s)
}

// dropper reads a value of s with hamba and drops it.
func dropper(s avro.Schema) readFn {
	return func(r *avro.Reader) any {
		var v any
		r.ReadVal(s, &v)
		return nil
	}
}

// skipLength reads past a string or bytes value.
func skipLength(r *avro.Reader) {
	n := r.ReadLong()
	if r.Error != nil {
		return
	}
	switch {
	case n < 0:
		r.ReportError("ReadString", "invalid string length")
	case n > maxByteSlice:
		r.ReportError("ReadString", "size is greater than `Config.MaxByteSliceSize`")
	default:
		r.SkipNBytes(int(n))
	}
}

// maxByteSlice is hamba's default Config.MaxByteSliceSize, which the
// Decoder's reader uses: a longer string or bytes value fails to read.
const maxByteSlice = 1_048_576
