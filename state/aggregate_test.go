package state

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/big"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"

	enc "github.com/DataDog/sketches-go/ddsketch/encoding"
)

// allSpecs has one aggregate of every kind.
var allSpecs = []AggSpec{
	{Op: OpCount},
	{Op: OpSum},
	{Op: OpMin},
	{Op: OpMax},
	{Op: OpMean},
	{Op: OpQuantile, Quantile: 0.99},
	{Op: OpDistinct},
}

// feed adds every value to every aggregate of r.
func feed(r *Row, vals ...float64) {
	for _, v := range vals {
		for i := range r.accs {
			r.Add(i, v)
		}
	}
}

func values(t testing.TB, r *Row) []string {
	t.Helper()
	out := make([]string, len(r.accs))
	for i := range r.accs {
		v, ok := r.Value(i)
		out[i] = fmt.Sprintf("%v:%v=%v", r.accs[i].op, ok, v)
	}
	return out
}

func mustDecode(t testing.TB, specs []AggSpec, b []byte) *Row {
	t.Helper()
	r, err := DecodeRow(specs, b)
	if err != nil {
		t.Fatalf("DecodeRow: %v", err)
	}
	return r
}

func TestRowExactAggregates(t *testing.T) {
	inf, nan := math.Inf(1), math.NaN()
	specs := []AggSpec{{Op: OpCount}, {Op: OpSum}, {Op: OpMin}, {Op: OpMax}, {Op: OpMean}}
	type want struct {
		count, sum, min, max, mean float64
		has                        bool // min, max and mean are ok
	}
	tests := []struct {
		name string
		in   []float64
		want want
	}{
		{"empty", nil, want{}},
		{"one", []float64{7}, want{1, 7, 7, 7, 7, true}},
		{"integers", []float64{3, 1, 4, 1, 5, 9, 2, 6}, want{8, 31, 1, 9, 3.875, true}},
		{"negatives", []float64{-2.5, 10, -7.25, 0}, want{4, 0.25, -7.25, 10, 0.0625, true}},
		// NaN and ±Inf are counted as records but ignored by every other
		// aggregate; a row of only those has no min, max or mean.
		{"non-finite ignored", []float64{1, nan, inf, -inf, 3}, want{5, 4, 1, 3, 2, true}},
		{"only non-finite", []float64{nan, inf}, want{2, 0, 0, 0, 0, false}},
		{"negative zero is zero", []float64{math.Copysign(0, -1), 0}, want{2, 0, 0, 0, 0, true}},
		// The sum is exact, then rounded once: a naive float64 sum of these
		// gives 0 (1e100 absorbs 1, then cancels).
		{"exact sum", []float64{1e100, 1, -1e100}, want{3, 1, -1e100, 1e100, 1.0 / 3, true}},
		{"exact sum of tenths", []float64{0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1}, want{10, 1, 0.1, 0.1, 0.1, true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			check := func(t *testing.T, r *Row) {
				t.Helper()
				w := []struct {
					v  float64
					ok bool
				}{{tt.want.count, true}, {tt.want.sum, true}, {tt.want.min, tt.want.has}, {tt.want.max, tt.want.has}, {tt.want.mean, tt.want.has}}
				for i, w := range w {
					v, ok := r.Value(i)
					if ok != w.ok || v != w.v || math.Signbit(v) != math.Signbit(w.v) {
						t.Errorf("%v = %v, %v; want %v, %v", specs[i].Op, v, ok, w.v, w.ok)
					}
				}
			}
			one := NewRow(specs)
			feed(one, tt.in...)
			check(t, one)

			// Every split of the input into two rows merges to the same row,
			// down to the bytes.
			for cut := 0; cut <= len(tt.in); cut++ {
				a, b := NewRow(specs), NewRow(specs)
				feed(a, tt.in[:cut]...)
				feed(b, tt.in[cut:]...)
				b.Merge(a)
				check(t, b)
				if got, want := b.AppendBinary(nil), one.AppendBinary(nil); !bytes.Equal(got, want) {
					t.Fatalf("cut %d: merged row encodes to %x, want %x", cut, got, want)
				}
			}
		})
	}
}

