package state

// (One file, though long: every aggregate's accumulator, merge and
// encoding change together, under one format version.)
//
// This file holds the aggregate state of one key in one window (Row): the
// accumulators, how they merge when session windows merge, and their
// versioned binary encoding, which is what the changelog and Pebble store.
//
// Guarantees, all relied on by replay and by the metamorphic tests:
//
//   - Order independence. The observable state of a Row (its Values and its
//     encoding) depends only on the multiset of values fed to it, not on the
//     order of Add calls, nor on how the values were split between rows that
//     were later merged, nor on encode/decode round trips in between. Count,
//     min and max are order independent by nature; sum and mean use an exact
//     float64 sum (see exactSum), so they are too; DDSketch bins are integer
//     counts; the HyperLogLog is put in a canonical form before encoding.
//     So a replay that sees the same records in a different interleaving
//     (different partition counts upstream of a repartition topic, different
//     commit intervals or cache sizes) produces byte-identical rows.
//     Exception: top_k, once a window has more distinct values than its
//     counters, keeps counts that may depend on the order (each within
//     its stated bound); see aggregate_topk.go.
//   - Determinism. The same state always encodes to the same bytes, so
//     identical final results compare equal as bytes.
//   - Safety. DecodeRow never panics on any input, and allocates at most a
//     fixed amount per aggregate beyond the size of its input (32 KiB for a
//     quantile); every error wraps ErrCorruptRow.
//
// Caveat: a value's quantile bin is computed with floating-point arithmetic,
// which compilers may fuse differently on other CPU architectures, so
// bit-identical quantiles are guaranteed for one build on one architecture.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/big"
	"slices"
	"strconv"
	"unsafe"

	"github.com/DataDog/sketches-go/ddsketch"
	enc "github.com/DataDog/sketches-go/ddsketch/encoding"
	"github.com/DataDog/sketches-go/ddsketch/mapping"
	"github.com/DataDog/sketches-go/ddsketch/store"
	"github.com/axiomhq/hyperloglog"
)

// AggOp names an aggregate function.
type AggOp uint8

// Aggregate functions. The numeric values are part of the row encoding: never
// renumber them.
const (
	// OpCount counts records (Add and AddString both add 1, whatever the
	// value, including NaN).
	OpCount AggOp = iota + 1
	// OpSum is the sum of the finite values, exact then rounded once (see
	// Row.Value).
	OpSum
	// OpMin is the smallest finite value.
	OpMin
	// OpMax is the largest finite value.
	OpMax
	// OpMean is the exact sum of the finite values, rounded, divided by
	// their number.
	OpMean
	// OpQuantile estimates AggSpec.Quantile of the finite values with a
	// DDSketch of RelativeAccuracy.
	OpQuantile
	// OpDistinct estimates the number of distinct values with a
	// HyperLogLog of precision HLLPrecision.
	OpDistinct
	// OpTopK keeps the values fed with AddString that occur most often, in
	// a Misra-Gries summary of TopKCapacity(AggSpec.K) counters
	// (aggregate_topk.go), and reports the AggSpec.K most frequent.
	OpTopK
)

var aggOpNames = [...]string{
	OpCount:    "count",
	OpSum:      "sum",
	OpMin:      "min",
	OpMax:      "max",
	OpMean:     "mean",
	OpQuantile: "quantile",
	OpDistinct: "distinct",
	OpTopK:     "top_k",
}

// String returns the name used in pipeline specs ("count", "quantile", ...).
func (op AggOp) String() string {
	if op >= OpCount && op <= OpTopK {
		return aggOpNames[op]
	}
	return fmt.Sprintf("AggOp(%d)", uint8(op))
}

// AggSpec is one aggregate of a row.
type AggSpec struct {
	Op       AggOp
	Quantile float64 // for OpQuantile, in (0, 1), e.g. 0.99
	K        int     // for OpTopK, how many values to report, >= 1
}

// Validate reports whether s can be used to build a Row.
func (s AggSpec) Validate() error {
	if s.Op < OpCount || s.Op > OpTopK {
		return fmt.Errorf("state: unknown aggregate op %d", uint8(s.Op))
	}
	if s.Op == OpQuantile && !(s.Quantile > 0 && s.Quantile < 1) {
		return fmt.Errorf("state: quantile %v out of range: want a value in (0, 1), e.g. 0.99 for p99", s.Quantile)
	}
	if s.Op == OpTopK && s.K < 1 {
		return fmt.Errorf("state: top_k of %d values: want at least 1", s.K)
	}
	return nil
}

