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
// compared: counts exactly, p99s within p99Tolerance.

// sampleEvery keeps the results of about one key in sampleEvery.
const sampleEvery = 10

// p99Tolerance is how far apart the two p99s may be, relative to the larger:
// each side's DDSketch estimate is within 1% of the true value (eddy's
// state.RelativeAccuracy, EddyPeer's CountP99.RELATIVE_ACCURACY), so two
// estimates of the same value are within about 2% of each other.
const p99Tolerance = 0.02

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

// agreement is the comparison of one repetition's samples.
type agreement struct {
	Workload string `json:"workload"`
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
	// Mismatches lists the first few disagreements.
	Mismatches []string `json:"mismatches,omitempty"`
}

func (a agreement) ok() bool { return a.CountBad == 0 && a.P99Bad == 0 }

func (a agreement) brief() string {
	s := fmt.Sprintf("%d sampled results compared (only eddy %d, only Kafka Streams %d), %d count mismatches",
		a.Compared, a.OnlyEddy, a.OnlyKS, a.CountBad)
	if a.P99Compared > 0 {
		s += fmt.Sprintf("; p99: %d compared (%d over ≥2 records), %d equal, %d beyond %.0f%%, max relative difference %.2g%%",
			a.P99Compared, a.P99Multi, a.P99Equal, a.P99Bad, 100*p99Tolerance, 100*a.P99MaxRel)
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

// compareSamples compares eddy's sample with Kafka Streams'.
func compareSamples(wl string, rep int, eddy, ks resultSample) agreement {
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
			a.Mismatches = append(a.Mismatches, fmt.Sprintf("%s %s: %s: eddy count %v p99 %v, Kafka Streams count %v p99 %v",
				k.key, time.UnixMilli(k.start).UTC().Format(time.RFC3339), what, e.count, e.p99, s.count, s.p99))
		}
	}
	for _, k := range keys {
		e, s := eddy[k], ks[k]
		a.Compared++
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