func TestSumIsExactAndOrderIndependent(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	gens := map[string]func() float64{
		"tenths":      func() float64 { return float64(rng.IntN(1000)) / 10 },
		"wide":        func() float64 { return (rng.Float64() - 0.5) * math.Pow(10, float64(rng.IntN(40)-20)) },
		"cancelling":  func() float64 { return math.Copysign(rng.Float64()*1e16, rng.Float64()-0.5) + rng.Float64() },
		"huge":        func() float64 { return (rng.Float64() - 0.4) * 1e300 },
		"tiny":        func() float64 { return rng.NormFloat64() * 1e-310 }, // subnormals
		"latency(ms)": func() float64 { return rng.ExpFloat64() * 85.3 },
		"extremes": func() float64 { // any finite float64, sums may overflow
			return math.Float64frombits(rng.Uint64()&^(0x7ff<<52) | uint64(rng.IntN(0x7ff))<<52)
		},
	}
	for name, gen := range gens {
		t.Run(name, func(t *testing.T) {
			vals := make([]float64, 5000)
			exact := new(big.Float).SetPrec(4000)
			for i := range vals {
				vals[i] = gen()
				exact.Add(exact, new(big.Float).SetFloat64(vals[i]))
			}
			want, _ := exact.Float64() // rounds to nearest, ties to even
			specs := []AggSpec{{Op: OpSum}, {Op: OpMean}}
			r := NewRow(specs)
			feed(r, vals...)
			if got, _ := r.Value(0); got != want {
				t.Errorf("sum = %v, want %v (exact, rounded once)", got, want)
			}
			if got, _ := r.Value(1); got != want/float64(len(vals)) {
				t.Errorf("mean = %v, want %v", got, want/float64(len(vals)))
			}
			enc := r.AppendBinary(nil)
			for trial := range 5 {
				rng.Shuffle(len(vals), func(i, j int) { vals[i], vals[j] = vals[j], vals[i] })
				parts := splitRandomly(rng, vals, 1+trial)
				m := NewRow(specs)
				for _, p := range parts {
					pr := NewRow(specs)
					feed(pr, p...)
					pr = mustDecode(t, specs, pr.AppendBinary(nil))
					m.Merge(pr)
				}
				if got := m.AppendBinary(nil); !bytes.Equal(got, enc) {
					t.Fatalf("trial %d: shuffled and merged sum encodes to %x, want %x", trial, got, enc)
				}
			}
		})
	}
}

// The sum is exact even beyond the float64 range: it reads as ±Inf while
// the exact sum is out of range, and comes back when it returns.
func TestSumBeyondFloat64Range(t *testing.T) {
	specs := []AggSpec{{Op: OpSum}}
	r := NewRow(specs)
	feed(r, math.MaxFloat64, math.MaxFloat64)
	if v, _ := r.Value(0); !math.IsInf(v, 1) {
		t.Errorf("2·MaxFloat64 = %v, want +Inf", v)
	}
	d := mustDecode(t, specs, r.AppendBinary(nil))
	if v, _ := d.Value(0); !math.IsInf(v, 1) {
		t.Errorf("decoded 2·MaxFloat64 = %v, want +Inf", v)
	}
	feed(d, -math.MaxFloat64)
	if v, _ := d.Value(0); v != math.MaxFloat64 {
		t.Errorf("2·MaxFloat64 - MaxFloat64 = %v, want MaxFloat64", v)
	}
	neg := NewRow(specs)
	feed(neg, -math.MaxFloat64, -math.MaxFloat64, -math.MaxFloat64)
	d.Merge(neg)
	if v, _ := d.Value(0); !math.IsInf(v, -1) {
		t.Errorf("-2·MaxFloat64 = %v, want -Inf", v)
	}
}

// specsOf returns the specs r was built from.
func specsOf(r *Row) []AggSpec {
	s := make([]AggSpec, len(r.accs))
	for i, a := range r.accs {
		s[i] = AggSpec{Op: a.op, Quantile: a.q}
	}
	return s
}

func splitRandomly(rng *rand.Rand, vals []float64, parts int) [][]float64 {
	cuts := []int{0, len(vals)}
	for range parts - 1 {
		cuts = append(cuts, rng.IntN(len(vals)+1))
	}
	slices.Sort(cuts)
	var out [][]float64
	for i := 1; i < len(cuts); i++ {
		out = append(out, vals[cuts[i-1]:cuts[i]])
	}
	return out
}

// Quantile ranks follow DDSketch: for n values sorted ascending, quantile q
// is the value of 0-based rank ⌊q·(n−1)⌋ (no interpolation). The estimate
// must be within RelativeAccuracy of it; the value at the ceiling rank is
// also accepted, as q·(n−1) is computed in floating point.
func checkQuantile(t *testing.T, sorted []float64, q, got float64) {
	t.Helper()
	rank := q * float64(len(sorted)-1)
	for _, x := range []float64{sorted[int(math.Floor(rank))], sorted[int(math.Ceil(rank))]} {
		if math.Abs(got-x) <= RelativeAccuracy*math.Abs(x)*(1+1e-9) {
			return
		}
	}
	x := sorted[int(math.Floor(rank))]
	t.Errorf("p%v = %v, exact %v: relative error %.4f > %v", q*100, got, x, math.Abs(got-x)/math.Abs(x), RelativeAccuracy)
}