const (
	// RelativeAccuracy is the DDSketch relative accuracy used for quantiles:
	// 1%. A quantile estimate v of a true value x satisfies
	// |v-x| <= 0.01*|x|, where x is the value of rank ⌊q·(n−1)⌋ (0-based)
	// among the n values sorted, as long as x lies in the range the sketch
	// has not collapsed (see MaxQuantileBins). Values with magnitude below
	// about 2.3e-308 are counted as 0.
	RelativeAccuracy = 0.01

	// MaxQuantileBins bounds the memory of a quantile aggregate: positive
	// and negative values each use at most this many bins of 8 bytes (16
	// KiB each, worst case). At 1% accuracy a bin covers about 2%, so 2048
	// bins span a ratio of about 4e17 between the largest and smallest
	// magnitude (1 ns to 13 years); latencies from 1 ms to 10 s use about
	// 465 bins. When values span more than that, the lowest values collapse
	// into the lowest kept bin: positive values closest to zero and the
	// most negative values lose accuracy (their quantiles are overestimated),
	// while the highest quantiles, the ones alerting cares about, keep it.
	MaxQuantileBins = 2048

	// HLLPrecision is the HyperLogLog precision for distinct counts: 2^14
	// registers, a standard error of 1.04/√16384 = 0.81% (2.4% at three
	// standard deviations). Up to about 7,500 distinct values the sketch is
	// sparse (2 to 3 bytes per value encoded) and nearly exact; above, it
	// is a dense 16 KiB.
	HLLPrecision = 14

	// rowVersion is the first byte of every encoded row.
	rowVersion = 1
)

// ErrCorruptRow is wrapped by every error DecodeRow returns.
var ErrCorruptRow = errors.New("corrupt aggregate row")

// quantileMapping is shared by every sketch (it is immutable). The cubically
// interpolated mapping computes a bin from the float's bits and a cubic
// polynomial instead of math.Log: about 40% faster per Add than the
// memory-optimal logarithmic mapping, for about 1% more bins, with the same
// accuracy guarantee. It is part of the encoding: changing it needs a new
// rowVersion.
var quantileMapping, minQuantileIndex, maxQuantileIndex = func() (mapping.IndexMapping, int, int) {
	m, err := mapping.NewCubicallyInterpolatedMapping(RelativeAccuracy)
	if err != nil {
		panic(err)
	}
	return m, m.Index(m.MinIndexableValue()), m.Index(m.MaxIndexableValue())
}()

// newSketch returns an empty quantile sketch. Positive values collapse their
// lowest bins and negative values (stored by magnitude) their highest, so in
// both cases the lowest values lose accuracy first and high quantiles keep it.
func newSketch() *ddsketch.DDSketch {
	return ddsketch.NewDDSketch(quantileMapping,
		store.NewCollapsingLowestDenseStore(MaxQuantileBins),
		store.NewCollapsingHighestDenseStore(MaxQuantileBins))
}

// Row is the aggregate state of one key in one window: one accumulator per
// spec, in order. A Row is not safe for concurrent use; Value and
// AppendBinary may reorganise a distinct count's internal representation.
type Row struct {
	accs []acc
}

// acc is one accumulator. A tagged struct rather than an interface keeps a
// Row in two allocations and Add free of dynamic dispatch.
type acc struct {
	op AggOp
	q  float64 // OpQuantile
	// n counts records (OpCount) or accepted values (OpMin, OpMax, OpMean,
	// OpQuantile).
	n      uint64
	lo, hi float64             // OpMin: lo; OpMax: hi; OpQuantile: both, to clamp estimates
	sum    exactSum            // OpSum, OpMean
	sk     *ddsketch.DDSketch  // OpQuantile, nil until the first value
	hll    *hyperloglog.Sketch // OpDistinct, nil until the first value
	k      int                 // OpTopK: values reported
	tk     *topK               // OpTopK, nil until the first value
}

// NewRow returns an empty row for specs. It panics if a spec is invalid
// (see AggSpec.Validate): specs are checked when a pipeline starts.
func NewRow(specs []AggSpec) *Row {
	r := newRow(len(specs))
	for i, s := range specs {
		if err := s.Validate(); err != nil {
			panic(fmt.Sprintf("state: NewRow: aggregate %d: %v", i, err))
		}
		r.accs[i] = acc{op: s.Op, q: s.Quantile, k: s.K}
	}
	return r
}

// newRow makes a row of n zero accumulators, in one allocation for up
// to three (a row per new window is the hot path's largest allocation).
func newRow(n int) *Row {
	switch n {
	case 1:
		r := &struct {
			Row
			a [1]acc
		}{}
		r.accs = r.a[:]
		return &r.Row
	case 2:
		r := &struct {
			Row
			a [2]acc
		}{}
		r.accs = r.a[:]
		return &r.Row
	case 3:
		r := &struct {
			Row
			a [3]acc
		}{}
		r.accs = r.a[:]
		return &r.Row
	}
	return &Row{accs: make([]acc, n)}
}

