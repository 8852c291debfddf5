package eddytest_test

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/eddy-streams/eddy/internal/kafkatest"
	"github.com/eddy-streams/eddy/processor/eddytest"
)

// TestKafkaCaseRecordsOutliveRetention: a case's records carry the case's
// clock (2024-01-01 by default), older than any topic's time retention, and
// the test broker looks for expired segments every second
// (scripts/kafka.sh: log.retention.check.interval.ms=1000, as a busy
// cluster may at any moment). The source topics the kit creates keep them:
// on a topic with the broker's default retention (7 days) they were
// deleted a second or so after they were written, and a pipeline that had
// not read them yet never saw them (the kit then waited for them until
// its timeout: a failure of TestKafkaTwoPartitions in CI).
func TestKafkaCaseRecordsOutliveRetention(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Real(t)
	c, err := eddytest.ParseCase([]byte(twoPartitionCase))
	if err != nil {
		t.Fatal(err)
	}
	// Fresh names chosen here, kept after the run, so that the test can
	// look at the source topic afterwards.
	run := eddytest.NewKafkaRun(loadSpec(t, examplePipeline), false)
	spec := run.Spec
	adm := kadm.NewClient(kafkatest.Client(t, brokers))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		topics := append([]string(nil), spec.Source.Topics...)
		for _, ti := range spec.Topics(2) {
			topics = append(topics, ti.Name)
		}
		_, _ = adm.DeleteTopics(ctx, topics...)
		_, _ = adm.DeleteGroup(ctx, spec.GroupID())
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := c.RunKafka(ctx, spec, eddytest.KafkaConfig{Brokers: brokers, KeepNames: true, Keep: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range c.Check(spec, out) {
		t.Errorf("on the broker: %s", d)
	}
	src := spec.Source.Topics[0]
	// Three retention checks later, every record is still there.
	time.Sleep(3 * time.Second)
	starts, err := adm.ListStartOffsets(ctx, src)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		t.Fatal(err)
	}
	ends, err := adm.ListEndOffsets(ctx, src)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	starts.Each(func(o kadm.ListedOffset) {
		end, _ := ends.Lookup(o.Topic, o.Partition)
		total += end.Offset
		if o.Offset != 0 {
			t.Errorf("%s/%d starts at offset %d of %d: the broker deleted the case's records (time retention)", o.Topic, o.Partition, o.Offset, end.Offset)
		}
	})
	if total != 3 {
		t.Errorf("the source topic holds %d records, want the case's 3", total)
	}
	rc, err := adm.DescribeTopicConfigs(ctx, src)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rc {
		for _, cv := range r.Configs {
			if cv.Key == "retention.ms" && cv.MaybeValue() != "-1" {
				t.Errorf("%s: retention.ms=%s, want -1 (the case's records are older than any retention)", r.Name, cv.MaybeValue())
			}
		}
	}
}
