package changelog

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/eddy-streams/eddy/internal/kafkatest"

	"github.com/eddy-streams/eddy/state"
)

// changelogRecords returns n window rows for partition 0 with a commit
// marker after every `every` rows (InputNext: rows so far), and the rows'
// keys.
func changelogRecords(topic string, n, every int) ([]*kgo.Record, []state.WindowKey) {
	row := state.NewRow(testSpecs)
	row.Add(0, 1)
	value := row.AppendBinary(nil)
	var recs []*kgo.Record
	var keys []state.WindowKey
	for i := range n {
		k := state.WindowKey{Key: fmt.Sprintf(`["k-%07d"]`, i), Start: 1_764_158_400_000, End: 1_764_158_410_000}
		keys = append(keys, k)
		recs = append(recs, &kgo.Record{Topic: topic, Key: k.AppendBinary(nil), Value: value})
		if (i+1)%every == 0 || i == n-1 {
			cp := state.Checkpoint{InputNext: int64(i + 1), StreamTime: 1_764_158_400_000}
			recs = append(recs, &kgo.Record{Topic: topic, Key: state.MarkerKey(), Value: cp.AppendBinary(nil)})
		}
	}
	return recs, keys
}

// restoreClient is a client as the processor gives the restorer:
// read_committed, control records kept. Small fetches make a restore take
// many of them.
func restoreClient(t *testing.T, brokers []string, opts ...kgo.Opt) *kgo.Client {
	return kafkatest.Client(t, brokers, append([]kgo.Opt{kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(), kgo.FetchMaxPartitionBytes(32 << 10), kgo.FetchMaxBytes(32 << 10)}, opts...)...)
}

// storedKeys counts the rows in ts that are among keys.
func storedKeys(t *testing.T, ts *state.TaskStore, keys []state.WindowKey) int {
	t.Helper()
	n := 0
	for _, k := range keys {
		r, err := ts.Get(k)
		if err != nil {
			t.Fatal(err)
		}
		if r != nil {
			n++
		}
	}
	return n
}