// Add feeds a numeric value to aggregate i. Count adds 1 whatever v is.
// Every other aggregate ignores NaN and ±Inf (they have no meaningful sum,
// mean or quantile; a count aggregate still sees the record), and treats -0
// as 0. Distinct hashes the float's bits, so 1 and 1.0000000000000002 are
// distinct, and a number never equals a string fed with AddString.
// Quantile also ignores finite values beyond the sketch's range (magnitude
// above about 1.26e308).
func (r *Row) Add(i int, v float64) {
	a := &r.accs[i]
	if a.op == OpCount {
		a.n++
		return
	}
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return
	}
	if v == 0 {
		v = 0 // -0 -> +0
	}
	switch a.op {
	case OpSum:
		a.sum.add(v)
	case OpMin:
		if a.n == 0 || v < a.lo {
			a.lo = v
		}
		a.n++
	case OpMax:
		if a.n == 0 || v > a.hi {
			a.hi = v
		}
		a.n++
	case OpMean:
		a.sum.add(v)
		a.n++
	case OpQuantile:
		if a.sk == nil {
			a.sk = newSketch()
		}
		if a.sk.Add(v) != nil {
			return // beyond the indexable range
		}
		if a.n == 0 {
			a.lo, a.hi = v, v
		} else {
			a.lo, a.hi = min(a.lo, v), max(a.hi, v)
		}
		a.n++
	case OpTopK:
		a.topK().add(strconv.FormatFloat(v, 'g', -1, 64), a.capacity())
	case OpDistinct:
		var b [8]byte
		binary.LittleEndian.PutUint64(b[:], math.Float64bits(v))
		a.distinct().Insert(b[:])
	}
}

// AddString feeds a string value to aggregate i. Distinct adds it to its
// HyperLogLog and count adds 1; for the numeric aggregates (sum, min, max,
// mean, quantile) it is a no-op: the processor converts numeric fields and
// calls Add.
func (r *Row) AddString(i int, s string) {
	a := &r.accs[i]
	switch a.op {
	case OpCount:
		a.n++
	case OpDistinct:
		// Insert only hashes its argument, without writing or keeping it,
		// so it can see the string's bytes without a copy (a conversion
		// would allocate for strings over 32 bytes, such as UUIDs).
		a.distinct().Insert(unsafe.Slice(unsafe.StringData(s), len(s)))
	case OpTopK:
		a.topK().add(s, a.capacity())
	}
}

func (a *acc) topK() *topK {
	if a.tk == nil {
		a.tk = newTopK()
	}
	return a.tk
}

func (a *acc) distinct() *hyperloglog.Sketch {
	if a.hll == nil {
		h, err := hyperloglog.NewSketch(HLLPrecision, true)
		if err != nil {
			panic(err) // HLLPrecision is valid
		}
		a.hll = h
	}
	return a.hll
}

// Merge folds o into r, as if every value fed to o had been fed to r (used
// when session windows merge). Count, sum, min, max and mean merge exactly.
// Both rows must have been built from the same specs; Merge panics
// otherwise. o is not modified.
func (r *Row) Merge(o *Row) {
	if r == o {
		o = o.Clone()
	}
	if len(r.accs) != len(o.accs) {
		panic(fmt.Sprintf("state: Row.Merge: rows have %d and %d aggregates", len(r.accs), len(o.accs)))
	}
	for i := range r.accs {
		a, b := &r.accs[i], &o.accs[i]
		if a.op != b.op {
			panic(fmt.Sprintf("state: Row.Merge: aggregate %d is %v in one row and %v in the other", i, a.op, b.op))
		}
		switch a.op {
		case OpCount:
			a.n += b.n
		case OpSum:
			a.sum.merge(&b.sum)
		case OpMin, OpMax, OpQuantile:
			if b.n == 0 {
				continue
			}
			if a.n == 0 {
				a.lo, a.hi = b.lo, b.hi
			} else {
				a.lo, a.hi = min(a.lo, b.lo), max(a.hi, b.hi)
			}
			a.n += b.n
			if a.op != OpQuantile {
				continue
			}
			if a.sk == nil {
				a.sk = b.sk.Copy()
			} else if err := a.sk.MergeWith(b.sk); err != nil {
				panic(err) // every sketch uses quantileMapping
			}
		case OpMean:
			a.sum.merge(&b.sum)
			a.n += b.n
		case OpDistinct:
			if b.hll == nil {
				continue
			}
			if a.hll == nil {
				a.hll = b.hll.Clone()
			} else if err := a.hll.Merge(b.hll); err != nil {
				panic(err) // every sketch has HLLPrecision
			}
		case OpTopK:
			if b.tk == nil {
				continue
			}
			a.topK().merge(b.tk, a.capacity())
		}
	}
}

// Value returns the result of aggregate i:
//
//   - count: the number of records, as a float64;
//   - sum: the exact sum of the finite values, rounded once to the nearest
//     float64, ties to even (so it does not depend on their order); 0 if
//     there were none; ±Inf if the exact sum is beyond the float64 range;
//   - min, max: the smallest and largest finite value;
//   - mean: the sum as above divided by the number of finite values;
//   - quantile: the DDSketch estimate (see RelativeAccuracy), clamped to the
//     exact min and max of the values;
//   - distinct: the HyperLogLog estimate (see HLLPrecision); 0 if none.
//
// ok is false when min, max, mean or quantile have seen no value (then v is
// 0); count, sum and distinct are always ok.
func (r *Row) Value(i int) (v float64, ok bool) {
	a := &r.accs[i]
	switch a.op {
	case OpCount:
		return float64(a.n), true
	case OpSum:
		return a.sum.value(), true
	case OpMin:
		return a.lo, a.n > 0
	case OpMax:
		return a.hi, a.n > 0
	case OpMean:
		if a.n == 0 {
			return 0, false
		}
		return a.sum.value() / float64(a.n), true
	case OpQuantile:
		if a.n == 0 {
			return 0, false
		}
		if a.lo == a.hi {
			return a.lo, true // what the clamp below gives, without the sketch
		}
		v, err := a.sk.GetValueAtQuantile(a.q)
		if err != nil {
			panic(err) // q was validated and the sketch is not empty
		}
		return min(max(v, a.lo), a.hi), true
	case OpDistinct:
		if a.hll == nil {
			return 0, true
		}
		return float64(a.hll.Estimate()), true
	case OpTopK:
		return 0, false // a list: see TopK
	}
	panic("unreachable")
}

