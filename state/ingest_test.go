package state

import (
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// restoredRows reads every row of ts as encoded window key -> value.
func restoredRows(t *testing.T, ts *TaskStore) map[string]string {
	t.Helper()
	got := map[string]string{}
	if err := ts.scanStored(func(k WindowKey, v []byte) error {
		got[string(k.AppendBinary(nil))] = string(v)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return got
}

// TestApplyRestoredIngestSurvivesMachineCrash: applications of restored
// records, large enough to be ingested as SSTables and interleaved with
// small ones written by batches, give the rows of applying every record
// in log order (last value wins, nil deletes, rows stored before are
// overridden). A machine crash after they returned loses none of the
// ingested ones (an ingestion is durable; the unsynced batches between
// may be lost), and what survives is a whole prefix: the checkpoint's
// applications, exactly their rows.
func TestApplyRestoredIngestSurvivesMachineCrash(t *testing.T) {
	fs := vfs.NewCrashableMem()
	db, err := openFS("state", fs)
	if err != nil {
		t.Fatal(err)
	}
	ts := db.TaskStore("windows", 3, testSpecs, 0)
	rng := rand.New(rand.NewPCG(5, 6))
	// Rows committed before the restore, some of which it overwrites or
	// deletes.
	for i := range 500 {
		ts.Put(WindowKey{Key: fmt.Sprintf(`["k%05d"]`, i*7), Start: 0, End: 10}, testRow(float64(i)))
	}
	if err := ts.Commit(ts.Dirty(), Checkpoint{ChangelogNext: 0}); err != nil {
		t.Fatal(err)
	}
	want := []map[string]string{restoredRows(t, ts)}
	ingested := []bool{true}
	sizes := []int{ingestMinRecords, 300, 2 * ingestMinRecords, ingestMinRecords + 1, 10, 3 * ingestMinRecords}
	for a, n := range sizes {
		next := maps.Clone(want[a])
		var keys, values [][]byte
		for range n {
			k := WindowKey{Key: fmt.Sprintf(`["k%05d"]`, rng.IntN(6000)), Start: 0, End: 10}.AppendBinary(nil)
			var v []byte
			if rng.IntN(4) != 0 {
				v = testRow(float64(rng.IntN(1000))).AppendBinary(nil)
				next[string(k)] = string(v)
			} else {
				delete(next, string(k))
			}
			keys, values = append(keys, k), append(values, v)
		}
		if err := ts.ApplyRestored(keys, values, Checkpoint{ChangelogNext: int64(a + 1)}, false); err != nil {
			t.Fatal(err)
		}
		if got := restoredRows(t, ts); !maps.Equal(got, next) {
			t.Fatalf("application %d (%d records): %d rows stored, want %d of applying the records in order", a, n, len(got), len(next))
		}
		want = append(want, next)
		ingested = append(ingested, n >= ingestMinRecords)
	}
	lastIngested := 0
	for a, ok := range ingested {
		if ok {
			lastIngested = a
		}
	}
	opened := 0
	for trial := range 12 {
		crashed := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: []int{0, 50, 100}[trial%3], RNG: rand.New(rand.NewPCG(uint64(trial), 1))})
		cdb, err := openFS("state", crashed)
		if err != nil {
			if !errors.Is(err, ErrCorruptState) {
				t.Fatalf("trial %d: open after crash: %v", trial, err)
			}
			continue
		}
		opened++
		cts := cdb.TaskStore("windows", 3, testSpecs, 0)
		cp, ok, err := cts.Checkpoint()
		if err != nil || !ok {
			t.Fatalf("trial %d: checkpoint %v, %v", trial, ok, err)
		}
		n := int(cp.ChangelogNext)
		if n < lastIngested {
			t.Errorf("trial %d: checkpoint %d after a crash, but application %d was ingested (durable)", trial, n, lastIngested)
		}
		if got := restoredRows(t, cts); !maps.Equal(got, want[n]) {
			t.Errorf("trial %d: the checkpoint says application %d, but the rows are not its", trial, n)
		}
		cdb.Close()
	}
	db.Close()
	if opened == 0 {
		t.Error("no crash image opened: the test checked nothing")
	}
}

// A state directory written by an earlier eddy (Pebble's oldest format,
// which has no excise) opens, keeps its rows, and can be wiped and
// restored by ingestion: Open ratchets its format.
func TestOpenOldFormatStore(t *testing.T) {
	dir := t.TempDir()
	old, err := pebble.Open(dir, &pebble.Options{Logger: quietLogger{}, FormatMajorVersion: pebble.FormatMinSupported})
	if err != nil {
		t.Fatal(err)
	}
	prev := &DB{pdb: old, dir: dir, fs: vfs.Default}
	ts := prev.TaskStore("windows", 0, testSpecs, 0)
	wk := WindowKey{Key: `["old"]`, Start: 0, End: 10}
	ts.Put(wk, testRow(1))
	if err := ts.Commit(ts.Dirty(), Checkpoint{ChangelogNext: 7}); err != nil {
		t.Fatal(err)
	}
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	db := openDB(t, dir)
	defer db.Close()
	if v := db.pdb.FormatMajorVersion(); v < pebble.FormatVirtualSSTables {
		t.Fatalf("format %d after Open, want at least %d", v, pebble.FormatVirtualSSTables)
	}
	ts = db.TaskStore("windows", 0, testSpecs, 0)
	if r, err := ts.Get(wk); err != nil || r == nil {
		t.Fatalf("row written before the upgrade: %v, %v", r, err)
	}
	if err := ts.Wipe(); err != nil {
		t.Fatal(err)
	}
	var keys, values [][]byte
	for i := range ingestMinRecords {
		keys = append(keys, WindowKey{Key: fmt.Sprintf(`["n%05d"]`, i), Start: 0, End: 10}.AppendBinary(nil))
		values = append(values, testRow(float64(i)).AppendBinary(nil))
	}
	if err := ts.ApplyRestored(keys, values, Checkpoint{ChangelogNext: 9}, true); err != nil {
		t.Fatal(err)
	}
	if got := restoredRows(t, ts); len(got) != ingestMinRecords {
		t.Errorf("%d rows after wipe and ingestion, want %d", len(got), ingestMinRecords)
	}
	if cp, ok, err := ts.Checkpoint(); err != nil || !ok || cp.ChangelogNext != 9 {
		t.Errorf("checkpoint %+v, %v, %v; want ChangelogNext 9", cp, ok, err)
	}
}

// TestRecordRestored: a restore from scratch (Wipe, then applications
// through batches and ingestion, with tombstones, keys written again and
// aux entries between) records the window keys it writes; applied in log
// order they are exactly the rows the store then holds. A restore that
// does not wipe the store records nothing whole, and TakeRestored stops
// the recording.
func TestRecordRestored(t *testing.T) {
	db := openDB(t, t.TempDir())
	defer db.Close()
	ts := db.TaskStore("windows", 1, testSpecs, 0)
	for i := range 300 { // rows from before: the wipe removes them
		ts.Put(WindowKey{Key: fmt.Sprintf(`["old%03d"]`, i), Start: 0, End: 10}, testRow(1))
	}
	if err := ts.Commit(ts.Dirty(), Checkpoint{}); err != nil {
		t.Fatal(err)
	}
	ts.RecordRestored()
	if err := ts.Wipe(); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(7, 8))
	for a, n := range []int{ingestMinRecords + 5, 200, 2 * ingestMinRecords, 17} {
		var keys, values [][]byte
		for i := range n {
			if i%97 == 0 { // an aux entry: not a window
				keys, values = append(keys, appendAuxKey(nil, fmt.Sprintf("rule|%d", i))), append(values, []byte("x"))
				continue
			}
			k := WindowKey{Key: fmt.Sprintf(`["k%05d"]`, rng.IntN(5000)), Start: int64(rng.IntN(3)) * 10, End: 0}
			k.End = k.Start + 10
			var v []byte
			if rng.IntN(4) != 0 {
				v = testRow(float64(i)).AppendBinary(nil)
			}
			keys, values = append(keys, k.AppendBinary(nil)), append(values, v)
		}
		if err := ts.ApplyRestored(keys, values, Checkpoint{ChangelogNext: int64(a + 1)}, false); err != nil {
			t.Fatal(err)
		}
	}
	rec, whole := ts.TakeRestored()
	if !whole {
		t.Fatal("a restore after Wipe is not recorded whole")
	}
	live := map[WindowKey]bool{}
	for _, k := range rec {
		if k.Deleted {
			delete(live, k.WindowKey)
		} else {
			live[k.WindowKey] = true
		}
	}
	stored := map[WindowKey]bool{}
	if err := ts.Scan(true, func(k WindowKey) error { stored[k] = true; return nil }); err != nil {
		t.Fatal(err)
	}
	if len(stored) < 1000 || !maps.Equal(live, stored) {
		t.Fatalf("the recorded keys give %d windows, the store holds %d", len(live), len(stored))
	}
	if _, whole := ts.TakeRestored(); whole {
		t.Error("TakeRestored did not stop the recording")
	}
	// Recording without a wipe: the applied rows are not the store's
	// whole content.
	ts.RecordRestored()
	k := WindowKey{Key: `["new"]`, Start: 0, End: 10}
	if err := ts.ApplyRestored([][]byte{k.AppendBinary(nil)}, [][]byte{testRow(1).AppendBinary(nil)}, Checkpoint{ChangelogNext: 9}, true); err != nil {
		t.Fatal(err)
	}
	if keys, whole := ts.TakeRestored(); whole || len(keys) != 0 {
		t.Errorf("a restore onto kept rows: recorded %d keys, whole %v; want none", len(keys), whole)
	}
}
