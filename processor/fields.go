package processor

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/eddy-streams/eddy/topology"
)

// fieldReportEvery is the period of the missing-field report.
const fieldReportEvery = time.Minute

// maxSeenNames bounds the field names fieldWatch remembers per period (for
// suggestions).
const maxSeenNames = 256

// fieldWatch makes a field named by the pipeline that records lack
// visible, where it would otherwise only show as null aggregates: each
// aggregate's input field is counted per record that lacks it
// (eddy_field_missing_total{aggregate,field}), and once per
// fieldReportEvery, a field missing from every record of the period is
// reported with the closest name the records have ("latncy_ms is missing
// in every record of the last minute; records have latency_ms"). A field
// present with a null value is not missing. Key fields and the time field
// need no watch: records without them are dead-lettered
// (missing_key_field, event_time).
//
// Owned by the processing loop (App.mu). The parallel tasks' goroutines
// (parallel.go) do not touch it: each counts into its own fieldObs, which
// the loop merges after the parallel phase; observe costs one map lookup
// per watched field, and more only for records that lack one.
type fieldWatch struct {
	checks  []fieldCheck
	start   time.Time // of the current period
	records int       // observed in the current period
	names   map[string]struct{}
}

type fieldCheck struct {
	agg, field string
	missing    int // records of the current period without the field
	counter    prometheus.Counter
}

func newFieldWatch(spec *topology.Spec, m *metrics, now time.Time) *fieldWatch {
	w := &fieldWatch{start: now, names: make(map[string]struct{})}
	seen := make(map[[2]string]bool)
	for _, rs := range spec.RollupSpecs() { // every rollup's aggregates (chained ones repeat another's)
		if rs.From != "" {
			continue
		}
		for _, a := range rs.Aggregates {
			if a.Field == "" || seen[[2]string{a.Name, a.Field}] {
				continue
			}
			seen[[2]string{a.Name, a.Field}] = true
			w.checks = append(w.checks, fieldCheck{agg: a.Name, field: a.Field,
				counter: m.fieldMissing.WithLabelValues(a.Name, a.Field)})
		}
	}
	return w
}

// fieldObs is what one goroutine observed since its last merge: the
// records, per watched field (fieldWatch.checks' order) the records that
// lacked it, and field names seen in those. Owned by one goroutine at a
// time; its zero value is empty.
type fieldObs struct {
	records int
	missing []int
	names   map[string]struct{}
}

// observe counts the watched fields that fields lacks.
func (w *fieldWatch) observe(fields map[string]any) {
	var o fieldObs
	w.observeInto(&o, fields)
	w.merge(&o)
}

// observeInto counts into o the watched fields that fields lacks. It
// reads only w.checks (fixed after newFieldWatch) and the counters,
// which are safe for concurrent use: any goroutine may call it with its
// own o.
func (w *fieldWatch) observeInto(o *fieldObs, fields map[string]any) {
	if len(w.checks) == 0 {
		return
	}
	o.records++
	lacks := false
	for i := range w.checks {
		c := &w.checks[i]
		if _, ok := fields[c.field]; !ok {
			if o.missing == nil {
				o.missing = make([]int, len(w.checks))
			}
			o.missing[i]++
			c.counter.Inc()
			lacks = true
		}
	}
	if lacks && len(o.names) < maxSeenNames {
		if o.names == nil {
			o.names = make(map[string]struct{})
		}
		for k := range fields {
			if len(o.names) >= maxSeenNames {
				break
			}
			o.names[k] = struct{}{}
		}
	}
}

// merge adds o to the current period and empties o (keeping its memory).
func (w *fieldWatch) merge(o *fieldObs) {
	if o.records == 0 {
		return
	}
	w.records += o.records
	o.records = 0
	if o.missing != nil {
		for i := range o.missing {
			w.checks[i].missing += o.missing[i]
			o.missing[i] = 0
		}
	}
	for k := range o.names {
		if len(w.names) >= maxSeenNames {
			break
		}
		w.names[k] = struct{}{}
	}
	clear(o.names)
}

// report returns, once fieldReportEvery has passed since the period
// started, a warning for each field missing from every record of the
// period, and starts the next period. Each field is reported once, even
// when several aggregates read it.
func (w *fieldWatch) report(now time.Time) []string {
	if now.Sub(w.start) < fieldReportEvery {
		return nil
	}
	var out []string
	reported := map[string]bool{}
	if w.records > 0 {
		names := make([]string, 0, len(w.names))
		for k := range w.names {
			names = append(names, k)
		}
		slices.Sort(names)
		for _, c := range w.checks {
			if c.missing < w.records || reported[c.field] {
				continue
			}
			reported[c.field] = true
			var aggs []string
			for _, d := range w.checks {
				if d.field == c.field {
					aggs = append(aggs, d.agg)
				}
			}
			msg := fmt.Sprintf("%s is missing in every record of the last minute (%d records; aggregates %s are null)",
				c.field, w.records, strings.Join(aggs, ", "))
			if best, ok := topology.ClosestName(c.field, names); ok {
				msg = fmt.Sprintf("%s is missing in every record of the last minute; records have %s (%d records; aggregates %s are null)",
					c.field, best, w.records, strings.Join(aggs, ", "))
			} else if len(names) > 0 {
				if len(names) > 20 {
					names = append(names[:20:20], "...")
				}
				msg += "; records have " + strings.Join(names, ", ")
			}
			out = append(out, msg)
		}
	}
	w.start, w.records = now, 0
	for i := range w.checks {
		w.checks[i].missing = 0
	}
	clear(w.names)
	return out
}
