package processor

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/eddy-streams/eddy/processor/engine"
	"github.com/eddy-streams/eddy/schema"
	"github.com/eddy-streams/eddy/state"
	"github.com/eddy-streams/eddy/topology"
)

// Alerts in Avro: AlertSchema parses, every transition the engine
// publishes encodes with it (the shell's encodeAlert), and decoding gives
// back the same values.
func TestAlertAvroRoundTrip(t *testing.T) {
	spec, err := topology.Parse([]byte(`app: alerting
source: {topics: [requests]}
time: {field: ts}
key: [endpoint]
window: {type: tumbling, size: 10s}
aggregates:
  - {name: requests, op: count}
  - {name: errors, op: count, where: 'status >= 500'}
output: {topic: out}
idle_timeout: 5s
alerts:
  rules:
    - {name: errors-high, kind: threshold, condition: errors > 5, runbook_url: https://r.example}
    - {name: quiet, kind: absence, for: 20s}
`))
	if err != nil {
		t.Fatal(err)
	}
	p, err := newPipeline(spec)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := schema.ParseSchema(AlertSchema)
	if err != nil {
		t.Fatalf("AlertSchema: %v", err)
	}
	s := &schema.Schema{ID: 9, Subject: "alerting-alerts-value", Text: AlertSchema, Avro: parsed}
	if p.alertEnc, err = schema.NewEncoderFor(s); err != nil {
		t.Fatal(err)
	}
	db, err := state.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	now := time.Date(2025, 6, 2, 12, 0, 0, 0, time.UTC)
	tk := p.newTask(0, db.TaskStore(spec.Store, 0, p.aggSpecs, 0), state.Checkpoint{}, now)
	var (
		fx     engine.Effects
		alerts []Alert
		off    int64
	)
	in := state.SourcePartition{Topic: "requests"}
	// /a fails in its first window, /b keeps the stream going for three
	// more: errors-high fires and resolves for /a, then /a is quiet.
	feed := func(endpoint string, start int64, n, errs int) {
		for i := range n {
			status := 200.0
			if i < errs {
				status = 500
			}
			fields := map[string]any{"endpoint": endpoint, "status": status}
			key, _, err := groupKey(fields, spec.Key)
			if err != nil {
				t.Fatal(err)
			}
			rec := engine.Record{Input: in, Offset: off, Source: in, SourceOffset: off, Key: key,
				Time: start + int64(i)*10_000/int64(n), Fields: fields}
			off++
			if err := tk.Process(rec, now, &fx); err != nil {
				t.Fatal(err)
			}
			for _, tr := range fx.Alerts {
				alerts = append(alerts, tr.Alert)
			}
		}
	}
	start := now.UnixMilli()
	feed("/a", start, 10, 8)
	for i := int64(1); i <= 3; i++ {
		feed("/b", start+i*10_000, 10, 0)
	}
	if err := tk.Punctuate(now, &fx); err != nil {
		t.Fatal(err)
	}
	for _, tr := range fx.Alerts {
		alerts = append(alerts, tr.Alert)
	}
	if len(alerts) < 3 {
		t.Fatalf("transitions %+v, want errors-high firing, resolved and quiet firing", alerts)
	}
	dec := schema.NewDecoder(&fakeRegistry{byID: map[int]*schema.Schema{9: s}})
	for _, a := range alerts {
		b, err := p.encodeAlert(a)
		if err != nil {
			t.Fatalf("encode %+v: %v", a, err)
		}
		m, err := dec.Decode(context.Background(), b)
		if err != nil {
			t.Fatalf("decode: %v", err)
		}
		at, _ := time.Parse(timeLayout, a.At)
		if m["rule"] != a.Rule || m["state"] != a.State || m["summary"] != a.Summary ||
			!m["at"].(time.Time).Equal(at) || fmt.Sprint(m["key"]) != fmt.Sprint(map[string]any{"endpoint": a.Key["endpoint"]}) {
			t.Errorf("decoded %v, want %+v", m, a)
		}
		if (a.Value == nil) != (m["value"] == nil) || (a.WindowStart == nil) != (m["window_start"] == nil) {
			t.Errorf("nullable fields: decoded %v, want %+v", m, a)
		}
	}
}