// A transaction that wrote to the changelog and has not committed when the
// restore starts is waited for: once it commits, the restored state
// includes it (the restore does not end at the last stable offset it
// measured).
func testRestorePendingTransaction(t *testing.T, brokers []string) {
	topic := kafkatest.Name(t, "changelog")
	kafkatest.CreateTopic(t, brokers, topic, 1)
	committed, keys1 := changelogRecords(topic, 500, 100)
	if err := kafkatest.Client(t, brokers).ProduceSync(context.Background(), committed...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	// The previous owner's last transaction: rows and a marker, not yet
	// committed.
	txn := kafkatest.Client(t, brokers, kgo.TransactionalID(kafkatest.Name(t, "txn")), kgo.TransactionTimeout(time.Minute))
	ctx := context.Background()
	if err := txn.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	pending, keys2 := changelogRecords(topic, 200, 200)
	for i, r := range pending {
		if i < len(pending)-1 {
			r.Key = state.WindowKey{Key: fmt.Sprintf(`["t-%07d"]`, i), Start: 1, End: 2}.AppendBinary(nil)
			keys2[i] = state.WindowKey{Key: fmt.Sprintf(`["t-%07d"]`, i), Start: 1, End: 2}
		}
	}
	if err := txn.ProduceSync(ctx, pending...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if err := txn.Flush(ctx); err != nil {
		t.Fatal(err)
	}

	db, err := state.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ts := db.TaskStore("windows", 0, testSpecs, 0)
	r := NewRestorer(restoreClient(t, brokers))
	r.IdleEnd = 100 * time.Millisecond
	var read atomic.Int64
	r.Progress = func(_ string, _ int32, done, _ int64) { read.Store(done) }
	type out struct {
		res RestoreResult
		err error
	}
	done := make(chan out, 1)
	go func() {
		res, err := r.Restore(ctx, topic, 0, ts)
		done <- out{res, err}
	}()
	// The restore reads what is committed, then waits for the transaction.
	deadline := time.Now().Add(30 * time.Second)
	for read.Load() < int64(len(committed)) {
		select {
		case o := <-done:
			t.Fatalf("restore ended before the open transaction did: %+v, %v", o.res, o.err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("restore read %d of the %d committed records in 30s", read.Load(), len(committed))
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Many quiet spells (IdleEnd) later it still waits.
	select {
	case o := <-done:
		t.Fatalf("restore ended with a transaction open below the end: %+v, %v", o.res, o.err)
	case <-time.After(20 * r.IdleEnd):
	}
	if err := txn.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatal(err)
	}
	var o out
	select {
	case o = <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("restore did not end within 60s of the transaction's commit")
	}
	if o.err != nil {
		t.Fatal(o.err)
	}
	if got, want := storedKeys(t, ts, keys1)+storedKeys(t, ts, keys2), len(keys1)+len(keys2); got != want {
		t.Errorf("restored %d rows, want %d (the committed ones and the transaction's)", got, want)
	}
	if o.res.Checkpoint.InputNext != 200 {
		t.Errorf("restored checkpoint's InputNext = %d, want the transaction's marker's 200", o.res.Checkpoint.InputNext)
	}
	ends, err := kadm.NewClient(kafkatest.Client(t, brokers)).ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	end, _ := ends.Lookup(topic, 0)
	// The commit marker of the transaction is the last offset; the
	// checkpoint is just after the restored marker record, at most there.
	if cp := o.res.Checkpoint.ChangelogNext; cp < end.Offset-1 {
		t.Errorf("restored checkpoint at changelog offset %d, end %d", cp, end.Offset)
	}
}

func TestRestorePendingTransaction(t *testing.T) {
	t.Parallel()
	testRestorePendingTransaction(t, kafkatest.Kfake(t))
}

func TestKafkaRestorePendingTransaction(t *testing.T) {
	t.Parallel()
	testRestorePendingTransaction(t, kafkatest.Real(t))
}

// A broker that stops answering during a restore (SIGSTOP, for longer than
// many IdleEnd spells) and then resumes: the restore waits and reaches the
// end it measured, every row restored.
func TestKafkaRestoreStalledBroker(t *testing.T) {
	b := kafkatest.Private(t)
	topic := kafkatest.Name(t, "changelog")
	kafkatest.CreateTopic(t, b.Addrs, topic, 1)
	recs, keys := changelogRecords(topic, 20000, 1000)
	ctx := context.Background()
	if err := kafkatest.Client(t, b.Addrs).ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	db, err := state.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ts := db.TaskStore("windows", 0, testSpecs, 0)
	r := NewRestorer(restoreClient(t, b.Addrs, kgo.RequestTimeoutOverhead(2*time.Second)))
	r.IdleEnd = 200 * time.Millisecond
	const pause = 4 * time.Second
	var paused atomic.Bool
	resumed := make(chan struct{})
	r.Progress = func(_ string, _ int32, done, total int64) {
		if done < total && paused.CompareAndSwap(false, true) {
			b.Pause()
			t.Logf("broker paused after %d of %d records", done, total)
			go func() {
				defer close(resumed)
				time.Sleep(pause)
				b.Resume()
			}()
		}
	}
	began := time.Now()
	res, err := r.Restore(ctx, topic, 0, ts)
	if paused.Load() {
		<-resumed
	}
	if err != nil {
		t.Fatal(err)
	}
	if !paused.Load() {
		t.Fatal("the restore read everything in its first fetch; the broker was never paused")
	}
	t.Logf("restored %d records in %s with the broker paused for %s", res.Records, time.Since(began).Round(time.Millisecond), pause)
	if res.Records != int64(len(recs)) {
		t.Errorf("restored %d records, want %d", res.Records, len(recs))
	}
	if got := storedKeys(t, ts, keys); got != len(keys) {
		t.Errorf("restored %d rows, want %d", got, len(keys))
	}
	if res.Checkpoint.ChangelogNext != int64(len(recs)) || res.Checkpoint.InputNext != int64(len(keys)) {
		t.Errorf("checkpoint %+v; want changelog next %d, input next %d", res.Checkpoint, len(recs), len(keys))
	}
}

// hasRecordsFrom reads batch headers: a batch that ends before next, or
// has no records left, is no data; one that reaches next with records is.
func TestHasRecordsFrom(t *testing.T) {
	batch := func(first int64, lastDelta, n int32) []byte {
		b := kmsg.RecordBatch{FirstOffset: first, LastOffsetDelta: lastDelta, NumRecords: n, Magic: 2}
		b.Length = int32(len(b.AppendTo(nil)) - 12)
		return b.AppendTo(nil)
	}
	cases := []struct {
		name string
		raw  []byte
		next int64
		want bool
	}{
		{"nothing", nil, 10, false},
		{"batch before next", batch(0, 9, 10), 10, false},
		{"batch from next", batch(10, 4, 5), 10, true},
		{"batch straddling next", batch(5, 9, 3), 10, true},
		{"compacted empty batch", batch(10, 9, 0), 10, false},
		{"two batches, second from next", append(batch(0, 4, 5), batch(12, 0, 1)...), 10, true},
		{"truncated", batch(10, 0, 1)[:20], 10, true},
	}
	for _, c := range cases {
		if got := hasRecordsFrom(c.raw, c.next); got != c.want {
			t.Errorf("%s: hasRecordsFrom = %v, want %v", c.name, got, c.want)
		}
	}
}

// legacyAuxKey builds by hand the changelog key an eddy before aux key
// kinds wrote for the aux entry id (alert state): a window key (key
// length, key, start, end) whose key is 0x00 followed by the id, start
// and end 0 with their sign bit flipped.
func legacyAuxKey(id string) []byte {
	k := "\x00" + id
	b := []byte{byte(len(k) >> 8), byte(len(k))}
	b = append(b, k...)
	zero := []byte{0x80, 0, 0, 0, 0, 0, 0, 0}
	b = append(b, zero...)
	return append(b, zero...)
}

// A changelog written by an eddy before aux key kinds (alert state under
// window keys beginning with 0x00, built here by hand) restores: the
// alert state is found by ScanAux and not among the windows, the windows
// are all there, and the first flush after it rewrites each entry in the
// new form after a tombstone of its old key.
func testRestoreLegacyAlertState(t *testing.T, brokers []string) {
	topic := kafkatest.Name(t, "changelog")
	kafkatest.CreateTopic(t, brokers, topic, 1)
	recs, keys := changelogRecords(topic, 300, 100)
	want := map[string]string{}
	var legacy []*kgo.Record
	for i := range 40 {
		id := fmt.Sprintf("too-slow\x00[\"k-%07d\"]", i)
		v := fmt.Sprintf(`{"s":"firing","since":%d}`, 1_764_158_400_000+i)
		legacy = append(legacy, &kgo.Record{Topic: topic, Key: legacyAuxKey(id), Value: []byte(v)})
		want[id] = v
	}
	// One entry the old eddy deleted again.
	legacy = append(legacy,
		&kgo.Record{Topic: topic, Key: legacyAuxKey("too-slow\x00[\"gone\"]"), Value: []byte(`{"s":"pending"}`)},
		&kgo.Record{Topic: topic, Key: legacyAuxKey("too-slow\x00[\"gone\"]")})
	// the alert state goes into the first flush, before its marker
	all := append(append(slices.Clone(recs[:100]), legacy...), recs[100:]...)
	if err := kafkatest.Client(t, brokers).ProduceSync(context.Background(), all...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	db, err := state.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ts := db.TaskStore("windows", 0, testSpecs, 0)
	r := NewRestorer(restoreClient(t, brokers))
	r.IdleEnd = 100 * time.Millisecond
	res, err := r.Restore(context.Background(), topic, 0, ts)
	if err != nil {
		t.Fatal(err)
	}
	if res.Records != int64(len(all)) {
		t.Errorf("restored %d records, want %d", res.Records, len(all))
	}
	if n := storedKeys(t, ts, keys); n != len(keys) {
		t.Errorf("%d of %d windows restored", n, len(keys))
	}
	windows := 0
	if err := ts.Scan(true, func(state.WindowKey) error { windows++; return nil }); err != nil {
		t.Fatal(err)
	}
	if windows != len(keys) {
		t.Errorf("Scan: %d windows, want %d (alert state is not a window)", windows, len(keys))
	}
	got := map[string]string{}
	if err := ts.ScanAux(func(id string, v []byte) error { got[id] = string(v); return nil }); err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(got, want) {
		t.Errorf("restored alert state: %d entries, want %d: %q", len(got), len(want), got)
	}
	tombstones, rewrites := 0, 0
	for _, ch := range ts.Dirty() {
		k := ch.AppendKey(nil)
		switch {
		case ch.Value == nil && len(k) > 3 && bytes.Equal(k, legacyAuxKey(ch.AuxID)):
			tombstones++
		case len(k) > 2 && k[0] == 0xfe && string(ch.Value) == want[ch.AuxID]:
			rewrites++
		}
	}
	if tombstones != len(want) || rewrites != len(want) {
		t.Errorf("first flush: %d old-key tombstones, %d new-form rewrites; want %d of each", tombstones, rewrites, len(want))
	}
}

func TestRestoreLegacyAlertState(t *testing.T) {
	t.Parallel()
	testRestoreLegacyAlertState(t, kafkatest.Kfake(t))
}

func TestKafkaRestoreLegacyAlertState(t *testing.T) {
	t.Parallel()
	testRestoreLegacyAlertState(t, kafkatest.Real(t))
}