// Clone returns a deep copy of r.
func (r *Row) Clone() *Row {
	c := &Row{accs: slices.Clone(r.accs)}
	for i := range c.accs {
		a := &c.accs[i]
		a.sum.c = slices.Clone(a.sum.c)
		if a.sk != nil {
			a.sk = a.sk.Copy()
		}
		if a.hll != nil {
			a.hll = a.hll.Clone()
		}
		if a.tk != nil {
			a.tk = a.tk.clone()
		}
	}
	return c
}

// Encoding, version 1. Integers are unsigned varints (uv), floats are
// IEEE 754 bits in 8 little-endian bytes (f64):
//
//	row      = version:byte(1) n:uv acc*n
//	acc      = op:byte payload            op is the AggOp; checked against the spec
//	count    = n:uv
//	sum      = esum
//	min, max = has:byte(0|1) [value:f64]
//	mean     = n:uv esum
//	quantile = len:uv [sketch:len*byte lo:f64 hi:f64]   len 0: no value yet
//	distinct = len:uv [hll:len*byte]                    len 0: no value yet
//	top_k    = len:uv [topk:len*byte]                   len 0: no value yet (aggregate_topk.go)
//	esum     = k<<1|negative:uv [off:uv digit:u32le*k]  k 0: the sum is 0
//
// esum is the exact sum N (see exactSum) as a sign and a magnitude of k
// base-2^32 digits, least significant first, the first of weight
// 2^(32·off-1074), with no zero digit at either end: one encoding per N.
// sketch is the DDSketch library's own compact encoding (Encode, without the
// index mapping, which is fixed by the version: cubically interpolated at
// 1%): an optional zero count, then the positive and the negative bins, each
// as contiguous counts or as index deltas and counts, whichever is smaller
// (counts are varfloats: one byte up to 127). hll is the
// HyperLogLog library's AppendBinary, after compacting its sparse form so it
// is canonical. A quantile's q and the spec's other settings are not stored:
// changing p99 to p95 keeps the state valid.

// AppendBinary appends a compact, versioned binary encoding of r to dst and
// returns the extended buffer. The same state always gives the same bytes.
// Unlike encoding.BinaryAppender it cannot fail.
func (r *Row) AppendBinary(dst []byte) []byte {
	dst = append(dst, rowVersion)
	dst = binary.AppendUvarint(dst, uint64(len(r.accs)))
	for i := range r.accs {
		a := &r.accs[i]
		dst = append(dst, byte(a.op))
		switch a.op {
		case OpCount:
			dst = binary.AppendUvarint(dst, a.n)
		case OpSum:
			dst = a.sum.appendTo(dst)
		case OpMin, OpMax:
			if a.n == 0 {
				dst = append(dst, 0)
				continue
			}
			v := a.lo
			if a.op == OpMax {
				v = a.hi
			}
			dst = append(dst, 1)
			dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(v))
		case OpMean:
			dst = binary.AppendUvarint(dst, a.n)
			dst = a.sum.appendTo(dst)
		case OpQuantile:
			if a.n == 0 {
				dst = append(dst, 0)
				continue
			}
			start := len(dst)
			a.sk.Encode(&dst, true)
			dst = prefixLength(dst, start)
			dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(a.lo))
			dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(a.hi))
		case OpDistinct:
			if a.hll == nil {
				dst = append(dst, 0)
				continue
			}
			start := len(dst)
			dst = appendHLL(dst, a.hll)
			dst = prefixLength(dst, start)
		case OpTopK:
			if a.tk == nil {
				dst = append(dst, 0)
				continue
			}
			start := len(dst)
			dst = a.tk.appendTo(dst)
			dst = prefixLength(dst, start)
		}
	}
	return dst
}

// prefixLength inserts before dst[start:] its length as a uvarint.
func prefixLength(dst []byte, start int) []byte {
	n := len(dst) - start
	var hdr [binary.MaxVarintLen64]byte
	k := binary.PutUvarint(hdr[:], uint64(n))
	dst = append(dst, hdr[:k]...)
	copy(dst[start+k:], dst[start:start+n])
	copy(dst[start:], hdr[:k])
	return dst
}

