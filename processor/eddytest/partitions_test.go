package eddytest_test

import (
	"context"
	"testing"
	"time"

	"github.com/eddy-streams/eddy/internal/kafkatest"
	"github.com/eddy-streams/eddy/processor/eddytest"
)

// twoPartitionCase: stream time is the lowest watermark of the source
// partitions, and a partition with nothing to read counts until it has
// been idle for idle_timeout (5s of wall clock): records on partition 0
// alone close no window until the wall clock has moved that long.
const twoPartitionCase = `
partitions: 2
steps:
  - records:
      - {value: {service: checkout, endpoint: /pay, status: 200, latency_ms: 100}, event_time: +1s}
      - {value: {service: checkout, endpoint: /pay, status: 200, latency_ms: 100}, event_time: +20s}
  # Partition 1 is idle from here: it no longer holds stream time (+20s)
  # back, and [+0s, +10s) closes.
  - advance: 6s
  - records:
      - {partition: 1, value: {service: search, endpoint: /q, status: 200, latency_ms: 5}, event_time: +21s}
expect:
  results:
    - {key: {service: checkout, endpoint: /pay}, window_start: +0s, values: {requests: 1}}
`

func TestTwoPartitions(t *testing.T) {
	t.Parallel()
	spec := loadSpec(t, examplePipeline)
	c, err := eddytest.ParseCase([]byte(twoPartitionCase))
	if err != nil {
		t.Fatal(err)
	}
	out, err := c.Run(spec, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range c.Check(spec, out) {
		t.Error(d)
	}
	// Without the wall-clock step, nothing closes.
	c.Steps = c.Steps[:1]
	c.Expect = eddytest.Expect{}
	out, err = c.Run(spec, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range c.Check(spec, out) {
		t.Errorf("without the advance: %s", d)
	}
}

// TestKafkaTwoPartitions: the same on the real broker, with the same
// outcome.
func TestKafkaTwoPartitions(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Real(t)
	spec := loadSpec(t, examplePipeline)
	c, err := eddytest.ParseCase([]byte(twoPartitionCase))
	if err != nil {
		t.Fatal(err)
	}
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
