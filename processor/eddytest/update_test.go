package eddytest_test

import (
	"context"
	"testing"
	"time"

	"github.com/eddy-streams/eddy/internal/kafkatest"
	"github.com/eddy-streams/eddy/processor/eddytest"
	"github.com/eddy-streams/eddy/topology"
)

// emitUpdateCase: a pipeline with emit: update writes a result per commit
// that changed a window; commits come when a step moves the wall clock by
// commit_interval, and at the end.
func emitUpdateCase(t *testing.T) (*topology.Spec, *eddytest.Case) {
	t.Helper()
	spec, err := topology.Parse([]byte(`
app: updates
source: {topics: [clicks]}
time: {field: ts}
key: [page]
window: {type: tumbling, size: 1m}
aggregates: [{name: clicks, op: count}]
emit: update
commit_interval: 1s
output: {topic: clicks-1m}
`))
	if err != nil {
		t.Fatal(err)
	}
	c, err := eddytest.ParseCase([]byte(`
steps:
  - records:
      - {value: {page: home}, event_time: +1s, repeat: 2}
  - advance: 1s
  - records:
      - {value: {page: home}, event_time: +2s, repeat: 3}
      - {value: {page: about}, event_time: +2s}
  - advance: 500ms
  - records:
      - {value: {page: about}, event_time: +3s}
expect:
  results:
    # The first commit: after the first second.
    - {key: {page: home}, window_start: +0s, values: {clicks: 2}}
    # The last, when the pipeline stops (the 500ms step is too short).
    - {key: {page: about}, window_start: +0s, values: {clicks: 2}}
    - {key: {page: home}, window_start: +0s, values: {clicks: 5}}
`))
	if err != nil {
		t.Fatal(err)
	}
	return spec, c
}

// TestEmitUpdate: the results of an emit: update pipeline come at the
// commits, in process.
func TestEmitUpdate(t *testing.T) {
	t.Parallel()
	spec, c := emitUpdateCase(t)
	out, err := c.Run(spec, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range c.Check(spec, out) {
		t.Error(d)
	}
}

// TestKafkaEmitUpdate: the same on the real broker, with the same outcome.
func TestKafkaEmitUpdate(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Real(t)
	spec, c := emitUpdateCase(t)
	local, err := c.Run(spec, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := c.RunKafka(ctx, spec, eddytest.KafkaConfig{Brokers: brokers})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range c.Check(spec, out) {
		t.Errorf("on the broker: %s", d)
	}
	sameOutcome(t, local, out)
}