// appendHLL appends the canonical encoding of h. The library's encoding of a
// sparse sketch holds a hash set in iteration order (random) next to a
// compressed sorted list of keys; Estimate drains the set into the list,
// then converts to the dense form if the list outgrew the 2^p bytes of dense
// registers, as insertion does now and then. After that the bytes depend
// only on the set of keys inserted: sparse iff the compressed list of all of
// them fits in 2^p bytes (its size only grows with the set, so no earlier
// conversion can have happened), and then that list; else the maximum
// register of each bucket. The header is documented in hyperloglog's
// UnmarshalBinary: byte 3 is 1 for sparse, bytes 4:8 the hash set's size.
func appendHLL(dst []byte, h *hyperloglog.Sketch) []byte {
	start := len(dst)
	out, err := h.AppendBinary(dst)
	if err != nil {
		panic(err) // HLLPrecision is valid
	}
	if out[start+3] == 1 && binary.BigEndian.Uint32(out[start+4:start+8]) != 0 {
		h.Estimate()
		if out, err = h.AppendBinary(out[:start]); err != nil {
			panic(err)
		}
	}
	return out
}

// DecodeRow decodes what AppendBinary wrote. specs must be the list the row
// was built from (a quantile's q may differ). Errors say what was wrong
// (truncated input, unknown version, spec mismatch, invalid contents) and
// where, and wrap ErrCorruptRow. An invalid spec is reported as such, not
// as ErrCorruptRow. DecodeRow does not retain b.
func DecodeRow(specs []AggSpec, b []byte) (*Row, error) {
	for i, s := range specs {
		if err := s.Validate(); err != nil {
			return nil, fmt.Errorf("state: decode aggregate row: spec %d: %w", i, err)
		}
	}
	d := rowDecoder{b: b, acc: -1}
	if v := d.byte("version"); d.err == nil && v != rowVersion {
		return nil, d.fail("unsupported encoding version %d (this build reads version %d)", v, rowVersion)
	}
	n := d.uvarint("aggregate count")
	if d.err == nil && n != uint64(len(specs)) {
		return nil, d.fail("spec mismatch: %d aggregates encoded, specs list %d", n, len(specs))
	}
	r := NewRow(specs)
	for i := range r.accs {
		a := &r.accs[i]
		d.acc = i
		if op := AggOp(d.byte("op")); d.err == nil && op != a.op {
			return nil, d.fail("spec mismatch: encoded as %v, spec says %v", op, a.op)
		}
		switch a.op {
		case OpCount:
			a.n = d.uvarint("count")
		case OpSum:
			d.sum(&a.sum)
		case OpMin, OpMax:
			if has := d.byte("presence"); d.err == nil && has > 1 {
				return nil, d.fail("presence byte is %d, want 0 or 1", has)
			} else if has == 1 {
				v := d.finite("value")
				a.lo, a.hi, a.n = v, v, 1
			}
		case OpMean:
			a.n = d.uvarint("value count")
			d.sum(&a.sum)
			if d.err == nil && a.n == 0 && len(a.sum.c) > 0 {
				return nil, d.fail("mean of no values has a non-zero sum")
			}
		case OpQuantile:
			d.quantile(a)
		case OpDistinct:
			d.distinct(a)
		case OpTopK:
			d.topKPayload(a)
		}
		if d.err != nil {
			return nil, d.err
		}
	}
	d.acc = -1
	if d.err == nil && d.off != len(d.b) {
		d.at = d.off
		d.fail("%d trailing bytes", len(d.b)-d.off)
	}
	if d.err != nil {
		return nil, d.err
	}
	return r, nil
}

// rowDecoder reads an encoded row. The first error sticks: later reads
// return zero values and the caller checks err once in a while.
type rowDecoder struct {
	b   []byte
	off int // next byte to read
	at  int // where the item being read starts, for errors
	acc int // aggregate being decoded, -1 for the row header or trailer
	err error
}

func (d *rowDecoder) fail(format string, args ...any) error {
	if d.err == nil {
		where := "row"
		if d.acc >= 0 {
			where = fmt.Sprintf("aggregate %d", d.acc)
		}
		d.err = fmt.Errorf("state: decode aggregate row: %s, byte %d: %s: %w",
			where, d.at, fmt.Sprintf(format, args...), ErrCorruptRow)
	}
	return d.err
}

func (d *rowDecoder) truncated(what string, need int) {
	d.fail("truncated: %s needs %d bytes, %d left", what, need, len(d.b)-d.off)
}

func (d *rowDecoder) byte(what string) byte {
	if d.err != nil {
		return 0
	}
	d.at = d.off
	if d.off >= len(d.b) {
		d.truncated(what, 1)
		return 0
	}
	d.off++
	return d.b[d.off-1]
}

func (d *rowDecoder) uvarint(what string) uint64 {
	if d.err != nil {
		return 0
	}
	d.at = d.off
	v, k := binary.Uvarint(d.b[d.off:])
	switch {
	case k == 0:
		d.fail("truncated: %s (a varint) ends past the input", what)
		return 0
	case k < 0:
		d.fail("%s overflows 64 bits", what)
		return 0
	}
	d.off += k
	return v
}