func TestQuantileAccuracy(t *testing.T) {
	const n = 50_000
	dists := []struct {
		name string
		gen  func(*rand.Rand) float64
	}{
		{"uniform", func(r *rand.Rand) float64 { return r.Float64() * 1000 }},
		{"exponential", func(r *rand.Rand) float64 { return r.ExpFloat64() * 120 }},
		{"lognormal", func(r *rand.Rand) float64 { return math.Exp(3 + 1.5*r.NormFloat64()) }},
		{"normal around 0", func(r *rand.Rand) float64 { return 100 * r.NormFloat64() }},
		{"zeros and negatives", func(r *rand.Rand) float64 {
			if r.IntN(5) == 0 {
				return 0
			}
			return -r.ExpFloat64() * 30
		}},
		{"constant", func(*rand.Rand) float64 { return 42.5 }},
	}
	qs := []float64{0.5, 0.95, 0.99, 0.999}
	specs := make([]AggSpec, len(qs))
	for i, q := range qs {
		specs[i] = AggSpec{Op: OpQuantile, Quantile: q}
	}
	for seed, d := range dists {
		t.Run(d.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(seed), 99))
			vals := make([]float64, n)
			for i := range vals {
				vals[i] = d.gen(rng)
			}
			one := NewRow(specs)
			feed(one, vals...)
			merged := NewRow(specs)
			for _, p := range splitRandomly(rng, vals, 4) {
				pr := NewRow(specs)
				feed(pr, p...)
				merged.Merge(mustDecode(t, specs, pr.AppendBinary(nil)))
			}
			sorted := slices.Sorted(slices.Values(vals))
			for i, q := range qs {
				v1, ok1 := one.Value(i)
				v2, ok2 := merged.Value(i)
				if !ok1 || !ok2 {
					t.Fatalf("p%v not ok", q*100)
				}
				checkQuantile(t, sorted, q, v1)
				if v1 != v2 {
					t.Errorf("p%v after merge = %v, want %v as for one row", q*100, v2, v1)
				}
			}
			if !bytes.Equal(one.AppendBinary(nil), merged.AppendBinary(nil)) {
				t.Errorf("merged quantile row does not encode like one row fed everything")
			}
			t.Logf("%s: %d values, encoded in %d bytes", d.name, n, len(one.AppendBinary(nil)))
		})
	}
}

// When values span more than MaxQuantileBins bins, the sketch keeps its
// memory bound and the accuracy of high quantiles; the lowest values are
// collapsed upwards, so low quantiles are overestimated. For negative values
// the lowest are the largest in magnitude.
func TestQuantileCollapse(t *testing.T) {
	for _, sign := range []float64{1, -1} {
		t.Run(fmt.Sprintf("sign %v", sign), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(5, 5))
			vals := make([]float64, 20_000)
			for i := range vals {
				vals[i] = sign * math.Pow(10, rng.Float64()*300-150) // log-uniform over 300 decades
			}
			specs := []AggSpec{{Op: OpQuantile, Quantile: 0.01}, {Op: OpQuantile, Quantile: 0.5}, {Op: OpQuantile, Quantile: 0.99}, {Op: OpQuantile, Quantile: 0.999}}
			r := NewRow(specs)
			feed(r, vals...)
			for _, st := range []interface {
				MinIndex() (int, error)
				MaxIndex() (int, error)
			}{r.accs[0].sk.GetPositiveValueStore(), r.accs[0].sk.GetNegativeValueStore()} {
				lo, _ := st.MinIndex()
				hi, _ := st.MaxIndex()
				if hi-lo+1 > MaxQuantileBins {
					t.Errorf("store spans %d bins, want at most %d", hi-lo+1, MaxQuantileBins)
				}
			}
			sorted := slices.Sorted(slices.Values(vals))
			// High quantiles keep their accuracy, whatever the sign.
			checkQuantile(t, sorted, 0.99, must(r.Value(2)))
			checkQuantile(t, sorted, 0.999, must(r.Value(3)))
			if p1, exact := must(r.Value(0)), sorted[len(sorted)/100]; p1 < exact || math.Abs(p1-exact) <= RelativeAccuracy*math.Abs(exact) {
				t.Errorf("collapsed p1 = %v, want an overestimate of %v by more than %v", p1, exact, RelativeAccuracy)
			}
			// Collapsing is order independent too.
			rng.Shuffle(len(vals), func(i, j int) { vals[i], vals[j] = vals[j], vals[i] })
			m := NewRow(specs)
			for _, p := range splitRandomly(rng, vals, 3) {
				pr := NewRow(specs)
				feed(pr, p...)
				m.Merge(mustDecode(t, specs, pr.AppendBinary(nil)))
			}
			if !bytes.Equal(m.AppendBinary(nil), r.AppendBinary(nil)) {
				t.Errorf("collapsed sketch depends on order or merges")
			}
		})
	}
}

func must(v float64, ok bool) float64 {
	if !ok {
		panic("value not ok")
	}
	return v
}

// hllBound is the distinct-count error tolerated by the tests: three
// standard errors of a HyperLogLog with 2^HLLPrecision registers,
// 3 × 1.04/√16384 = 2.44%.
var hllBound = 3 * 1.04 / math.Sqrt(1<<HLLPrecision)

