package processor

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hamba/avro/v2"
	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eddy-streams/eddy/schema"
	"github.com/eddy-streams/eddy/topology"
)

// TestRegistryStallEndsAtMarker: Avro input written in transactions (each
// partition ends with a commit marker) reaches an at-least-once worker
// while the schema registry is down, so each partition's records wait
// (registry_wait.go) in a fetch that ended with the marker. When the
// registry answers and the held records are processed, the partition's
// position must be past the marker: read to the end, so idle once the
// input stops, and the wall clock closes the last windows. A position at
// the last data record would leave the partition one record short of its
// end for ever: never idle, and the last windows would wait max_wait (an
// hour here).
func TestRegistryStallEndsAtMarker(t *testing.T) {
	t.Parallel()
	parsed, err := schema.ParseSchema(parAvroSchema)
	if err != nil {
		t.Fatal(err)
	}
	reg := &idDownRegistry{fakeRegistry: &fakeRegistry{byID: map[int]*schema.Schema{1: {ID: 1, Subject: "in-value", Version: 1, Text: parAvroSchema, Avro: parsed}}}}
	reg.idDown.Store(true) // the start-up check passes; the records' schema id is not answered

	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "in"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close) // after the App stops (startApp)
	brokers := cluster.ListenAddrs()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// The input, in three transactions over both partitions, event times
	// now: the windows close by the wall clock once the input is idle.
	txn, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic("in"),
		kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.TransactionalID("stall-marker-producer"))
	if err != nil {
		t.Fatal(err)
	}
	defer txn.Close()
	produced := 0
	for range 3 {
		if err := txn.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		for i := range 10 {
			m := map[string]any{"ts": time.Now().UnixMilli(), "user": fmt.Sprintf("u%d", i%3), "lat": int64(i), "ep": "/e"}
			body, err := avro.Marshal(parsed, m)
			if err != nil {
				t.Fatal(err)
			}
			v := append(binary.BigEndian.AppendUint32([]byte{0}, 1), body...)
			if err := txn.ProduceSync(ctx, &kgo.Record{Partition: int32(i % 2), Value: v}).FirstErr(); err != nil {
				t.Fatal(err)
			}
			produced++
		}
		if err := txn.EndTransaction(ctx, kgo.TryCommit); err != nil {
			t.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond)
	}

	spec, err := topology.Parse([]byte(`app: stallmarker
source: {topics: [in], format: avro}
time: {field: ts}
key: [user]
window: {type: tumbling, size: 1s, grace: 200ms}
aggregates: [{name: n, op: count}]
output: {topic: out}
commit_interval: 100ms
idle_timeout: 1s
max_wait: 1h
`))
	if err != nil {
		t.Fatal(err)
	}
	app, _ := startApp(t, Config{Spec: spec, Brokers: brokers, SessionTimeout: 6 * time.Second, Registry: reg}, nil)
	waitUntil(t, 30*time.Second, "the worker to wait for the registry", func() (bool, string) {
		var m dto.Metric
		if err := app.m.registryWaiting.Write(&m); err != nil {
			t.Fatal(err)
		}
		return m.GetGauge().GetValue() == 1, fmt.Sprintf("eddy_registry_waiting %v", m.GetGauge().GetValue())
	})
	reg.idDown.Store(false)

	counted, late := countResults(t, ctx, brokers, "out", "stallmarker-late", produced)
	if late != 0 || counted != produced {
		t.Errorf("%d of %d records counted in results, %d late; want all counted, none late", counted, produced, late)
	}
}

// idDownRegistry answers everything but schema ids while idDown is set:
// the worker starts, then its records wait for the registry.
type idDownRegistry struct {
	*fakeRegistry
	idDown atomic.Bool
}

func (r *idDownRegistry) GetByID(ctx context.Context, id int) (*schema.Schema, error) {
	if r.idDown.Load() {
		r.calls.Add(1)
		return nil, errDown
	}
	return r.fakeRegistry.GetByID(ctx, id)
}