// bytes returns the next n bytes (aliasing the input).
func (d *rowDecoder) bytes(n uint64, what string) []byte {
	if d.err != nil {
		return nil
	}
	d.at = d.off
	if n > uint64(len(d.b)-d.off) {
		d.fail("truncated: %s needs %d bytes, %d left", what, n, len(d.b)-d.off)
		return nil
	}
	p := d.b[d.off : d.off+int(n)]
	d.off += int(n)
	return p
}

func (d *rowDecoder) finite(what string) float64 {
	p := d.bytes(8, what)
	if p == nil {
		return 0
	}
	v := math.Float64frombits(binary.LittleEndian.Uint64(p))
	if math.IsNaN(v) || math.IsInf(v, 0) {
		d.fail("%s is %v, want a finite number", what, v)
		return 0
	}
	return v
}

func (d *rowDecoder) sum(s *exactSum) {
	start := d.off
	hdr := d.uvarint("sum header")
	n, neg := hdr>>1, hdr&1 == 1
	if n == 0 {
		if neg && d.err == nil {
			d.fail("sum header %d: negative zero", hdr)
		}
		return
	}
	off := d.uvarint("sum offset")
	if d.err == nil && (n > maxSumChunks || off > maxSumChunks-n) {
		d.at = start
		d.fail("sum of %d chunks from chunk %d is out of range", n, off)
		return
	}
	p := d.bytes(4*n, "sum digits")
	if d.err != nil {
		return
	}
	if binary.LittleEndian.Uint32(p) == 0 || binary.LittleEndian.Uint32(p[len(p)-4:]) == 0 {
		d.at = start
		d.fail("sum digits are not trimmed")
		return
	}
	s.off = int(off)
	s.c = make([]int64, n)
	for i := range s.c {
		x := int64(binary.LittleEndian.Uint32(p[4*i:]))
		if neg {
			x = -x
		}
		s.c[i] = x
	}
}

func (d *rowDecoder) quantile(a *acc) {
	n := d.uvarint("sketch length")
	if n == 0 || d.err != nil {
		return
	}
	p := d.bytes(n, "sketch")
	start := d.at
	lo, hi := d.finite("quantile min"), d.finite("quantile max")
	if d.err != nil {
		return
	}
	if lo > hi {
		d.at = start + len(p)
		d.fail("quantile min %v is above max %v", lo, hi)
		return
	}
	sk, count, err := decodeSketch(p)
	if err != nil {
		d.at = start
		d.fail("sketch: %v", err)
		return
	}
	a.sk, a.n, a.lo, a.hi = sk, count, lo, hi
}

func (d *rowDecoder) distinct(a *acc) {
	n := d.uvarint("hyperloglog length")
	if n == 0 || d.err != nil {
		return
	}
	p := d.bytes(n, "hyperloglog")
	if d.err != nil {
		return
	}
	if len(p) < 2 || p[1] != HLLPrecision {
		d.fail("hyperloglog: not of precision %d", HLLPrecision)
		return
	}
	h := new(hyperloglog.Sketch)
	if err := h.UnmarshalBinary(p); err != nil {
		d.fail("hyperloglog: %v", err)
		return
	}
	a.hll = h
}

// decodeSketch decodes what DDSketch.Encode(&b, true) wrote for a sketch of
// newSketch. It is stricter than the library's decoder, which ignores errors
// from decoding bins and accepts any index and count: here indexes must be
// in the mapping's range and span at most MaxQuantileBins (so nothing
// collapses while decoding), counts must be whole numbers, and each part may
// appear once, in the order Encode writes them. It returns the total count.
func decodeSketch(b []byte) (*ddsketch.DDSketch, uint64, error) {
	sk := newSketch()
	seen := 0 // 1: zero count, 2: positive bins, 3: negative bins
	var total float64
	for len(b) > 0 {
		raw := b[0]
		flag, _ := enc.DecodeFlag(&b)
		part := 0
		switch {
		case flag == enc.FlagZeroCountVarFloat:
			part = 1
		case flag.Type() == enc.FlagTypePositiveStore:
			part = 2
		case flag.Type() == enc.FlagTypeNegativeStore:
			part = 3
		default:
			return nil, 0, fmt.Errorf("unexpected flag %#02x", raw)
		}
		if part <= seen {
			return nil, 0, fmt.Errorf("flag %#02x repeated or out of order", raw)
		}
		seen = part
		var err error
		var c float64
		switch part {
		case 1:
			if c, err = decodeCount(&b, false); err == nil {
				err = sk.AddWithCount(0, c)
			}
		case 2:
			c, err = decodeBins(&b, flag.SubFlag(), sk.GetPositiveValueStore())
		case 3:
			c, err = decodeBins(&b, flag.SubFlag(), sk.GetNegativeValueStore())
		}
		if err != nil {
			return nil, 0, err
		}
		total += c
	}
	if total < 1 || total > 1<<53 {
		return nil, 0, fmt.Errorf("total count %v out of range", total)
	}
	return sk, uint64(total), nil
}

// decodeCount reads a bin count: a whole number in [1, 2^53], or 0 if
// zeroOK.
func decodeCount(b *[]byte, zeroOK bool) (float64, error) {
	c, err := enc.DecodeVarfloat64(b)
	if err != nil {
		return 0, fmt.Errorf("truncated count")
	}
	if !(c >= 0 && c <= 1<<53 && c == math.Trunc(c)) || (c == 0 && !zeroOK) {
		return 0, fmt.Errorf("invalid count %v", c)
	}
	return c, nil
}