func TestDistinctAccuracy(t *testing.T) {
	for _, n := range []int{1, 100, 1000, 10_000, 100_000, 300_000} {
		for _, kind := range []string{"strings", "floats"} {
			t.Run(fmt.Sprintf("%s/%d", kind, n), func(t *testing.T) {
				specs := []AggSpec{{Op: OpDistinct}}
				one, a, b := NewRow(specs), NewRow(specs), NewRow(specs)
				add := func(r *Row, i int) {
					if kind == "strings" {
						r.AddString(0, "user-"+strconv.Itoa(i))
					} else {
						r.Add(0, float64(i)*1.5)
					}
				}
				// Each value twice; a and b overlap on the middle half.
				for i := range n {
					add(one, i)
					add(one, i)
					if i < 3*n/4 {
						add(a, i)
					}
					if i >= n/4 {
						add(b, i)
					}
				}
				got := must(one.Value(0))
				if err := math.Abs(got-float64(n)) / float64(n); err > hllBound {
					t.Errorf("distinct = %v, want %d ± %.2f%%: error %.2f%%", got, n, 100*hllBound, 100*err)
				}
				a.Merge(mustDecode(t, specs, b.AppendBinary(nil)))
				if got2 := must(a.Value(0)); got2 != got {
					t.Errorf("merged distinct = %v, want %v as for one row", got2, got)
				}
				if !bytes.Equal(a.AppendBinary(nil), one.AppendBinary(nil)) {
					t.Errorf("merged distinct does not encode like one row fed everything")
				}
				t.Logf("n=%d estimate %v (%.3f%%), %d bytes", n, got, 100*(got-float64(n))/float64(n), len(one.AppendBinary(nil)))
			})
		}
	}
}

func TestDistinctKinds(t *testing.T) {
	r := NewRow([]AggSpec{{Op: OpDistinct}, {Op: OpCount}, {Op: OpSum}})
	if v, ok := r.Value(0); v != 0 || !ok {
		t.Errorf("empty distinct = %v, %v; want 0, true", v, ok)
	}
	for _, s := range []string{"a", "b", "a", ""} {
		for i := range 3 {
			r.AddString(i, s)
		}
	}
	feed(r, 1, 1, math.Copysign(0, -1), 0, math.NaN(), math.Inf(1))
	// "a", "b", "", 1, 0: -0 is 0, NaN and Inf are ignored.
	if got := must(r.Value(0)); got != 5 {
		t.Errorf("distinct = %v, want 5", got)
	}
	if got := must(r.Value(1)); got != 10 {
		t.Errorf("count over AddString and Add = %v, want 10", got)
	}
	if got := must(r.Value(2)); got != 2 {
		t.Errorf("sum (AddString is a no-op) = %v, want 2", got)
	}
}

func TestEmptyRowValues(t *testing.T) {
	r := NewRow(allSpecs)
	want := []bool{true, true, false, false, false, false, true}
	for i, w := range want {
		if v, ok := r.Value(i); ok != w || v != 0 {
			t.Errorf("%v on an empty row = %v, %v; want 0, %v", allSpecs[i].Op, v, ok, w)
		}
	}
}

// randomRow returns a row of allSpecs fed n random values of a mixed
// distribution, with strings for distinct.
func randomRow(rng *rand.Rand, n int) *Row {
	r := NewRow(allSpecs)
	for range n {
		v := randomValue(rng)
		for i := range allSpecs {
			if allSpecs[i].Op == OpDistinct && rng.IntN(2) == 0 {
				r.AddString(i, strconv.Itoa(rng.IntN(3*n+1)))
				continue
			}
			r.Add(i, v)
		}
	}
	return r
}

func randomValue(rng *rand.Rand) float64 {
	switch rng.IntN(7) {
	case 0:
		return 0
	case 1:
		return -rng.ExpFloat64() * 10
	case 2: // these two force collapsing
		return math.Pow(10, rng.Float64()*600-300)
	case 5:
		return -math.Pow(10, rng.Float64()*600-300)
	case 3:
		return float64(rng.IntN(100))
	default:
		return rng.ExpFloat64() * 100
	}
}

func TestEncodeRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	rows := map[string]*Row{
		"empty":      NewRow(allSpecs),
		"no specs":   NewRow(nil),
		"one value":  randomRow(rng, 1),
		"small":      randomRow(rng, 30),
		"large":      randomRow(rng, 40_000), // dense HLL, collapsed sketches
		"only NaN":   func() *Row { r := NewRow(allSpecs); feed(r, math.NaN()); return r }(),
		"huge value": func() *Row { r := NewRow(allSpecs); feed(r, math.MaxFloat64, -math.MaxFloat64); return r }(),
	}
	for name, r := range rows {
		t.Run(name, func(t *testing.T) {
			specs := specsOf(r)
			b := r.AppendBinary([]byte("prefix"))
			if !bytes.HasPrefix(b, []byte("prefix")) {
				t.Fatal("AppendBinary did not append")
			}
			b = b[len("prefix"):]
			d := mustDecode(t, specs, b)
			if got, want := values(t, d), values(t, r); !slices.Equal(got, want) {
				t.Errorf("decoded values %v, want %v", got, want)
			}
			if b2 := d.AppendBinary(nil); !bytes.Equal(b2, b) {
				t.Errorf("re-encoding differs:\n got %x\nwant %x", b2, b)
			}
			c := r.Clone()
			if b3 := c.AppendBinary(nil); !bytes.Equal(b3, b) {
				t.Errorf("clone encodes differently")
			}
			feed(c, 1, 2, 3)
			if b4 := r.AppendBinary(nil); !bytes.Equal(b4, b) {
				t.Errorf("adding to a clone changed the original")
			}
			t.Logf("%s: %d bytes", name, len(b))
		})
	}
}

// The metamorphic property replay relies on: feeding the same values in any
// order, split across rows that are merged, with encode/decode round trips
// (commits, cache evictions) at any point, gives the same bytes.
func TestRowOrderAndRoundTripIndependence(t *testing.T) {
	for seed := range uint64(8) {
		rng := rand.New(rand.NewPCG(seed, 3))
		n := 1 + rng.IntN(30_000)
		type in struct {
			v float64
			s string
		}
		ins := make([]in, n)
		for i := range ins {
			ins[i] = in{v: randomValue(rng)}
			if rng.IntN(3) == 0 {
				ins[i].s = strconv.Itoa(rng.IntN(n))
			}
		}
		apply := func(r *Row, x in) {
			for i := range allSpecs {
				if allSpecs[i].Op == OpDistinct && x.s != "" {
					r.AddString(i, x.s)
				} else {
					r.Add(i, x.v)
				}
			}
		}
		ref := NewRow(allSpecs)
		for _, x := range ins {
			apply(ref, x)
		}
		want := ref.AppendBinary(nil)

		rng.Shuffle(len(ins), func(i, j int) { ins[i], ins[j] = ins[j], ins[i] })
		rows := []*Row{NewRow(allSpecs), NewRow(allSpecs), NewRow(allSpecs)}
		for _, x := range ins {
			k := rng.IntN(len(rows))
			apply(rows[k], x)
			if rng.IntN(2000) == 0 {
				rows[k] = mustDecode(t, allSpecs, rows[k].AppendBinary(nil))
			}
		}
		got := rows[0]
		for _, r := range rows[1:] {
			got.Merge(r)
		}
		if !bytes.Equal(got.AppendBinary(nil), want) {
			t.Fatalf("seed %d: shuffled, split, round-tripped row encodes differently", seed)
		}
		if g, w := values(t, got), values(t, ref); !slices.Equal(g, w) {
			t.Fatalf("seed %d: values %v, want %v", seed, g, w)
		}
	}
}

func TestMergeSelf(t *testing.T) {
	r := randomRow(rand.New(rand.NewPCG(1, 1)), 500)
	want := r.Clone()
	want.Merge(r.Clone())
	r.Merge(r)
	if !bytes.Equal(r.AppendBinary(nil), want.AppendBinary(nil)) {
		t.Error("r.Merge(r) differs from merging a copy")
	}
}

func TestMergeMismatchedSpecsPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("Merge of rows with different specs did not panic")
		}
	}()
	NewRow([]AggSpec{{Op: OpSum}}).Merge(NewRow([]AggSpec{{Op: OpMax}}))
}

func TestSpecValidate(t *testing.T) {
	for _, s := range []AggSpec{{}, {Op: 8}, {Op: OpQuantile}, {Op: OpQuantile, Quantile: 1}, {Op: OpQuantile, Quantile: math.NaN()}} {
		if s.Validate() == nil {
			t.Errorf("%+v: Validate() = nil, want an error", s)
		}
	}
	if _, err := DecodeRow([]AggSpec{{Op: OpQuantile, Quantile: 2}}, []byte{1, 1, 6, 0}); err == nil {
		t.Error("DecodeRow accepted an invalid spec")
	}
}

// A quantile's q is not part of the state: a p99 row decodes as p50.
func TestQuantileChangeKeepsState(t *testing.T) {
	r := NewRow([]AggSpec{{Op: OpQuantile, Quantile: 0.99}})
	feed(r, 1, 2, 3, 4, 5)
	d := mustDecode(t, []AggSpec{{Op: OpQuantile, Quantile: 0.5}}, r.AppendBinary(nil))
	if got := must(d.Value(0)); math.Abs(got-3) > 0.03 {
		t.Errorf("p50 = %v, want 3", got)
	}
}

