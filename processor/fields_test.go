package processor

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/eddy-streams/eddy/topology"
)

// TestFieldMissingReport: a misspelled aggregate field is counted per
// record and reported once a minute with the records' closest field name;
// a field missing from only some records, or present as null, is not
// reported.
func TestFieldMissingReport(t *testing.T) {
	spec := &topology.Spec{Aggregates: []topology.Aggregate{
		{Name: "count", Op: topology.AggCount},
		{Name: "p99_latency_ms", Op: topology.AggQuantile, Quantile: 0.99, Field: "latncy_ms"},
		{Name: "max_latency_ms", Op: topology.AggMax, Field: "latncy_ms"},
		{Name: "bytes", Op: topology.AggSum, Field: "bytes"},     // sometimes absent
		{Name: "users", Op: topology.AggDistinct, Field: "user"}, // absent everywhere, no close name
		{Name: "cost", Op: topology.AggSum, Field: "cost"},       // null: present
	}}
	m := newMetrics(nil)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	w := newFieldWatch(spec, m, t0)
	for i := range 300 {
		rec := map[string]any{"latency_ms": 12.0, "service": "checkout", "cost": nil}
		if i%2 == 0 {
			rec["bytes"] = 100.0
		}
		w.observe(rec)
	}
	if got := w.report(t0.Add(59 * time.Second)); got != nil {
		t.Fatalf("report before a minute: %q", got)
	}
	got := w.report(t0.Add(time.Minute))
	want := []string{
		"latncy_ms is missing in every record of the last minute; records have latency_ms (300 records; aggregates p99_latency_ms, max_latency_ms are null)",
		"user is missing in every record of the last minute (300 records; aggregates users are null); records have bytes, cost, latency_ms, service",
	}
	if len(got) != len(want) {
		t.Fatalf("report = %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("report line %d:\n got %q\nwant %q", i, got[i], want[i])
		}
	}
	for _, c := range []struct {
		agg, field string
		n          float64
	}{
		{"p99_latency_ms", "latncy_ms", 300}, {"max_latency_ms", "latncy_ms", 300},
		{"bytes", "bytes", 150}, {"users", "user", 300}, {"cost", "cost", 0},
	} {
		if n := counterValue(t, m.fieldMissing.WithLabelValues(c.agg, c.field)); n != c.n {
			t.Errorf("eddy_field_missing_total{aggregate=%q,field=%q} = %v, want %v", c.agg, c.field, n, c.n)
		}
	}
	// The next period starts empty: one record with the field clears it.
	w.observe(map[string]any{"latncy_ms": 1.0, "user": "u", "bytes": 1.0, "cost": 2.0})
	if got := w.report(t0.Add(2 * time.Minute)); len(got) != 0 {
		t.Errorf("report after a period with the fields present: %q", got)
	}
	// No records at all: nothing to say.
	if got := w.report(t0.Add(3 * time.Minute)); len(got) != 0 {
		t.Errorf("report of an empty period: %q", got)
	}
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var d dto.Metric
	if err := c.Write(&d); err != nil {
		t.Fatal(err)
	}
	return d.GetCounter().GetValue()
}