// decodeBins reads one store's bins, as written by DenseStore.Encode (or the
// library's other bin encoding, which Encode does not use), into s, which
// must be empty. It returns the sum of the counts.
func decodeBins(b *[]byte, mode enc.SubFlag, s store.Store) (float64, error) {
	n, err := enc.DecodeUvarint64(b)
	if err != nil {
		return 0, fmt.Errorf("truncated bin count")
	}
	if n == 0 || n > MaxQuantileBins || n > uint64(len(*b)) {
		return 0, fmt.Errorf("bin count %d out of range", n)
	}
	index := func(v int64, err error) (int, error) {
		if err != nil {
			return 0, fmt.Errorf("truncated bin index")
		}
		if v < int64(minQuantileIndex) || v > int64(maxQuantileIndex) {
			return 0, fmt.Errorf("bin index %d out of range", v)
		}
		return int(v), nil
	}
	var total float64
	first, last := 0, 0
	switch mode {
	case enc.BinEncodingContiguousCounts:
		if first, err = index(enc.DecodeVarint64(b)); err != nil {
			return 0, err
		}
		if step, err := enc.DecodeVarint64(b); err != nil || step != 1 {
			return 0, fmt.Errorf("contiguous bins: want index step 1")
		}
		last = first + int(n) - 1
		if last > maxQuantileIndex {
			return 0, fmt.Errorf("bin index %d out of range", last)
		}
		for i := first; i <= last; i++ {
			c, err := decodeCount(b, i != first && i != last)
			if err != nil {
				return 0, err
			}
			s.AddWithCount(i, c)
			total += c
		}
	case enc.BinEncodingIndexDeltasAndCounts, enc.BinEncodingIndexDeltas:
		withCounts := mode == enc.BinEncodingIndexDeltasAndCounts
		idx := int64(0)
		for k := uint64(0); k < n; k++ {
			delta, err := enc.DecodeVarint64(b)
			if err != nil {
				return 0, fmt.Errorf("truncated bin index")
			}
			if k > 0 && (delta < 1 || delta > MaxQuantileBins) {
				return 0, fmt.Errorf("bin index delta %d: bins must be ascending and within %d", delta, MaxQuantileBins)
			}
			i, err := index(idx+delta, nil)
			if err != nil {
				return 0, err
			}
			if k == 0 {
				first = i
			}
			last, idx = i, int64(i)
			c := 1.0
			if withCounts {
				if c, err = decodeCount(b, false); err != nil {
					return 0, err
				}
			}
			s.AddWithCount(i, c)
			total += c
		}
	default:
		return 0, fmt.Errorf("unknown bin encoding")
	}
	if last-first+1 > MaxQuantileBins {
		return 0, fmt.Errorf("bins span %d indexes, more than %d", last-first+1, MaxQuantileBins)
	}
	return total, nil
}

// exactSum is the exact sum of finite float64 values: an integer N in units
// of 2^-1074 (the smallest subnormal, so every float64 is a whole number of
// units), held as chunks of 32 bits' weight in int64s, as in Neal's "small
// superaccumulator" (arXiv:1505.05571), kept sparse: only the chunks the
// values touch exist. Adding is integer arithmetic, so the sum is exact and
// independent of the order of the values; value rounds it once. Chunks have
// 31 bits of headroom, so carries are propagated only every carryEvery adds.
type exactSum struct {
	c   []int64 // c[i] has weight 2^(32*(off+i)) units; N = Σ c[i]·weight
	off int
	// adds since carries were last propagated (all |c[i]| < 2^33 then).
	pending int
}

const (
	// maxSumChunks bounds the chunks: |N| < 2^64 values × 2^(1024+1074)
	// units each fits in 2162 bits, 68 chunks; 72 leaves room for carries.
	maxSumChunks = 72
	// carryEvery: one add changes a chunk by less than 2^52, so 1024 adds
	// move a chunk of magnitude below 2^33 by less than 2^62.
	carryEvery = 1024
)

func (s *exactSum) add(v float64) {
	b := math.Float64bits(v)
	e := int(b>>52) & 0x7ff
	m := b & (1<<52 - 1)
	if e == 0 {
		if m == 0 {
			return // ±0
		}
		e = 1 // subnormal
	} else {
		m |= 1 << 52
	}
	// |v| = m·2^(e-1075) = m << (e-1) units.
	pos := e - 1
	k, r := pos>>5, uint(pos&31)
	lo := int64((m << r) & (1<<32 - 1))
	hi := int64(m >> (32 - r))
	s.ensure(k, k+1)
	i := k - s.off
	if b>>63 != 0 {
		s.c[i] -= lo
		s.c[i+1] -= hi
	} else {
		s.c[i] += lo
		s.c[i+1] += hi
	}
	if s.pending++; s.pending >= carryEvery {
		s.carry()
	}
}

