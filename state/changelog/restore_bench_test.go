package changelog

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eddy-streams/eddy/state"
)

// BenchmarkRestore: restoring one changelog partition of 200k or 1M rows
// (with a commit marker every 5,000) into an empty store, from an
// in-process broker (kfake): the restorer's own cost, without a network.
// With 1M rows the restored data outgrows a memtable, so the cost of
// getting it into Pebble's levels shows (run it with -cpu 1 under
// taskset to see it on one core, where Pebble's background work competes
// with the restore).
func BenchmarkRestore(b *testing.B) {
	for _, rows := range []int{200_000, 1_000_000} {
		b.Run(fmt.Sprintf("rows=%d", rows), func(b *testing.B) { benchmarkRestore(b, rows) })
	}
}

func benchmarkRestore(b *testing.B, rows int) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "cl"))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.DefaultProduceTopic("cl"),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords(), kgo.FetchMaxPartitionBytes(8<<20))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	row := state.NewRow(testSpecs)
	row.Add(0, 1)
	value := row.AppendBinary(nil)
	ctx := context.Background()
	var recs []*kgo.Record
	for i := range rows {
		k := state.WindowKey{Key: fmt.Sprintf(`["k-%07d"]`, i), Start: 1_764_158_400_000, End: 1_764_158_410_000}
		recs = append(recs, &kgo.Record{Key: k.AppendBinary(nil), Value: value})
		if (i+1)%5000 == 0 {
			cp := state.Checkpoint{InputNext: int64(i + 1), StreamTime: 1_764_158_400_000}
			recs = append(recs, &kgo.Record{Key: state.MarkerKey(), Value: cp.AppendBinary(nil)})
		}
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		b.Fatal(err)
	}
	r := NewRestorer(cl)
	r.IdleEnd = time.Second
	db, err := state.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	b.ResetTimer()
	for b.Loop() {
		ts := db.TaskStore("windows", 0, testSpecs, 0)
		if err := ts.Wipe(); err != nil {
			b.Fatal(err)
		}
		res, err := r.Restore(ctx, "cl", 0, ts)
		if err != nil {
			b.Fatal(err)
		}
		if res.Records != int64(len(recs)) {
			b.Fatalf("restored %d records, want %d", res.Records, len(recs))
		}
	}
	b.ReportMetric(float64(len(recs))*float64(b.N)/b.Elapsed().Seconds(), "records/s")
}
