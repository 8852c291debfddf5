package changelog

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eddy-streams/eddy/internal/kafkatest"
	"github.com/eddy-streams/eddy/state"
)

// A restore large enough to be ingested as SSTables (many thousands of
// records per application) gives the state of applying the changelog in
// log order: overwrites of a key (the last one wins, also across
// applications), tombstones (deleting rows restored earlier, in the same
// application or an earlier one), records of an aborted transaction
// skipped, records after the last marker (an unfinished flush) not
// applied, and the checkpoint of the last marker. The expected state is
// computed here by a plain loop over what was produced.
func testRestoreIngestLogOrder(t *testing.T, brokers []string) {
	topic := kafkatest.Name(t, "changelog")
	kafkatest.CreateTopic(t, brokers, topic, 1)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(17, 4))
	values := make([][]byte, 5)
	for i := range values {
		r := state.NewRow(testSpecs)
		for range i + 1 {
			r.Add(0, float64(i))
		}
		values[i] = r.AppendBinary(nil)
	}
	wk := func(i int) state.WindowKey {
		return state.WindowKey{Key: fmt.Sprintf(`["k-%05d"]`, i), Start: int64(i%3) * 10_000, End: int64(i%3)*10_000 + 10_000}
	}
	// flushes of random rows: 8,000 distinct keys, so keys recur within
	// and across applications; a fifth of the records are tombstones.
	flush := func(n int, seq int64) []*kgo.Record {
		var recs []*kgo.Record
		for range n {
			k := wk(rng.IntN(8000))
			var v []byte
			if rng.IntN(5) != 0 {
				v = values[rng.IntN(len(values))]
			}
			recs = append(recs, &kgo.Record{Topic: topic, Key: k.AppendBinary(nil), Value: v})
		}
		cp := state.Checkpoint{InputNext: seq * 100, StreamTime: seq}
		return append(recs, &kgo.Record{Topic: topic, Key: state.MarkerKey(), Value: cp.AppendBinary(nil)})
	}
	want := map[string][]byte{} // window key encoding -> row (absent: no row)
	apply := func(recs []*kgo.Record) {
		for _, r := range recs {
			if state.IsMarkerKey(r.Key) {
				continue
			}
			if r.Value == nil {
				delete(want, string(r.Key))
			} else {
				want[string(r.Key)] = r.Value
			}
		}
	}
	plain := kafkatest.Client(t, brokers)
	txn := kafkatest.Client(t, brokers, kgo.TransactionalID(kafkatest.Name(t, "txn")), kgo.TransactionTimeout(time.Minute))
	produce := func(cl *kgo.Client, recs []*kgo.Record) {
		t.Helper()
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	inTxn := func(recs []*kgo.Record, commit kgo.TransactionEndTry) {
		t.Helper()
		if err := txn.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		produce(txn, recs)
		if err := txn.EndTransaction(ctx, commit); err != nil {
			t.Fatal(err)
		}
	}
	// Committed flushes, plain and transactional, one aborted between.
	var seq int64
	for i := range 6 {
		seq++
		recs := flush(3000+rng.IntN(3000), seq)
		switch i % 3 {
		case 0:
			produce(plain, recs)
			apply(recs)
		case 1:
			inTxn(recs, kgo.TryCommit)
			apply(recs)
		case 2:
			inTxn(recs, kgo.TryAbort) // never applied
			seq--
		}
	}
	lastCP := seq
	// An unfinished flush: rows without their marker.
	tail := flush(700, seq+1)
	produce(plain, tail[:len(tail)-1])

	db, err := state.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ts := db.TaskStore("windows", 0, testSpecs, 0)
	// Rows from before, which the from-scratch restore must not keep.
	stale := state.WindowKey{Key: `["stale"]`, Start: 0, End: 10}
	ts.Put(stale, state.NewRow(testSpecs))
	if err := ts.Commit(ts.Dirty(), state.Checkpoint{ChangelogNext: 1 << 40}); err != nil {
		t.Fatal(err)
	}
	r := NewRestorer(restoreClient(t, brokers, kgo.FetchMaxPartitionBytes(1<<20), kgo.FetchMaxBytes(1<<20)))
	r.IdleEnd = 200 * time.Millisecond
	r.applyRecords = 5000 // several applications, most of them ingested (state.ingestMinRecords is 4096)
	res, err := r.Restore(ctx, topic, 0, ts)
	if err != nil {
		t.Fatal(err)
	}
	if !res.FromScratch {
		t.Errorf("restore kept state whose checkpoint is past the changelog's end: %+v", res)
	}
	if res.Discarded != len(tail)-1 {
		t.Errorf("discarded %d records of the unfinished flush, want %d", res.Discarded, len(tail)-1)
	}
	if got := res.Checkpoint.InputNext; got != lastCP*100 {
		t.Errorf("checkpoint InputNext %d, want the last committed marker's %d", got, lastCP*100)
	}
	got := map[string][]byte{}
	err = ts.Scan(true, func(k state.WindowKey) error {
		row, err := ts.Get(k)
		if err != nil {
			return err
		}
		got[string(k.AppendBinary(nil))] = row.AppendBinary(nil)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Errorf("restored %d rows, want %d", len(got), len(want))
	}
	for k, v := range want {
		if g, ok := got[k]; !ok {
			t.Errorf("row %x missing", k)
		} else if !bytes.Equal(g, v) {
			t.Errorf("row %x = %x, want %x (the last value in log order)", k, g, v)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("row %x restored, but deleted or never written by a committed flush", k)
		}
	}
	// The stored checkpoint is the one restore returned (ingested with the
	// rows), and a second restore has nothing to do.
	cp, ok, err := ts.Checkpoint()
	if err != nil || !ok || cp.ChangelogNext != res.Checkpoint.ChangelogNext {
		t.Fatalf("stored checkpoint %+v (ok %v, %v), want ChangelogNext %d", cp, ok, err, res.Checkpoint.ChangelogNext)
	}
	res2, err := r.Restore(ctx, topic, 0, ts)
	if err != nil {
		t.Fatal(err)
	}
	if res2.FromScratch || res2.Records != int64(len(tail)-1) {
		t.Errorf("second restore: %+v, want only the unfinished flush read again", res2)
	}
}

func TestRestoreIngestLogOrder(t *testing.T) {
	t.Parallel()
	testRestoreIngestLogOrder(t, kafkatest.Kfake(t))
}

func TestKafkaRestoreIngestLogOrder(t *testing.T) {
	t.Parallel()
	testRestoreIngestLogOrder(t, kafkatest.Real(t))
}