func TestDecodeRowErrors(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 11))
	valid := randomRow(rng, 200).AppendBinary(nil)
	tests := []struct {
		name  string
		specs []AggSpec
		in    []byte
		want  string // in the error message
	}{
		{"empty", allSpecs, nil, "truncated"},
		{"version", allSpecs, append([]byte{9}, valid[1:]...), "unsupported encoding version 9"},
		{"fewer specs", allSpecs[:3], valid, "spec mismatch: 7 aggregates encoded, specs list 3"},
		{"other op", append([]AggSpec{{Op: OpSum}}, allSpecs[1:]...), valid, "aggregate 0, byte 2: spec mismatch: encoded as count, spec says sum"},
		{"trailing byte", allSpecs, append(slices.Clone(valid), 0), "1 trailing bytes"},
		{"presence", []AggSpec{{Op: OpMin}}, []byte{1, 1, byte(OpMin), 2}, "presence byte is 2"},
		{"NaN min", []AggSpec{{Op: OpMin}}, []byte{1, 1, byte(OpMin), 1, 0, 0, 0, 0, 0, 0, 0xf8, 0x7f}, "want a finite number"},
		{"varint overflow", []AggSpec{{Op: OpCount}}, []byte{1, 1, byte(OpCount), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, "overflows"},
		{"untrimmed sum", []AggSpec{{Op: OpSum}}, []byte{1, 1, byte(OpSum), 2 << 1, 33, 0, 0, 0, 0, 1, 0, 0, 0}, "not trimmed"},
		{"sum out of range", []AggSpec{{Op: OpSum}}, []byte{1, 1, byte(OpSum), 2 << 1, 71, 1, 0, 0, 0, 1, 0, 0, 0}, "out of range"},
		{"negative zero sum", []AggSpec{{Op: OpSum}}, []byte{1, 1, byte(OpSum), 1}, "negative zero"},
		{"empty sketch", []AggSpec{{Op: OpQuantile, Quantile: 0.5}}, append([]byte{1, 1, byte(OpQuantile), 1, 0x01}, make([]byte, 16)...), "sketch"},
		{"hll precision", []AggSpec{{Op: OpDistinct}}, []byte{1, 1, byte(OpDistinct), 8, 2, 16, 0, 1, 0, 0, 0, 0}, "precision"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := DecodeRow(tt.specs, tt.in)
			if !errors.Is(err, ErrCorruptRow) {
				t.Fatalf("DecodeRow = %v, %v; want an error wrapping ErrCorruptRow", r, err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not say %q", err, tt.want)
			}
		})
	}

	t.Run("sketch", func(t *testing.T) {
		bins := func(mode enc.SubFlag, f func(b *[]byte)) []byte {
			var b []byte
			enc.EncodeFlag(&b, enc.NewFlag(enc.FlagTypePositiveStore, mode))
			f(&b)
			return b
		}
		sparse := func(n uint64, indexDeltasAndCounts ...float64) []byte {
			return bins(enc.BinEncodingIndexDeltasAndCounts, func(b *[]byte) {
				enc.EncodeUvarint64(b, n)
				for i := 0; i+1 < len(indexDeltasAndCounts); i += 2 {
					enc.EncodeVarint64(b, int64(indexDeltasAndCounts[i]))
					enc.EncodeVarfloat64(b, indexDeltasAndCounts[i+1])
				}
			})
		}
		valid := sparse(2, 5, 1, 3, 2)
		row := func(sketch []byte, lo, hi float64) []byte {
			b := []byte{1, 1, byte(OpQuantile)}
			b = binary.AppendUvarint(b, uint64(len(sketch)))
			b = append(b, sketch...)
			b = binary.LittleEndian.AppendUint64(b, math.Float64bits(lo))
			return binary.LittleEndian.AppendUint64(b, math.Float64bits(hi))
		}
		specs := []AggSpec{{Op: OpQuantile, Quantile: 0.5}}
		if _, err := DecodeRow(specs, row(valid, 1, 2)); err != nil {
			t.Fatalf("hand-made valid sketch: %v", err)
		}
		for _, tt := range []struct {
			name   string
			sketch []byte
			lo, hi float64
			want   string
		}{
			{"min above max", valid, 2, 1, "min 2 is above max 1"},
			{"fractional count", sparse(1, 5, 1.5), 1, 2, "invalid count 1.5"},
			{"huge count", sparse(1, 5, 1<<60), 1, 2, "invalid count"},
			{"index out of range", sparse(1, 1<<40, 1), 1, 2, "out of range"},
			{"descending bins", sparse(2, 5, 1, -1, 1), 1, 2, "must be ascending"},
			{"too wide", sparse(2, 5, 1, MaxQuantileBins, 1), 1, 2, "bins span 2049 indexes"},
			{"too many bins", sparse(MaxQuantileBins + 1), 1, 2, "bin count 2049 out of range"},
			{"store twice", append(slices.Clone(valid), valid...), 1, 2, "repeated or out of order"},
			{"truncated bins", valid[:len(valid)-1], 1, 2, "truncated"},
			{"unknown flag", []byte{0xfc}, 1, 2, "unexpected flag 0xfc"},
			{"contiguous step", bins(enc.BinEncodingContiguousCounts, func(b *[]byte) {
				enc.EncodeUvarint64(b, 1)
				enc.EncodeVarint64(b, 5)
				enc.EncodeVarint64(b, 2)
				enc.EncodeVarfloat64(b, 1)
			}), 1, 2, "want index step 1"},
		} {
			t.Run(tt.name, func(t *testing.T) {
				_, err := DecodeRow(specs, row(tt.sketch, tt.lo, tt.hi))
				if !errors.Is(err, ErrCorruptRow) || !strings.Contains(err.Error(), tt.want) {
					t.Errorf("err = %v, want ErrCorruptRow saying %q", err, tt.want)
				}
			})
		}
	})

	t.Run("every truncation", func(t *testing.T) {
		for n := range len(valid) {
			_, err := DecodeRow(allSpecs, valid[:n])
			if !errors.Is(err, ErrCorruptRow) || !strings.Contains(err.Error(), "truncated") {
				t.Fatalf("prefix of %d/%d bytes: err = %v, want a truncation error", n, len(valid), err)
			}
		}
	})
	t.Run("every byte garbled", func(t *testing.T) {
		b := slices.Clone(valid)
		for i := range b {
			for _, x := range []byte{0x01, 0x80, 0xff} {
				b[i] ^= x
				checkDecodeOutcome(t, allSpecs, b)
				b[i] ^= x
			}
		}
	})
}