// ensure makes chunks lo..hi exist.
func (s *exactSum) ensure(lo, hi int) {
	if len(s.c) == 0 {
		s.off = lo
		s.c = make([]int64, hi-lo+1, max(4, hi-lo+1))
		return
	}
	top := s.off + len(s.c) - 1
	if lo >= s.off && hi <= top {
		return
	}
	nlo, nhi := min(lo, s.off), max(hi, top)
	n := nhi - nlo + 1
	if nlo == s.off && n <= cap(s.c) {
		s.c = s.c[:n] // chunks past len are zero: c never shrinks
		return
	}
	c := make([]int64, n, n+2)
	copy(c[s.off-nlo:], s.c)
	s.c, s.off = c, nlo
}

// carry propagates carries so every chunk but the top is in [0, 2^32) and
// the top one is in [-2^32, 2^32), without changing N.
func (s *exactSum) carry() {
	s.pending = 0
	var carry int64
	for i := range s.c {
		x := s.c[i] + carry
		s.c[i] = x & (1<<32 - 1)
		carry = x >> 32
	}
	for carry != 0 && carry != -1 {
		s.ensure(s.off, s.off+len(s.c))
		s.c[len(s.c)-1] = carry & (1<<32 - 1)
		carry >>= 32
	}
	if carry == -1 {
		if n := len(s.c); s.c[n-1] >= 1<<31 {
			s.c[n-1] -= 1 << 32 // fold the sign into the top chunk
		} else {
			s.ensure(s.off, s.off+n)
			s.c[n] = -1
		}
	}
}

func (s *exactSum) merge(o *exactSum) {
	var buf [maxSumChunks]uint32
	neg, off, d := o.digits(&buf)
	if len(d) == 0 {
		return
	}
	s.carry()
	s.ensure(off, off+len(d)-1)
	for j, x := range d {
		if neg {
			s.c[off-s.off+j] -= int64(x)
		} else {
			s.c[off-s.off+j] += int64(x)
		}
	}
	s.pending = 1 // chunks are below 2^33 again
}

// digits returns N as a sign and its magnitude in base 2^32, least
// significant first, starting at chunk off, with no zero digit at either
// end (none at all for 0). The form is canonical: it depends only on N.
func (s *exactSum) digits(buf *[maxSumChunks]uint32) (neg bool, off int, d []uint32) {
	var t [maxSumChunks]int64
	n := copy(t[:], s.c)
	if n < len(s.c) {
		panic("state: exact sum has too many chunks")
	}
	var carry int64
	for i := range n {
		x := t[i] + carry
		t[i] = x & (1<<32 - 1)
		carry = x >> 32
	}
	for carry != 0 && carry != -1 {
		t[n] = carry & (1<<32 - 1)
		carry >>= 32
		n++
	}
	// Now N = Σ t[i]·2^(32i) + carry·2^(32n), with carry 0 or -1: two's
	// complement. Negate if negative.
	if carry == -1 {
		neg = true
		c := uint64(1)
		for i := range n {
			x := uint64(^uint32(t[i])) + c
			t[i], c = int64(uint32(x)), x>>32
		}
	}
	lo, hi := 0, n
	for lo < hi && t[lo] == 0 {
		lo++
	}
	for hi > lo && t[hi-1] == 0 {
		hi--
	}
	for i := lo; i < hi; i++ {
		buf[i-lo] = uint32(t[i])
	}
	return neg, s.off + lo, buf[:hi-lo]
}

// value returns N rounded to the nearest float64, ties to even (±Inf past
// the float64 range).
func (s *exactSum) value() float64 {
	var buf [maxSumChunks]uint32
	neg, off, d := s.digits(&buf)
	switch {
	case len(d) == 0:
		return 0
	case len(d) <= 2 && off*32 >= 52 && off*32 <= 2045:
		// Fast path: at most 64 bits at a scale where, if they fit in 53,
		// the result is a normal float64 and so exact.
		x := uint64(d[0])
		if len(d) == 2 {
			x |= uint64(d[1]) << 32
		}
		if x < 1<<53 {
			v := math.Ldexp(float64(x), off*32-1074)
			if neg {
				v = -v
			}
			return v
		}
	}
	x := new(big.Int)
	for i := len(d) - 1; i >= 0; i-- {
		x.Lsh(x, 32).Or(x, new(big.Int).SetUint64(uint64(d[i])))
	}
	if neg {
		x.Neg(x)
	}
	f := new(big.Float).SetInt(x) // exact: precision is x's bit length
	v, _ := f.SetMantExp(f, off*32-1074).Float64()
	return v
}

// appendTo appends the canonical encoding of N (see AppendBinary).
func (s *exactSum) appendTo(dst []byte) []byte {
	var buf [maxSumChunks]uint32
	neg, off, d := s.digits(&buf)
	hdr := uint64(len(d)) << 1
	if neg {
		hdr |= 1
	}
	dst = binary.AppendUvarint(dst, hdr)
	if len(d) == 0 {
		return dst
	}
	dst = binary.AppendUvarint(dst, uint64(off))
	for _, x := range d {
		dst = binary.LittleEndian.AppendUint32(dst, x)
	}
	return dst
}
