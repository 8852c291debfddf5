package main

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math"
	"sort"
	"time"
)

// The agreement check: besides emitting the same windows (the histograms),
// eddy and Kafka Streams must compute the same aggregates. For a sample of
// the keys, every result both systems emitted for the same (key, window) is
// compared with the other system's (counts exactly, p99s within
// p99Tolerance) and with the exact result computed from the generated data
// (counts exactly, p99s within exactTolerance).

// sampleEvery keeps the results of about one key in sampleEvery.
const sampleEvery = 10

// p99Tolerance is how far apart the two p99s may be, relative to the larger:
// each side's DDSketch estimate is within 1% of the true value (eddy's
// state.RelativeAccuracy, EddyPeer's CountP99.RELATIVE_ACCURACY), so two
// estimates of the same value are within about 2% of each other.
const p99Tolerance = 0.02

// exactTolerance is how far a p99 may be from the exact value, relative to
// it: the sketches' relative accuracy, plus float rounding.
const exactTolerance = 0.01 + 1e-9

// inSample reports whether the results of a grouping key are sampled: an
// FNV-1a hash of the key, the same on both sides since both key their
// results by the grouping key (["k-0012345"]).
func inSample(key []byte) bool {
	h := fnv.New32a()
	h.Write(key)
	return h.Sum32()%sampleEvery == 0
}

// sampleKey identifies one result: the grouping key and the window start in
// Unix ms (eddy writes "…T14:20:10.000Z", Kafka Streams "…T14:20:10Z").
type sampleKey struct {
	key   string
	start int64
}

// sampleVal is what one result says.
type sampleVal struct {
	count  float64
	p99    float64
	hasP99 bool // a non-null p99_latency_ms
}

// resultSample is what one run emitted for the sampled keys.
type resultSample map[sampleKey]sampleVal

// add parses one JSON result; the key is the output record's key.
func (s resultSample) add(key, value []byte) error {
	var v struct {
		WindowStart string   `json:"window_start"`
		Requests    float64  `json:"requests"`
		P99         *float64 `json:"p99_latency_ms"`
	}
	if err := json.Unmarshal(value, &v); err != nil {
		return err
	}
	t, err := time.Parse(time.RFC3339, v.WindowStart)
	if err != nil {
		return err
	}
	sv := sampleVal{count: v.Requests}
	if v.P99 != nil {
		sv.p99, sv.hasP99 = *v.P99, true
	}
	s[sampleKey{string(key), t.UnixMilli()}] = sv
	return nil
}

// exactSample computes the results the count and p99 pipelines should
// emit for the sampled keys: per key and tumbling window of windowMs, the
// record count and (mode p99) the value of rank ⌊0.99·(n−1)⌋ among the
// latencies, the p99 that eddy's and DDSketch's rank definition estimate.
// It returns nil for the other modes (filter drops records by region,
// which sampledEvent does not keep).
func exactSample(events []sampledEvent, windowMs int64, mode string) resultSample {
	if len(events) == 0 || (mode != "count" && mode != "p99") {
		return nil
	}
	vals := map[sampleKey][]float64{}
	for _, ev := range events {
		start := ev.ts - ((ev.ts%windowMs)+windowMs)%windowMs // floor, also before 1970
		k := sampleKey{ev.key, start}
		vals[k] = append(vals[k], ev.latency)
	}
	out := make(resultSample, len(vals))
	for k, vs := range vals {
		v := sampleVal{count: float64(len(vs))}
		if mode == "p99" {
			sort.Float64s(vs)
			v.p99, v.hasP99 = vs[int(0.99*float64(len(vs)-1))], true
		}
		out[k] = v
	}
	return out
}

// agreement is the comparison of one repetition's samples.
type agreement struct {
	Workload string `json:"workload"`
	// Peer is the system compared with eddy: kstreams or goka. The
	// fields named KS are the peer's.
	Peer     string `json:"peer"`
	Rep      int    `json:"rep"`
	Compared int    `json:"compared"` // sampled (key, window) results both emitted
	OnlyEddy int    `json:"only_eddy"`
	OnlyKS   int    `json:"only_kstreams"`
	CountBad int    `json:"count_mismatches"`
	// P99Compared counts the compared results with a p99 on both sides;
	// P99Multi those of them over two or more records (with one record
	// both sides clamp the estimate to that exact value).
	P99Compared int     `json:"p99_compared,omitempty"`
	P99Multi    int     `json:"p99_compared_multi,omitempty"`
	P99Equal    int     `json:"p99_equal,omitempty"`
	P99Bad      int     `json:"p99_beyond_tolerance,omitempty"`
	P99MaxRel   float64 `json:"p99_max_rel_diff,omitempty"`
	// ExactCompared counts the compared results also compared with the
	// exact ones (exactSample); EddyOff and KSOff those where the system's
	// count differs or its p99 is beyond exactTolerance, EddyMaxErr and
	// KSMaxErr the largest relative error of its p99s.
	ExactCompared int     `json:"exact_compared,omitempty"`
	EddyOff       int     `json:"eddy_off_exact,omitempty"`
	KSOff         int     `json:"kstreams_off_exact,omitempty"`
	EddyMaxErr    float64 `json:"eddy_p99_max_rel_error,omitempty"`
	KSMaxErr      float64 `json:"kstreams_p99_max_rel_error,omitempty"`
	// Mismatches lists the first few disagreements.
	Mismatches []string `json:"mismatches,omitempty"`
}