// checkDecodeOutcome decodes b: it must either fail with ErrCorruptRow or
// give a row that works and round-trips.
func checkDecodeOutcome(t *testing.T, specs []AggSpec, b []byte) {
	t.Helper()
	r, err := DecodeRow(specs, b)
	if err != nil {
		if !errors.Is(err, ErrCorruptRow) {
			t.Fatalf("DecodeRow(%x) error %v does not wrap ErrCorruptRow", b, err)
		}
		return
	}
	for i := range r.accs {
		r.Value(i)
	}
	enc := r.AppendBinary(nil)
	r2, err := DecodeRow(specs, enc)
	if err != nil {
		t.Fatalf("DecodeRow(%x) accepted, but its re-encoding %x fails: %v", b, enc, err)
	}
	if !bytes.Equal(r2.AppendBinary(nil), enc) {
		t.Fatalf("DecodeRow(%x): re-encoding is not stable", b)
	}
	r2.Merge(r)
	feed(r2, 1, -1, 1e300)
	r2.AppendBinary(nil)
}

func FuzzDecodeRow(f *testing.F) {
	rng := rand.New(rand.NewPCG(13, 13))
	for _, n := range []int{0, 1, 5, 100, 3000} {
		f.Add(randomRow(rng, n).AppendBinary(nil))
	}
	f.Add([]byte{})
	f.Add([]byte{1, 7})
	f.Fuzz(func(t *testing.T, b []byte) {
		checkDecodeOutcome(t, allSpecs, b)
	})
}

// A row with count, sum and p99 allocates nothing per Add once its sketch
// covers the range of the values.
func TestAddDoesNotAllocate(t *testing.T) {
	r := NewRow([]AggSpec{{Op: OpCount}, {Op: OpSum}, {Op: OpQuantile, Quantile: 0.99}})
	vals := latencies(4096)
	feed(r, vals...)
	i := 0
	allocs := testing.AllocsPerRun(10_000, func() {
		v := vals[i%len(vals)] * 1.0001
		r.Add(0, v)
		r.Add(1, v)
		r.Add(2, v)
		i++
	})
	if allocs != 0 {
		t.Errorf("Add allocates %v times per record, want 0", allocs)
	}

	// Nor does a dense distinct count fed long strings.
	d := NewRow([]AggSpec{{Op: OpDistinct}})
	for i := range 20_000 {
		d.AddString(0, fmt.Sprintf("%036d", i))
	}
	s := fmt.Sprintf("%036d", -1)
	if allocs := testing.AllocsPerRun(1000, func() { d.AddString(0, s) }); allocs != 0 {
		t.Errorf("AddString to a dense distinct allocates %v times, want 0", allocs)
	}
}

// latencies returns n latency-like values in ms (lognormal around 20 ms).
func latencies(n int) []float64 {
	rng := rand.New(rand.NewPCG(42, 42))
	v := make([]float64, n)
	for i := range v {
		v[i] = math.Exp(3 + rng.NormFloat64())
	}
	return v
}

var benchSpecs = []AggSpec{{Op: OpCount}, {Op: OpSum}, {Op: OpQuantile, Quantile: 0.99}}

