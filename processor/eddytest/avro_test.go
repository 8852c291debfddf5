package eddytest_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/eddy-streams/eddy/internal/kafkatest"
	"github.com/eddy-streams/eddy/processor/eddytest"
	"github.com/eddy-streams/eddy/topology"
)

// TestAvroCase: a case of an Avro pipeline (Avro in and out) encodes its
// records with the case's schema file and decodes the Avro results; the
// counts and sums are a plain sum of the case's values.
func TestAvroCase(t *testing.T) {
	t.Parallel()
	spec, c := avroCase(t)
	out, err := c.Run(spec, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range c.Check(spec, out) {
		t.Error(d)
	}
}

// TestKafkaAvroCase: the Avro case on the real broker (the registry in
// memory: the App takes any schema.Registry) passes with the same outcome.
func TestKafkaAvroCase(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Real(t)
	spec, c := avroCase(t)
	local, err := c.Run(spec, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := c.RunKafka(ctx, spec, eddytest.KafkaConfig{Brokers: brokers, Registry: eddytest.NewMemRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range c.Check(spec, out) {
		t.Errorf("on the broker: %s", d)
	}
	sameOutcome(t, local, out)
}

func avroCase(t *testing.T) (*topology.Spec, *eddytest.Case) {
	t.Helper()
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("payment.avsc", `{"type": "record", "name": "Payment", "fields": [
  {"name": "merchant", "type": "string"},
  {"name": "amount", "type": "long"},
  {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}}]}`)
	spec, err := topology.Parse([]byte(`
app: payments
source: {topics: [payments], format: avro}
time: {field: ts}
key: [merchant]
window: {type: tumbling, size: 1m}
aggregates:
  - {name: payments, op: count}
  - {name: amount, op: sum, field: amount}
output: {topic: payments-1m, format: avro}
`))
	if err != nil {
		t.Fatal(err)
	}
	path := write("case.yaml", `
schema: payment.avsc
steps:
  - records:
      - {value: {merchant: m1, amount: 250}, event_time: +10s}
      - {value: {merchant: m1, amount: 100}, event_time: +20s}
      - {value: {merchant: m2, amount: 7}, event_time: +30s}
      - {value: 'not avro'}
      - {value: {merchant: m1, amount: 1}, event_time: +2m}
expect:
  results:
    - {key: {merchant: m1}, window_start: +0s, values: {payments: 2, amount: 350}}
    - {key: {merchant: m2}, window_start: +0s, values: {payments: 1, amount: 7}}
  dead_letters:
    - {class: wire_bad_magic, offset: 3}
`)
	c, err := eddytest.LoadCase(path)
	if err != nil {
		t.Fatal(err)
	}
	return spec, c
}

// TestAvroRollupsCase: a pipeline whose rollups write different formats
// (one Avro, one JSON): each rollup's results are decoded in its own
// format, in process and on the real broker, and match the plain sums of
// the case's values.
func TestAvroRollupsCase(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Real(t)
	_, c := avroCase(t)
	spec, err := topology.Parse([]byte(`
app: payments-rollups
source: {topics: [payments], format: avro}
time: {field: ts}
rollups:
  - name: per_minute
    key: [merchant]
    window: {type: tumbling, size: 1m}
    aggregates:
      - {name: payments, op: count}
      - {name: amount, op: sum, field: amount}
    output: {topic: payments-rollups-1m, format: avro}
  - name: per_5m
    key: [merchant]
    window: {type: tumbling, size: 5m}
    aggregates:
      - {name: amount, op: sum, field: amount}
    output: {topic: payments-rollups-5m}
`))
	if err != nil {
		t.Fatal(err)
	}
	// The case's records (avroCase) close the first minute (+2m), not the
	// first 5 minutes; one more record at +6m closes those, and opens
	// windows of its own.
	c.Steps = append(c.Steps, eddytest.Step{Records: []eddytest.InRecord{{Value: map[string]any{"merchant": "m3", "amount": 5}, EventTime: "+6m"}}})
	c.Expect.Results = append(c.Expect.Results,
		eddytest.ExpResult{Key: map[string]string{"merchant": "m1"}, WindowStart: "+2m", Values: map[string]eddytest.Num{"payments": eddytest.Exact(1), "amount": eddytest.Exact(1)}},
		eddytest.ExpResult{Rollup: "per_5m", Key: map[string]string{"merchant": "m1"}, WindowStart: "+0s", Values: map[string]eddytest.Num{"amount": eddytest.Exact(250 + 100 + 1)}},
		eddytest.ExpResult{Rollup: "per_5m", Key: map[string]string{"merchant": "m2"}, WindowStart: "+0s", Values: map[string]eddytest.Num{"amount": eddytest.Exact(7)}})
	local, err := c.Run(spec, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range c.Check(spec, local) {
		t.Errorf("in process: %s", d)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := c.RunKafka(ctx, spec, eddytest.KafkaConfig{Brokers: brokers, Registry: eddytest.NewMemRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range c.Check(spec, out) {
		t.Errorf("on the broker: %s", d)
	}
	sameOutcome(t, local, out)
	for _, r := range out.Records {
		avro := len(r.Value) > 5 && r.Value[0] == 0
		if r.Topic == "payments-rollups-1m" && !avro || r.Topic == "payments-rollups-5m" && avro {
			t.Errorf("a record of %s in the wrong format: % x", r.Topic, r.Value[:min(8, len(r.Value))])
		}
	}
}
