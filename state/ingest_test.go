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