func BenchmarkRowAdd(b *testing.B) {
	vals := latencies(1 << 16)
	r := NewRow(benchSpecs)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		v := vals[i&(len(vals)-1)]
		r.Add(0, v)
		r.Add(1, v)
		r.Add(2, v)
	}
}

func BenchmarkRowAddDistinct(b *testing.B) {
	keys := make([]string, 1<<16)
	for i := range keys {
		keys[i] = fmt.Sprintf("%08x-0000-4000-8000-%012x", i, i) // UUID-like
	}
	r := NewRow([]AggSpec{{Op: OpDistinct}})
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		r.AddString(0, keys[i&(len(keys)-1)])
	}
}

// benchRow is a typical row: count, sum and p99 of 10k latencies.
func benchRow() *Row {
	r := NewRow(benchSpecs)
	feed(r, latencies(10_000)...)
	return r
}

func BenchmarkRowEncode(b *testing.B) {
	r := benchRow()
	buf := r.AppendBinary(nil)
	b.ReportAllocs()
	for b.Loop() {
		buf = r.AppendBinary(buf[:0])
	}
	b.ReportMetric(float64(len(buf)), "bytes/row")
}

func BenchmarkRowDecode(b *testing.B) {
	buf := benchRow().AppendBinary(nil)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeRow(benchSpecs, buf); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(buf)), "bytes/row")
}

func BenchmarkRowClone(b *testing.B) {
	r := benchRow()
	b.ReportAllocs()
	for b.Loop() {
		r.Clone()
	}
}

// TestMergeNestedWindows: what a chain of rollups does (10 s windows
// merged into minutes, minutes into 5 minutes, each row encoded and
// decoded between levels as results and stores do) gives the same bytes
// as one row fed every value, for every aggregate but top_k, whose merged
// counts stay within its stated bound of the exact counts.
func TestMergeNestedWindows(t *testing.T) {
	specs := append(slices.Clone(allSpecs), AggSpec{Op: OpTopK, K: 5})
	topk := len(specs) - 1
	for seed := range uint64(4) {
		rng := rand.New(rand.NewPCG(seed, 20))
		// 300 ten-second windows (50 minutes); 0 to 200 values each,
		// distinct counts dense above a few thousand.
		one := NewRow(specs)
		exact := map[string]uint64{}
		var top []*Row
		var minute, five *Row
		for w := range 300 {
			leaf := NewRow(specs)
			for range rng.IntN(201) {
				v := randomValue(rng)
				s := strconv.Itoa(int(math.Abs(rng.NormFloat64()) * 300))
				for i := range topk {
					leaf.Add(i, v)
					one.Add(i, v)
				}
				leaf.AddString(topk, s)
				one.AddString(topk, s)
				exact[s]++
			}
			if minute == nil {
				minute = NewRow(specs)
			}
			minute.Merge(mustDecode(t, specs, leaf.AppendBinary(nil)))
			if w%6 == 5 { // a minute closes
				if five == nil {
					five = NewRow(specs)
				}
				five.Merge(mustDecode(t, specs, minute.AppendBinary(nil)))
				minute = nil
				if w%30 == 29 { // five minutes close
					top = append(top, mustDecode(t, specs, five.AppendBinary(nil)))
					five = nil
				}
			}
		}
		got := top[0]
		for _, r := range top[1:] {
			got.Merge(r)
		}
		gv, wv := values(t, got), values(t, one)
		for i := range topk {
			if g, w := gv[i], wv[i]; g != w {
				t.Errorf("seed %d: %v of nested merges = %s, want %s as for one row", seed, specs[i].Op, g, w)
			}
		}
		// Every aggregate but top_k encodes as one row fed everything.
		strip := func(r *Row) []byte {
			c := r.Clone()
			c.accs[topk].tk = nil
			return c.AppendBinary(nil)
		}
		if !bytes.Equal(strip(got), strip(one)) {
			t.Errorf("seed %d: nested merges encode differently from one row fed everything", seed)
		}
		bound := got.TopKBound(topk)
		if n := got.accs[topk].tk.n; n != one.accs[topk].tk.n {
			t.Errorf("seed %d: top_k total %d, want %d", seed, n, one.accs[topk].tk.n)
		}
		entries := got.TopK(topk)
		for _, e := range entries {
			if f := exact[e.Value]; e.Count > f || f > e.Count+bound {
				t.Errorf("seed %d: top_k %s count %d, true %d, bound %d", seed, e.Value, e.Count, f, bound)
			}
		}
		last := entries[len(entries)-1].Count
		for v, f := range exact {
			if f > last+bound && !slices.ContainsFunc(entries, func(e TopKEntry) bool { return e.Value == v }) {
				t.Errorf("seed %d: top_k misses %s (true count %d > %d+%d)", seed, v, f, last, bound)
			}
		}
		if len(exact) <= TopKCapacity(5) || bound == 0 {
			t.Errorf("seed %d: %d distinct values, bound %d: the summary never decremented", seed, len(exact), bound)
		}
	}
}