func (a agreement) ok() bool {
	return a.CountBad == 0 && a.P99Bad == 0 && a.EddyOff == 0 && a.KSOff == 0
}

func (a agreement) brief() string {
	s := fmt.Sprintf("%d sampled results compared (only eddy %d, only the peer %d), %d count mismatches",
		a.Compared, a.OnlyEddy, a.OnlyKS, a.CountBad)
	if a.P99Compared > 0 {
		s += fmt.Sprintf("; p99: %d compared (%d over ≥2 records), %d equal, %d beyond %.0f%%, max relative difference %.2g%%",
			a.P99Compared, a.P99Multi, a.P99Equal, a.P99Bad, 100*p99Tolerance, 100*a.P99MaxRel)
	}
	if a.ExactCompared > 0 {
		s += fmt.Sprintf("; against the exact results: %d compared, off: eddy %d, the peer %d", a.ExactCompared, a.EddyOff, a.KSOff)
		if a.P99Compared > 0 {
			s += fmt.Sprintf(" (largest p99 error eddy %.3f%%, the peer %.3f%%)", 100*a.EddyMaxErr, 100*a.KSMaxErr)
		}
	}
	return s
}

// maxMismatches bounds agreement.Mismatches.
const maxMismatches = 20

// relDiff is |a-b| relative to the larger magnitude, 0 when both are 0.
func relDiff(a, b float64) float64 {
	m := max(math.Abs(a), math.Abs(b))
	if m == 0 {
		return 0
	}
	return math.Abs(a-b) / m
}

// relErr is |v-x| relative to |x|, 0 when both are 0 and +Inf when only x is.
func relErr(v, x float64) float64 {
	if v == x {
		return 0
	}
	return math.Abs(v-x) / math.Abs(x)
}

// compareSamples compares eddy's sample with Kafka Streams', and both with
// the exact results if exact is not nil.
func compareSamples(wl string, rep int, eddy, ks, exact resultSample) agreement {
	a := agreement{Workload: wl, Rep: rep}
	keys := make([]sampleKey, 0, len(eddy))
	for k := range eddy {
		if _, ok := ks[k]; ok {
			keys = append(keys, k)
		} else {
			a.OnlyEddy++
		}
	}
	for k := range ks {
		if _, ok := eddy[k]; !ok {
			a.OnlyKS++
		}
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].start != keys[j].start {
			return keys[i].start < keys[j].start
		}
		return keys[i].key < keys[j].key
	})
	bad := func(k sampleKey, e, s sampleVal, what string) {
		if len(a.Mismatches) < maxMismatches {
			m := fmt.Sprintf("%s %s: %s: eddy count %v p99 %v, Kafka Streams count %v p99 %v",
				k.key, time.UnixMilli(k.start).UTC().Format(time.RFC3339), what, e.count, e.p99, s.count, s.p99)
			if x, ok := exact[k]; ok {
				m += fmt.Sprintf(", exact count %v p99 %v", x.count, x.p99)
			}
			a.Mismatches = append(a.Mismatches, m)
		}
	}
	// off reports whether a system's result is off the exact one x, and
	// keeps its largest p99 error in maxErr.
	off := func(v, x sampleVal, maxErr *float64) bool {
		if v.count != x.count || v.hasP99 != x.hasP99 {
			return true
		}
		if !x.hasP99 {
			return false
		}
		d := relErr(v.p99, x.p99)
		*maxErr = max(*maxErr, d)
		return d > exactTolerance
	}
	for _, k := range keys {
		e, s := eddy[k], ks[k]
		a.Compared++
		if x, ok := exact[k]; ok {
			a.ExactCompared++
			if off(e, x, &a.EddyMaxErr) {
				a.EddyOff++
				bad(k, e, s, "eddy is off the exact result")
			}
			if off(s, x, &a.KSMaxErr) {
				a.KSOff++
				bad(k, e, s, "Kafka Streams is off the exact result")
			}
		}
		if e.count != s.count {
			a.CountBad++
			bad(k, e, s, "counts differ")
		}
		if e.hasP99 != s.hasP99 {
			a.P99Bad++
			bad(k, e, s, "p99 on one side only")
			continue
		}
		if !e.hasP99 {
			continue
		}
		a.P99Compared++
		if e.count >= 2 && s.count >= 2 {
			a.P99Multi++
		}
		if e.p99 == s.p99 {
			a.P99Equal++
		}
		d := relDiff(e.p99, s.p99)
		a.P99MaxRel = max(a.P99MaxRel, d)
		if d > p99Tolerance {
			a.P99Bad++
			bad(k, e, s, fmt.Sprintf("p99s differ by %.2f%%", 100*d))
		}
	}
	return a
}
