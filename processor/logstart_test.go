package processor

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eddy-streams/eddy/internal/kafkatest"
	"github.com/eddy-streams/eddy/state"
	"github.com/eddy-streams/eddy/topology"
)

// TestKafkaTailDeletedBeforeRead: the broker deletes the last records of a
// source partition before the worker reads them (retention, or
// DeleteRecords as here), and no record follows. franz-go's next fetch is
// out of range and it moves on to the log start without a word. The worker
// must say so (the log-start watch's error, counted, not ready until
// acknowledged), stop counting the deleted records as lag, and stop
// waiting for them: behind a repartition topic, the other partition's
// records were held back for max_wait (an hour here), so none of its
// windows closed.
func TestKafkaTailDeletedBeforeRead(t *testing.T) {
	for _, keyed := range []bool{false, true} {
		name := "repartition"
		if keyed {
			name = "keyed_by_group_key"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			testTailDeleted(t, keyed)
		})
	}
}

func testTailDeleted(t *testing.T, keyed bool) {
	brokers := kafkatest.Real(t)
	in := kafkatest.Name(t, "in")
	app := kafkatest.Name(t, "app")
	kafkatest.CreateTopic(t, brokers, in, 2)
	spec, err := topology.Parse([]byte(`app: ` + app + `
source: {topics: [` + in + `], keyed_by_group_key: ` + map[bool]string{false: "false", true: "true"}[keyed] + `}
time: {field: ts}
key: [user]
window: {type: tumbling, size: 1s, grace: 200ms}
aggregates: [{name: n, op: count}]
output: {topic: ` + app + `-out}
commit_interval: 100ms
idle_timeout: 1s
max_wait: 1h
`))
	if err != nil {
		t.Fatal(err)
	}
	a, log := startApp(t, Config{Spec: spec, Brokers: brokers, SessionTimeout: 6 * time.Second}, nil)
	ctx := context.Background()
	waitUntil(t, 60*time.Second, "the worker ready", func() (bool, string) { return a.Ready(), "" })

	cl := kafkatest.Client(t, brokers, kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerLinger(0))
	adm := kadm.NewClient(cl)
	counts := map[int32]int{} // records produced per partition
	send := func(p int32) {
		t.Helper()
		user := "a"
		if p == 1 {
			user = "b" // keyed by the grouping key: a key per partition
		}
		v, _ := json.Marshal(map[string]any{"user": user, "ts": time.Now().UnixMilli()})
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: in, Partition: p, Key: []byte(user), Value: v}).FirstErr(); err != nil {
			t.Fatal(err)
		}
		counts[p]++
	}
	// Both partitions read, and committed.
	for range 3 {
		send(0)
		send(1)
	}
	waitUntil(t, 30*time.Second, "the first records committed", func() (bool, string) {
		os, err := adm.FetchOffsets(ctx, spec.GroupID())
		if err != nil {
			return false, err.Error()
		}
		o0, _ := os.Lookup(in, 0)
		o1, _ := os.Lookup(in, 1)
		return o0.At == 3 && o1.At == 3, ""
	})

	// The worker stops fetching partition 1 (as a worker far behind
	// would not have got to them), five records arrive there and are
	// deleted, the last of the partition.
	held := state.SourcePartition{Topic: in, Partition: 1}
	a.mu.Lock()
	a.hooks.holdFetch = fetchHold{sp: held, d: time.Hour}
	a.heldUntil = a.clock.Now().Add(time.Hour)
	a.cl.PauseFetchPartitions(map[string][]int32{in: {1}})
	a.mu.Unlock()
	for range 5 {
		send(1)
	}
	del := kadm.Offsets{}
	del.AddOffset(in, 1, int64(counts[1]), -1)
	if resp, err := adm.DeleteRecords(ctx, del); err != nil || resp.Error() != nil {
		t.Fatalf("delete records: %v %v", err, resp.Error())
	}
	// Records on partition 0 for three seconds, then partition 1 fetched
	// again.
	for start := time.Now(); time.Since(start) < 3*time.Second; {
		send(0)
		time.Sleep(50 * time.Millisecond)
	}
	a.mu.Lock()
	a.heldUntil = time.Time{}
	a.mu.Unlock()

	waitUntil(t, 30*time.Second, "the deleted records reported", func() (bool, string) {
		why := a.watch.notReady()
		return strings.Contains(why, "5 records expired"), why
	})
	if l := log.String(); !strings.Contains(l, "records_lost=5") || !strings.Contains(l, "next_offset=3") || !strings.Contains(l, "log_start=8") {
		t.Errorf("the log does not report records 3 to 7 of %s/1 as lost", in)
	}
	waitUntil(t, 10*time.Second, "no lag on partition 1", func() (bool, string) {
		var m dto.Metric
		if err := a.m.lag.WithLabelValues(in, "1").Write(&m); err != nil {
			return false, err.Error()
		}
		return m.GetGauge().GetValue() == 0, fmt.Sprintf("eddy_consumer_lag_records %v", m.GetGauge().GetValue())
	})

	// Every record of partition 0 and the three read of partition 1 are
	// counted in results; none is late.
	want := counts[0] + 3
	counted, late := countResults(t, ctx, brokers, app+"-out", app+"-late", want)
	if late != 0 || counted != want {
		t.Errorf("%d of %d records counted in results, %d late; want all counted, none late", counted, want, late)
	}
}
