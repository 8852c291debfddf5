package state

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

func TestWindowKeyRoundTrip(t *testing.T) {
	for _, k := range []WindowKey{
		{},
		{Key: "a", Start: 0, End: 60_000},
		{Key: `["checkout","/pay"]`, Start: 1_748_865_600_000, End: 1_748_865_660_000},
		{Key: "ünïcode ✓", Start: -1, End: 0},
		{Key: "\x00\xff\x00", Start: math.MinInt64, End: math.MaxInt64},
		{Key: strings.Repeat("k", MaxKeyLen), Start: -60_000, End: -1},
	} {
		b := k.AppendBinary(nil)
		if len(b) != 2+len(k.Key)+16 {
			t.Errorf("%q: %d bytes, want %d", k.Key, len(b), 2+len(k.Key)+16)
		}
		got, err := ParseWindowKey(b)
		if err != nil || got != k {
			t.Errorf("ParseWindowKey(AppendBinary(%+v)) = %+v, %v", k, got, err)
		}
		// Appending keeps what dst held.
		if b2 := k.AppendBinary([]byte("prefix")); !bytes.Equal(b2[6:], b) || string(b2[:6]) != "prefix" {
			t.Errorf("%q: AppendBinary to a non-empty slice changed its prefix or the encoding", k.Key)
		}
	}
}

// TestWindowKeyOrder: for one key, byte order of the encoding is numeric
// order of (start, end), negative times first, so a key's windows scan
// oldest first. Across keys the order is by key length, then bytes (the
// encoding is length-prefixed): deterministic, but not lexicographic.
func TestWindowKeyOrder(t *testing.T) {
	times := []int64{math.MinInt64, -60_000, -1, 0, 1, 59_999, 60_000, 1 << 40, math.MaxInt64}
	var keys []WindowKey
	for _, s := range times {
		for _, e := range times {
			keys = append(keys, WindowKey{Key: "k", Start: s, End: e})
		}
	}
	rng := rand.New(rand.NewPCG(1, 1))
	rng.Shuffle(len(keys), func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })
	byBytes := slices.Clone(keys)
	slices.SortFunc(byBytes, func(a, b WindowKey) int { return bytes.Compare(a.AppendBinary(nil), b.AppendBinary(nil)) })
	byTime := slices.Clone(keys)
	slices.SortFunc(byTime, func(a, b WindowKey) int {
		if a.Start != b.Start {
			return cmp.Compare(a.Start, b.Start)
		}
		return cmp.Compare(a.End, b.End)
	})
	if !slices.Equal(byBytes, byTime) {
		t.Errorf("byte order differs from (start, end) order:\n%v\n%v", byBytes, byTime)
	}
	if byBytes[0].Start != math.MinInt64 {
		t.Errorf("first window starts at %d, want the most negative time", byBytes[0].Start)
	}

	b := WindowKey{Key: "b"}.AppendBinary(nil)
	aa := WindowKey{Key: "aa"}.AppendBinary(nil)
	if bytes.Compare(b, aa) >= 0 {
		t.Errorf(`key "b" sorts after "aa": the length prefix should order shorter keys first`)
	}
}

func TestParseWindowKeyCorrupt(t *testing.T) {
	good := WindowKey{Key: "abc", Start: 1, End: 2}.AppendBinary(nil)
	inputs := [][]byte{nil, {0}, append(slices.Clone(good), 0)}
	for n := range len(good) {
		inputs = append(inputs, good[:n])
	}
	long := slices.Clone(good)
	long[1] = 200 // claims a 200-byte key
	inputs = append(inputs, long)
	for _, in := range inputs {
		if k, err := ParseWindowKey(in); !errors.Is(err, ErrCorruptState) {
			t.Errorf("ParseWindowKey(%x) = %+v, %v; want an error wrapping ErrCorruptState", in, k, err)
		}
	}
}

func FuzzParseWindowKey(f *testing.F) {
	f.Add(WindowKey{Key: "abc", Start: -1, End: 2}.AppendBinary(nil))
	f.Add([]byte{0, 0})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := ParseWindowKey(b)
		if err != nil {
			if !errors.Is(err, ErrCorruptState) {
				t.Fatalf("error %v does not wrap ErrCorruptState", err)
			}
			return
		}
		if got := k.AppendBinary(nil); !bytes.Equal(got, b) {
			t.Fatalf("%x parses to %+v, which encodes as %x", b, k, got)
		}
	})
}

// testSpecs are the aggregates of the rows in these tests.
var testSpecs = []AggSpec{{Op: OpCount}, {Op: OpSum}, {Op: OpMax}, {Op: OpQuantile, Quantile: 0.99}, {Op: OpDistinct}}

func testRow(vals ...float64) *Row {
	r := NewRow(testSpecs)
	for _, v := range vals {
		for i := range testSpecs {
			r.Add(i, v)
		}
	}
	return r
}

func openDB(t testing.TB, dir string) *DB {
	t.Helper()
	db, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func sameRow(t *testing.T, what string, got, want *Row) {
	t.Helper()
	if got == nil || want == nil {
		if got != want {
			t.Errorf("%s: row %v, want %v", what, got, want)
		}
		return
	}
	if g, w := got.AppendBinary(nil), want.AppendBinary(nil); !bytes.Equal(g, w) {
		t.Errorf("%s: row encodes as %x, want %x", what, g, w)
	}
}

func scanAll(t *testing.T, ts *TaskStore) []WindowKey {
	t.Helper()
	var wks []WindowKey
	if err := ts.Scan(true, func(wk WindowKey) error { wks = append(wks, wk); return nil }); err != nil {
		t.Fatalf("scan: %v", err)
	}
	return wks
}

// TestCommitReopen: what Commit wrote survives closing and reopening the
// database, with its checkpoint; what was not committed does not.
func TestCommitReopen(t *testing.T) {
	dir := t.TempDir()
	db := openDB(t, dir)
	ts := db.TaskStore("windows", 3, testSpecs, 0)
	if _, ok, err := ts.Checkpoint(); ok || err != nil {
		t.Fatalf("fresh store: checkpoint ok=%v err=%v, want none", ok, err)
	}
	rows := map[WindowKey]*Row{
		{Key: "a", Start: -10, End: 0}: testRow(1, 2, 3),
		{Key: "a", Start: 0, End: 10}:  testRow(4),
		{Key: "b", Start: 0, End: 10}:  testRow(-5, 5),
	}
	gone := WindowKey{Key: "c", Start: 0, End: 10}
	ts.Put(gone, testRow(9))
	for k, r := range rows {
		ts.Put(k, r)
	}
	cp := Checkpoint{TopicID: [16]byte{1, 2, 3}, ChangelogNext: 42, InputNext: 7, StreamTime: 9, FlushSeq: 1,
		Upstream: map[SourcePartition]int64{{"src", 0}: 100, {"src", 1}: 5}}
	if err := ts.Commit(ts.Dirty(), cp); err != nil {
		t.Fatal(err)
	}
	// A second flush deletes one window; a third change is never committed.
	ts.Delete(gone)
	cp2 := cp
	cp2.ChangelogNext, cp2.FlushSeq = 50, 2
	if err := ts.Commit(ts.Dirty(), cp2); err != nil {
		t.Fatal(err)
	}
	uncommitted := WindowKey{Key: "d", Start: 0, End: 10}
	ts.Put(uncommitted, testRow(1))
	if d := ts.Dirty(); len(d) != 1 || d[0].Key != uncommitted {
		t.Errorf("after commit, dirty = %v; want only the new change", d)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	db = openDB(t, dir)
	defer db.Close()
	ts = db.TaskStore("windows", 3, testSpecs, 0)
	for k, want := range rows {
		got, err := ts.Get(k)
		if err != nil {
			t.Fatal(err)
		}
		sameRow(t, k.Key, got, want)
	}
	for _, k := range []WindowKey{gone, uncommitted} {
		if r, err := ts.Get(k); r != nil || err != nil {
			t.Errorf("Get(%v) after reopen = %v, %v; want nothing", k, r, err)
		}
	}
	got, ok, err := ts.Checkpoint()
	if err != nil || !ok {
		t.Fatalf("checkpoint after reopen: ok=%v err=%v", ok, err)
	}
	if !checkpointsEqual(got, cp2) {
		t.Errorf("checkpoint after reopen = %+v, want %+v", got, cp2)
	}
	want := []WindowKey{{Key: "a", Start: -10, End: 0}, {Key: "a", Start: 0, End: 10}, {Key: "b", Start: 0, End: 10}}
	if wks := scanAll(t, ts); !slices.Equal(wks, want) {
		t.Errorf("scan after reopen = %v, want %v", wks, want)
	}
	// Other partitions of the store are untouched.
	if wks := scanAll(t, db.TaskStore("windows", 4, testSpecs, 0)); len(wks) != 0 {
		t.Errorf("partition 4 holds %v", wks)
	}
}

// TestCommitKeepsLaterChange: a row changed again after Dirty was taken
// stays dirty after Commit of the earlier snapshot.
func TestCommitKeepsLaterChange(t *testing.T) {
	db := openDB(t, t.TempDir())
	defer db.Close()
	ts := db.TaskStore("windows", 0, testSpecs, 0)
	k := WindowKey{Key: "a", Start: 0, End: 10}
	ts.Put(k, testRow(1))
	changes := ts.Dirty()
	ts.Put(k, testRow(1, 2))
	if err := ts.Commit(changes, Checkpoint{}); err != nil {
		t.Fatal(err)
	}
	d := ts.Dirty()
	if len(d) != 1 || d[0].Key != k {
		t.Fatalf("dirty after committing an older snapshot = %v, want the newer row", d)
	}
	sameRow(t, "dirty row", d[0].Row, testRow(1, 2))
}

// TestWipe removes every row and the checkpoint of one task, and nothing
// of another partition, another store, or a store whose name extends it.
func TestWipe(t *testing.T) {
	db := openDB(t, t.TempDir())
	defer db.Close()
	type id struct {
		store string
		part  int32
	}
	ids := []id{{"windows", 0}, {"windows", 1}, {"windows", -1}, {"window", 0}, {"windows2", 0}, {"other", 0}}
	stores := make(map[id]*TaskStore)
	for n, x := range ids {
		ts := db.TaskStore(x.store, x.part, testSpecs, 0)
		stores[x] = ts
		for i := range 3 {
			ts.Put(WindowKey{Key: "k", Start: int64(i) * 10, End: int64(i)*10 + 10}, testRow(float64(n)))
		}
		ts.Put(WindowKey{Key: "\xff\xff", Start: math.MaxInt64, End: math.MaxInt64}, testRow(1))
		if err := ts.Commit(ts.Dirty(), Checkpoint{FlushSeq: uint64(n + 1)}); err != nil {
			t.Fatal(err)
		}
	}
	wiped := stores[id{"windows", 0}]
	wiped.Put(WindowKey{Key: "cached", Start: 0, End: 1}, testRow(1))
	if err := wiped.Wipe(); err != nil {
		t.Fatal(err)
	}
	if wks := scanAll(t, wiped); len(wks) != 0 {
		t.Errorf("wiped task still holds %v", wks)
	}
	if r, err := wiped.Get(WindowKey{Key: "k", Start: 0, End: 10}); r != nil || err != nil {
		t.Errorf("wiped task: Get = %v, %v", r, err)
	}
	if d := wiped.Dirty(); len(d) != 0 {
		t.Errorf("wiped task: dirty = %v, want an empty cache", d)
	}
	if _, ok, err := wiped.Checkpoint(); ok || err != nil {
		t.Errorf("wiped task: checkpoint ok=%v err=%v, want none", ok, err)
	}
	for n, x := range ids[1:] {
		// A fresh TaskStore reads Pebble, not the cache of the one above.
		ts := db.TaskStore(x.store, x.part, testSpecs, 0)
		if wks := scanAll(t, ts); len(wks) != 4 {
			t.Errorf("%s/%d: %d windows after wiping windows/0, want 4", x.store, x.part, len(wks))
		}
		if cp, ok, err := ts.Checkpoint(); !ok || err != nil || cp.FlushSeq != uint64(n+2) {
			t.Errorf("%s/%d: checkpoint %+v ok=%v err=%v after wiping windows/0", x.store, x.part, cp, ok, err)
		}
	}
}

// TestDirtyOrder: Dirty lists the changed rows in the byte order of their
// encoded keys (length first), whatever the order they changed in, the
// same on every call, with deletions as nil values; after a commit of
// some of them, the rest and the rows changed since are in that order
// again.
func TestDirtyOrder(t *testing.T) {
	db := openDB(t, t.TempDir())
	defer db.Close()
	ts := db.TaskStore("windows", 0, testSpecs, 0)
	var keys []WindowKey
	for _, k := range []string{"", "a", "aa", "b", "ab", "ba", "bbb"} {
		for _, s := range []int64{-20, -10, 0, 10} {
			for _, e := range []int64{s + 5, s + 10} {
				keys = append(keys, WindowKey{Key: k, Start: s, End: e})
			}
		}
	}
	byBytes := func(ks []WindowKey) []WindowKey {
		out := slices.Clone(ks)
		slices.SortFunc(out, func(a, b WindowKey) int { return bytes.Compare(a.AppendBinary(nil), b.AppendBinary(nil)) })
		return out
	}
	rng := rand.New(rand.NewPCG(2, 2))
	order := slices.Clone(keys)
	rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
	for i, k := range order {
		if i%3 == 0 {
			ts.Delete(k)
		} else {
			ts.Put(k, testRow(float64(i)))
		}
	}
	for i := len(order) - 1; i >= 0; i -= 2 { // changed again
		ts.Put(order[i], testRow(float64(-i)))
	}
	first := ts.Dirty()
	for range 10 {
		again := ts.Dirty()
		if len(again) != len(first) {
			t.Fatal("Dirty changed between calls")
		}
		for i := range again {
			if again[i].Key != first[i].Key || !bytes.Equal(again[i].Value, first[i].Value) {
				t.Fatalf("Dirty differs between calls at %d: %v vs %v", i, again[i].Key, first[i].Key)
			}
		}
	}
	keysOf := func(chs []Change) []WindowKey {
		var got []WindowKey
		for _, ch := range chs {
			got = append(got, ch.Key)
			if (ch.Row == nil) != (ch.Value == nil) {
				t.Errorf("%v: row %v with value %x", ch.Key, ch.Row, ch.Value)
			}
			if ch.Row != nil && !bytes.Equal(ch.Value, ch.Row.AppendBinary(nil)) {
				t.Errorf("%v: value is not the row's encoding", ch.Key)
			}
		}
		return got
	}
	want := byBytes(keys)
	if got := keysOf(first); !slices.Equal(got, want) {
		t.Fatalf("Dirty order:\n%v\nwant\n%v", got, want)
	}
	// Commit every other change; change one committed key again.
	var committed []Change
	var rest []WindowKey
	for i, ch := range first {
		if i%2 == 0 {
			committed = append(committed, ch)
		} else {
			rest = append(rest, ch.Key)
		}
	}
	if err := ts.Commit(committed, Checkpoint{}); err != nil {
		t.Fatal(err)
	}
	ts.Put(committed[3].Key, testRow(1))
	rest = byBytes(append(rest, committed[3].Key))
	if got := keysOf(ts.Dirty()); !slices.Equal(got, rest) {
		t.Errorf("after a commit, Dirty order:\n%v\nwant\n%v", got, rest)
	}
}

// TestCorruptRow: a row Pebble holds that does not decode is reported as
// ErrCorruptState by Get and Scan, so the task is rebuilt from its
// changelog instead of aggregating into garbage.
func TestCorruptRow(t *testing.T) {
	db := openDB(t, t.TempDir())
	defer db.Close()
	ts := db.TaskStore("windows", 0, testSpecs, 0)
	k := WindowKey{Key: "a", Start: 0, End: 10}
	if err := ts.Commit([]Change{{Key: k, Value: []byte{0xff, 0x01}}}, Checkpoint{}); err != nil {
		t.Fatal(err)
	}
	fresh := db.TaskStore("windows", 0, testSpecs, 0)
	if r, err := fresh.Get(k); !errors.Is(err, ErrCorruptState) {
		t.Errorf("Get of a corrupt row = %v, %v; want ErrCorruptState", r, err)
	}
	if err := fresh.Scan(true, func(WindowKey) error { return nil }); !errors.Is(err, ErrCorruptState) {
		t.Errorf("Scan over a corrupt row: %v; want ErrCorruptState", err)
	}
}

// TestCacheBound: after a commit, clean rows beyond maxCached are dropped
// from memory and read back from Pebble unchanged.
func TestCacheBound(t *testing.T) {
	db := openDB(t, t.TempDir())
	defer db.Close()
	ts := db.TaskStore("windows", 0, testSpecs, 2)
	var keys []WindowKey
	for i := range 5 {
		k := WindowKey{Key: "a", Start: int64(i) * 10, End: int64(i)*10 + 10}
		keys = append(keys, k)
		ts.Put(k, testRow(float64(i)))
	}
	if err := ts.Commit(ts.Dirty(), Checkpoint{}); err != nil {
		t.Fatal(err)
	}
	if n := len(ts.cache); n > 2 {
		t.Errorf("%d rows cached after commit, bound 2", n)
	}
	for i, k := range keys {
		r, err := ts.Get(k)
		if err != nil {
			t.Fatal(err)
		}
		sameRow(t, "after eviction", r, testRow(float64(i)))
	}
}

// TestAuxEntries: aux entries (alert state) are committed with the rows,
// under their own key kind: scanned back by ScanAux only (Scan skips
// them), deleted by DeleteAux and Wipe, and a value changed after Dirty
// stays dirty. Their changes follow the windows' and have a changelog key
// of their own.
func TestAuxEntries(t *testing.T) {
	dir := t.TempDir()
	db := openDB(t, dir)
	ts := db.TaskStore("windows", 1, testSpecs, 0)
	row := NewRow(testSpecs)
	row.Add(0, 1)
	wk := WindowKey{Key: `["a"]`, Start: 0, End: 10}
	idA, idB := "rule\x00"+`["a"]`, "rule\x00"+`["b"]`
	ts.Put(wk, row)
	ts.PutAux(idB, []byte(`{"s":"pending"}`))
	ts.PutAux(idA, []byte(`{"s":"firing"}`))
	changes := ts.Dirty()
	if len(changes) != 3 || changes[0].Aux || !changes[1].Aux || !changes[2].Aux ||
		changes[1].AuxID != idA || changes[2].AuxID != idB {
		t.Fatalf("dirty: %+v, want the row, then the aux changes of a and b", changes)
	}
	if got, want := changes[1].AppendKey(nil), append([]byte{0xfe, 1}, idA...); !bytes.Equal(got, want) {
		t.Errorf("aux changelog key %x, want %x (kind, version, id)", got, want)
	}
	if got, want := changes[0].AppendKey(nil), wk.AppendBinary(nil); !bytes.Equal(got, want) {
		t.Errorf("window changelog key %x, want the window key %x", got, want)
	}
	ts.PutAux(idB, []byte(`{"s":"firing"}`)) // after Dirty: stays dirty
	if err := ts.Commit(changes, Checkpoint{ChangelogNext: 3}); err != nil {
		t.Fatal(err)
	}
	if d := ts.Dirty(); len(d) != 1 || string(d[0].Value) != `{"s":"firing"}` {
		t.Errorf("after commit, dirty %+v; want the later change of b", d)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openDB(t, dir)
	defer db.Close()
	ts = db.TaskStore("windows", 1, testSpecs, 0)
	if got := scanAll(t, ts); len(got) != 1 || got[0] != wk {
		t.Errorf("Scan: %v, want only the window", got)
	}
	if got, want := scanAux(t, ts), map[string]string{idA: `{"s":"firing"}`, idB: `{"s":"pending"}`}; !maps.Equal(got, want) {
		t.Errorf("ScanAux: %q, want %q", got, want)
	}
	if d := ts.Dirty(); len(d) != 0 {
		t.Errorf("ScanAux of entries in the current form queued %+v", d)
	}
	// The aux entries are under their own prefix, not among the rows.
	if n := countPrefix(t, db, ts.rowPrefix); n != 1 {
		t.Errorf("%d keys under the rows' prefix, want 1 (the window)", n)
	}
	if n := countPrefix(t, db, ts.auxPrefix); n != 2 {
		t.Errorf("%d keys under the aux prefix, want 2", n)
	}
	ts.DeleteAux(idA)
	if err := ts.Commit(ts.Dirty(), Checkpoint{ChangelogNext: 4}); err != nil {
		t.Fatal(err)
	}
	if got := scanAux(t, ts); len(got) != 1 || got[idB] == "" {
		t.Errorf("after DeleteAux: %q, want only b", got)
	}
	if err := ts.Wipe(); err != nil {
		t.Fatal(err)
	}
	if got := scanAux(t, ts); len(got) != 0 {
		t.Errorf("after Wipe: %q, want no aux entries", got)
	}
}

// scanAux reads every aux entry of ts.
func scanAux(t *testing.T, ts *TaskStore) map[string]string {
	t.Helper()
	got := map[string]string{}
	if err := ts.ScanAux(func(id string, v []byte) error { got[id] = string(v); return nil }); err != nil {
		t.Fatal(err)
	}
	return got
}

// countPrefix counts the keys of db under p.
func countPrefix(t *testing.T, db *DB, p []byte) int {
	t.Helper()
	it, err := db.pdb.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	n := 0
	for it.First(); it.Valid(); it.Next() {
		n++
	}
	return n
}

// legacyAuxKey builds by hand the changelog key an eddy before aux key
// kinds wrote for aux id: a window key (key length, key, start, end) whose
// key is 0x00 followed by the id, with start and end 0 (sign bit flipped).
func legacyAuxKey(id string) []byte {
	k := "\x00" + id
	b := []byte{byte(len(k) >> 8), byte(len(k))}
	b = append(b, k...)
	zero := []byte{0x80, 0, 0, 0, 0, 0, 0, 0}
	b = append(b, zero...)
	return append(b, zero...)
}

// TestChangelogKeyKinds: the three kinds of changelog keys cannot be
// confused: every window key (any key length up to MaxKeyLen) begins with
// a byte of at most 0x80, aux keys with 0xfe, the commit marker with
// 0xff; CheckChangelogKey accepts window keys, aux keys (of the known
// version) and the legacy form, and rejects the rest.
func TestChangelogKeyKinds(t *testing.T) {
	aux := Change{Aux: true, AuxID: "r\x00[\"k\"]"}.AppendKey(nil)
	marker := MarkerKey()
	for _, n := range []int{0, 1, 0xff, 0x100, 0x7fff, MaxKeyLen} {
		w := Change{Key: WindowKey{Key: strings.Repeat("k", n), Start: 5, End: 6}}.AppendKey(nil)
		if w[0] > 0x80 || w[0] == aux[0] || w[0] == marker[0] {
			t.Errorf("window key of a %d-byte key begins with %#x", n, w[0])
		}
		if err := CheckChangelogKey(w); err != nil {
			t.Errorf("window key of a %d-byte key: %v", n, err)
		}
	}
	if aux[0] != 0xfe || aux[1] != 1 || IsMarkerKey(aux) || CheckChangelogKey(aux) != nil {
		t.Errorf("aux key %x: want 0xfe, version 1, accepted, not a marker", aux)
	}
	if err := CheckChangelogKey(legacyAuxKey("r\x00[\"k\"]")); err != nil {
		t.Errorf("legacy aux key: %v", err)
	}
	for _, bad := range [][]byte{{0xfe}, {0xfe, 2, 'x'}, {0, 5, 'a'}, nil} {
		if err := CheckChangelogKey(bad); !errors.Is(err, ErrCorruptState) {
			t.Errorf("CheckChangelogKey(%x) = %v, want ErrCorruptState", bad, err)
		}
	}
	// A legacy tombstone's key is the old form, byte for byte.
	if got, want := (Change{Aux: true, AuxID: "r\x00[\"k\"]", legacy: true}).AppendKey(nil), legacyAuxKey("r\x00[\"k\"]"); !bytes.Equal(got, want) {
		t.Errorf("legacy tombstone key %x, want %x", got, want)
	}
	// A window whose key merely begins with 0x00 but is not at [0,0] is a
	// window, not legacy aux state.
	if k, _ := changelogKeyKind(WindowKey{Key: "\x00x", Start: 0, End: 10}.AppendBinary(nil)); k != kindWindow {
		t.Errorf("a window at [0,10] read as kind %d", k)
	}
}

// TestRestoreLegacyAuxChangelog: a changelog written by an eddy before
// aux key kinds (alert state as window keys beginning with 0x00, built
// here by hand) restores into aux entries, through batches and through
// ingestion alike, and window scans never see them. The next flush
// tombstones the old keys before writing the entries in the new form, so
// restoring the whole resulting log again, and the log as compaction
// leaves it (the newest record of each key), gives the same entries,
// also after a later deletion written in the new form: a deleted entry
// does not come back from its old key.
func TestRestoreLegacyAuxChangelog(t *testing.T) {
	for _, filler := range []int{0, ingestMinRecords} { // batch, then ingestion
		t.Run(fmt.Sprintf("filler=%d", filler), func(t *testing.T) {
			db := openDB(t, t.TempDir())
			defer db.Close()
			ts := db.TaskStore("windows", 0, testSpecs, 0)
			idA, idB, idC := "late\x00"+`["a"]`, "late\x00"+`["b"]`, "dev\x00"+`["a"]`+"\x00"+"7"
			type rec struct{ k, v []byte }
			var log []rec
			wk := WindowKey{Key: `["a"]`, Start: 0, End: 10}
			rowV := testRow(1).AppendBinary(nil)
			log = append(log,
				rec{legacyAuxKey(idA), []byte(`{"s":"pending"}`)},
				rec{wk.AppendBinary(nil), rowV},
				rec{legacyAuxKey(idB), []byte(`{"s":"firing"}`)},
				rec{legacyAuxKey(idC), []byte(`{"n":1}`)},
				rec{legacyAuxKey(idA), []byte(`{"s":"firing"}`)}, // overwrites
				rec{legacyAuxKey(idC), nil},                      // deleted by the old eddy
			)
			for i := range filler {
				k := WindowKey{Key: fmt.Sprintf(`["f%06d"]`, i), Start: 0, End: 10}
				log = append(log, rec{k.AppendBinary(nil), rowV})
			}
			restore := func(ts *TaskStore, log []rec) {
				t.Helper()
				var keys, values [][]byte
				for _, r := range log {
					keys, values = append(keys, r.k), append(values, r.v)
				}
				if err := ts.Wipe(); err != nil {
					t.Fatal(err)
				}
				if err := ts.ApplyRestored(keys, values, Checkpoint{ChangelogNext: int64(len(log))}, true); err != nil {
					t.Fatal(err)
				}
			}
			restore(ts, log)
			// The expected entries: the log applied in order by a plain loop.
			want := map[string]string{}
			for _, r := range log {
				if len(r.k) < 3 || r.k[2] != 0 {
					continue
				}
				id := string(r.k[3 : len(r.k)-16])
				if r.v == nil {
					delete(want, id)
				} else {
					want[id] = string(r.v)
				}
			}
			if got := scanAux(t, ts); !maps.Equal(got, want) {
				t.Fatalf("restored aux entries %q, want %q", got, want)
			}
			if got := scanAll(t, ts); len(got) != 1+filler {
				t.Errorf("Scan: %d windows, want %d (no aux entry among them)", len(got), 1+filler)
			}
			// The flush after ScanAux: for each id restored from the old
			// form, its old key's tombstone, then its new-form record.
			changes := ts.Dirty()
			var flushed []rec
			for _, ch := range changes {
				flushed = append(flushed, rec{ch.AppendKey(nil), ch.Value})
			}
			wantFlush := []rec{
				{legacyAuxKey(idA), nil}, {append([]byte{0xfe, 1}, idA...), []byte(want[idA])},
				{legacyAuxKey(idB), nil}, {append([]byte{0xfe, 1}, idB...), []byte(want[idB])},
			}
			if len(flushed) != len(wantFlush) {
				t.Fatalf("flush after restore: %d records %q, want %d", len(flushed), flushed, len(wantFlush))
			}
			for i := range wantFlush {
				if !bytes.Equal(flushed[i].k, wantFlush[i].k) || !bytes.Equal(flushed[i].v, wantFlush[i].v) || (flushed[i].v == nil) != (wantFlush[i].v == nil) {
					t.Errorf("flush record %d: %x=%q, want %x=%q", i, flushed[i].k, flushed[i].v, wantFlush[i].k, wantFlush[i].v)
				}
			}
			if err := ts.Commit(changes, Checkpoint{ChangelogNext: int64(len(log) + len(flushed))}); err != nil {
				t.Fatal(err)
			}
			log = append(log, flushed...)
			_ = scanAux(t, ts)
			if d := ts.Dirty(); len(d) != 0 {
				t.Errorf("after the migrating flush committed, ScanAux queued %+v", d)
			}
			if n := countPrefix(t, db, ts.legacyPrefix); n != 0 {
				t.Errorf("%d legacy marks left after the migrating flush", n)
			}
			// A later deletion, in the new form.
			ts.DeleteAux(idA)
			for _, ch := range ts.Dirty() {
				log = append(log, rec{ch.AppendKey(nil), ch.Value})
			}
			delete(want, idA)
			compacted := func(log []rec) []rec {
				last := map[string]int{}
				for i, r := range log {
					last[string(r.k)] = i
				}
				var out []rec
				for i, r := range log {
					if last[string(r.k)] == i {
						out = append(out, r)
					}
				}
				return out
			}
			for name, l := range map[string][]rec{"whole log": log, "compacted": compacted(log)} {
				ts2 := db.TaskStore("windows", 1, testSpecs, 0)
				restore(ts2, l)
				if got := scanAux(t, ts2); !maps.Equal(got, want) {
					t.Errorf("%s restored again: %q, want %q", name, got, want)
				}
				// Compaction then drops the tombstones it kept: nothing of
				// idA remains.
				var live []rec
				for _, r := range compacted(l) {
					if r.v != nil {
						live = append(live, r)
					}
				}
				ts3 := db.TaskStore("windows", 2, testSpecs, 0)
				restore(ts3, live)
				if got := scanAux(t, ts3); !maps.Equal(got, want) {
					t.Errorf("%s without tombstones restored again: %q, want %q", name, got, want)
				}
			}
		})
	}
}

// TestOpenMigratesLegacyAuxRows: a state directory written by an eddy
// before aux key kinds (aux entries as window rows whose key begins with
// 0x00, written here by hand under the rows' prefix, and no layout key)
// is migrated when opened: the entries are aux entries (ScanAux finds
// them, Scan and the rows' prefix no longer hold them), the windows are
// untouched, and the first flush tombstones their old changelog keys. An
// entry moved already by a migration that crashed part way (an aux entry
// with its legacy mark, and no layout key yet) is kept as it is.
func TestOpenMigratesLegacyAuxRows(t *testing.T) {
	dir := t.TempDir()
	db := openDB(t, dir)
	ts := db.TaskStore("windows", 4, testSpecs, 0)
	wk := WindowKey{Key: `["a"]`, Start: 0, End: 10}
	ts.Put(wk, testRow(1))
	if err := ts.Commit(ts.Dirty(), Checkpoint{ChangelogNext: 9}); err != nil {
		t.Fatal(err)
	}
	ids := map[string]string{"r\x00" + `["a"]`: `{"s":"firing"}`, "r\x00" + `["b"]`: `{"s":"pending"}`}
	b := db.pdb.NewBatch()
	for id, v := range ids {
		_ = b.Set(append(slices.Clone(ts.rowPrefix), legacyAuxKey(id)...), []byte(v), nil)
	}
	// another task's legacy row, with more than one migration batch
	other := db.TaskStore("windows", 5, testSpecs, 0)
	otherIDs := map[string]string{}
	for i := range 5000 {
		id := fmt.Sprintf("r\x00[\"k%05d\"]", i)
		otherIDs[id] = fmt.Sprint(i)
		_ = b.Set(append(slices.Clone(other.rowPrefix), legacyAuxKey(id)...), []byte(otherIDs[id]), nil)
	}
	// moved by an earlier, interrupted migration
	moved := "r\x00" + `["c"]`
	ids[moved] = `{"s":"resolved"}`
	_ = b.Set(append(slices.Clone(ts.auxPrefix), moved...), []byte(ids[moved]), nil)
	_ = b.Set(append(slices.Clone(ts.legacyPrefix), moved...), nil, nil)
	_ = b.Delete(layoutKey, nil)
	if err := b.Commit(nil); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	db = openDB(t, dir)
	defer db.Close()
	ts = db.TaskStore("windows", 4, testSpecs, 0)
	if got := scanAll(t, ts); len(got) != 1 || got[0] != wk {
		t.Errorf("Scan after migration: %v, want only the window", got)
	}
	if n := countPrefix(t, db, ts.rowPrefix); n != 1 {
		t.Errorf("%d keys under the rows' prefix, want 1", n)
	}
	if got := scanAux(t, ts); !maps.Equal(got, ids) {
		t.Errorf("ScanAux after migration: %q, want %q", got, ids)
	}
	if got := scanAux(t, db.TaskStore("windows", 5, testSpecs, 0)); !maps.Equal(got, otherIDs) {
		t.Errorf("ScanAux of the other task: %d entries, want %d", len(got), len(otherIDs))
	}
	if cp, ok, err := ts.Checkpoint(); err != nil || !ok || cp.ChangelogNext != 9 {
		t.Errorf("checkpoint after migration %+v %v %v, want it unchanged", cp, ok, err)
	}
	var legacy, rewrites int
	for _, ch := range ts.Dirty() {
		if ch.legacy && bytes.Equal(ch.AppendKey(nil), legacyAuxKey(ch.AuxID)) && ch.Value == nil {
			legacy++
		} else if ch.Aux && string(ch.Value) == ids[ch.AuxID] {
			rewrites++
		}
	}
	if legacy != len(ids) || rewrites != len(ids) {
		t.Errorf("first flush: %d legacy tombstones and %d rewrites, want %d of each", legacy, rewrites, len(ids))
	}
	// The layout is recorded: opening again migrates nothing more.
	v, closer, err := db.pdb.Get(layoutKey)
	if err != nil || len(v) != 1 || v[0] != layoutVersion {
		t.Errorf("layout key %x, %v; want %d", v, err, layoutVersion)
	}
	if err == nil {
		_ = closer.Close()
	}
}

// TestCommitSurvivesMachineCrash: commits are not fsynced (Batch.Commit),
// so a machine crash may lose the last ones. Whatever survives must be a
// whole prefix of the commits: every surviving checkpoint comes with
// exactly the rows of its commit (restore then replays the changelog tail
// after it), or the state does not open and is rebuilt from the
// changelog. Never some rows of a commit without the others.
func TestCommitSurvivesMachineCrash(t *testing.T) {
	const commits = 40
	fs := vfs.NewCrashableMem()
	db, err := openFS("state", fs)
	if err != nil {
		t.Fatal(err)
	}
	ts := db.TaskStore("windows", 0, testSpecs, 0)
	// Commit i sets window w (for w < 20) to count i+1 and changes 50
	// windows in all, so a torn commit would show as mixed counts.
	want := make([]map[WindowKey]float64, commits+1)
	want[0] = map[WindowKey]float64{}
	for i := range commits {
		want[i+1] = maps.Clone(want[i])
		for w := range 50 {
			wk := WindowKey{Key: fmt.Sprintf(`["k%02d"]`, (i*7+w)%60), Start: 0, End: 10}
			r, err := ts.Get(wk)
			if err != nil {
				t.Fatal(err)
			}
			if r == nil {
				r = NewRow(testSpecs)
			}
			r.Add(0, 1)
			ts.Put(wk, r)
			v, _ := r.Value(0)
			want[i+1][wk] = v
		}
		b := db.NewBatch()
		ts.Stage(b, ts.Dirty(), Checkpoint{ChangelogNext: int64(i + 1)})
		if err := b.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	opened, prefixes := 0, map[int64]bool{}
	for trial := range 30 {
		crashed := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: []int{0, 30, 70, 100}[trial%4], RNG: rand.New(rand.NewPCG(uint64(trial), 9))})
		cdb, err := openFS("state", crashed)
		if err != nil {
			if !errors.Is(err, ErrCorruptState) {
				t.Fatalf("trial %d: open after crash: %v", trial, err)
			}
			continue // the app rebuilds this state from the changelog
		}
		opened++
		cts := cdb.TaskStore("windows", 0, testSpecs, 0)
		cp, ok, err := cts.Checkpoint()
		if err != nil {
			t.Fatal(err)
		}
		n := int64(0)
		if ok {
			n = cp.ChangelogNext
		}
		prefixes[n] = true
		got := map[WindowKey]float64{}
		if err := cts.Scan(true, func(wk WindowKey) error {
			r, err := cts.Get(wk)
			if err != nil {
				return err
			}
			got[wk], _ = r.Value(0)
			return nil
		}); err != nil {
			t.Fatalf("trial %d: %v", trial, err)
		}
		if !maps.Equal(got, want[n]) {
			t.Fatalf("trial %d: after a crash the checkpoint says commit %d, but the rows are not that commit's", trial, n)
		}
		cdb.Close()
	}
	db.Close()
	t.Logf("%d of 30 crash images opened; surviving prefixes %v", opened, slices.Sorted(maps.Keys(prefixes)))
	if opened == 0 {
		t.Error("no crash image opened: the test checked nothing")
	}
}

// TestProcessID: a state directory keeps its process id across reopening
// and wiping tasks; another directory has another.
func TestProcessID(t *testing.T) {
	dir := t.TempDir()
	db := openDB(t, dir)
	id, err := db.ProcessID()
	if err != nil || len(id) != 16 {
		t.Fatalf("ProcessID = %q, %v", id, err)
	}
	ts := db.TaskStore("windows", 0, testSpecs, 0)
	ts.Put(WindowKey{Key: "k", Start: 0, End: 10}, testRow(1))
	if err := ts.Commit(ts.Dirty(), Checkpoint{FlushSeq: 1}); err != nil {
		t.Fatal(err)
	}
	if err := ts.Wipe(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openDB(t, dir)
	defer db.Close()
	if again, err := db.ProcessID(); again != id || err != nil {
		t.Errorf("after reopening: ProcessID = %q, %v, want %q", again, err, id)
	}
	other := openDB(t, t.TempDir())
	defer other.Close()
	if o, err := other.ProcessID(); o == id || err != nil {
		t.Errorf("another directory: ProcessID = %q, %v, want an id other than %q", o, err, id)
	}
}

// TestDirtyListModel: random puts, deletes, reads, commits of earlier
// snapshots and uncommitted snapshots, with a small cache (evictions):
// Dirty lists exactly the keys changed since the snapshot that last
// committed them, each once, with its latest row (checked against a model
// kept in the test).
func TestDirtyListModel(t *testing.T) {
	db := openDB(t, t.TempDir())
	defer db.Close()
	ts := db.TaskStore("windows", 0, testSpecs, 8)
	rng := rand.New(rand.NewPCG(3, 4))
	keys := make([]WindowKey, 30)
	for i := range keys {
		keys[i] = WindowKey{Key: fmt.Sprintf("k%02d", i), Start: 0, End: 10}
	}
	version := map[WindowKey]int{} // changes of each key
	clean := map[WindowKey]int{}   // the version the last commit wrote
	latest := map[WindowKey]*Row{}
	for step := range 3000 {
		k := keys[rng.IntN(len(keys))]
		switch op := rng.IntN(10); {
		case op < 5:
			r := testRow(float64(step))
			ts.Put(k, r)
			version[k]++
			latest[k] = r
		case op < 6:
			ts.Delete(k)
			version[k]++
			latest[k] = nil
		case op < 7:
			if _, err := ts.Get(k); err != nil {
				t.Fatal(err)
			}
		default:
			snap := ts.Dirty()
			at := map[WindowKey]int{}
			for _, ch := range snap {
				at[ch.Key] = version[ch.Key]
			}
			// Sometimes a row changes between the snapshot and its commit,
			// sometimes the snapshot is not committed at all.
			if rng.IntN(3) == 0 {
				k2 := keys[rng.IntN(len(keys))]
				r := testRow(float64(-step))
				ts.Put(k2, r)
				version[k2]++
				latest[k2] = r
			}
			if rng.IntN(4) == 0 {
				continue
			}
			if err := ts.Commit(snap, Checkpoint{FlushSeq: uint64(step)}); err != nil {
				t.Fatal(err)
			}
			for k, v := range at {
				if version[k] == v {
					clean[k] = v
				}
			}
		}
		if step%50 != 0 {
			continue
		}
		d := ts.Dirty()
		seen := map[WindowKey]bool{}
		for _, ch := range d {
			if seen[ch.Key] {
				t.Fatalf("step %d: %v listed twice", step, ch.Key)
			}
			seen[ch.Key] = true
			if version[ch.Key] == clean[ch.Key] {
				t.Fatalf("step %d: %v listed dirty, but its version %d was committed", step, ch.Key, clean[ch.Key])
			}
			if (ch.Row == nil) != (latest[ch.Key] == nil) {
				t.Fatalf("step %d: %v dirty row %v, want %v", step, ch.Key, ch.Row, latest[ch.Key])
			}
		}
		for _, k := range keys {
			if version[k] != clean[k] && !seen[k] {
				t.Fatalf("step %d: %v changed (version %d, committed %d) but not listed dirty", step, k, version[k], clean[k])
			}
		}
	}
}

// TestDeleteUnlogged: a row made by PutNew and deleted before any Dirty
// took it leaves nothing to write; once a Dirty has taken it (its commit
// may be on its way to the changelog, done or not), its delete is a
// tombstone; a key whose tombstone is pending stays logged through
// PutNew.
func TestDeleteUnlogged(t *testing.T) {
	db := openDB(t, t.TempDir())
	defer db.Close()
	ts := db.TaskStore("windows", 0, testSpecs, 0)
	a := WindowKey{Key: "a", Start: 0, End: 10}
	b := WindowKey{Key: "b", Start: 0, End: 10}
	ts.PutNew(a, testRow(1))
	ts.PutNew(b, testRow(2))
	ts.Delete(a)
	d := ts.Dirty()
	if len(d) != 1 || d[0].Key != b || d[0].Row == nil {
		t.Fatalf("dirty after PutNew a, PutNew b, Delete a = %v, want b's row only", d)
	}
	// b was taken by that Dirty (not yet committed): its delete is logged.
	ts.Delete(b)
	if err := ts.Commit(d, Checkpoint{}); err != nil {
		t.Fatal(err)
	}
	if d := ts.Dirty(); len(d) != 1 || d[0].Key != b || d[0].Row != nil {
		t.Fatalf("dirty after deleting a row a Dirty took = %v, want b's tombstone", d)
	}
	// b's tombstone pending; PutNew again then Delete: still a tombstone.
	ts.PutNew(b, testRow(3))
	ts.Delete(b)
	if d := ts.Dirty(); len(d) != 1 || d[0].Key != b || d[0].Row != nil {
		t.Fatalf("dirty after PutNew and Delete over a pending tombstone = %v, want b's tombstone", d)
	}
	// Put (not known new) then Delete: a tombstone, as before.
	c := WindowKey{Key: "c", Start: 0, End: 10}
	ts.Put(c, testRow(4))
	ts.Delete(c)
	var keys []WindowKey
	for _, ch := range ts.Dirty() {
		keys = append(keys, ch.Key)
	}
	if !slices.Equal(keys, []WindowKey{b, c}) {
		t.Fatalf("dirty keys %v, want [b c] (tombstones)", keys)
	}
}

// TestUnloggedChangelogModel: random changes as the engine makes them
// (PutNew for a key with no row, Put otherwise, Delete), snapshots
// (Dirty) appended to a changelog kept in the test whether or not they
// commit, with a small cache. After every snapshot, replaying that
// changelog (last record of a key wins, tombstones delete) gives exactly
// the rows the store held when the snapshot was taken: dropping unlogged
// windows never loses a tombstone or a row.
func TestUnloggedChangelogModel(t *testing.T) {
	db := openDB(t, t.TempDir())
	defer db.Close()
	ts := db.TaskStore("windows", 0, testSpecs, 8)
	rng := rand.New(rand.NewPCG(5, 6))
	keys := make([]WindowKey, 40)
	for i := range keys {
		keys[i] = WindowKey{Key: fmt.Sprintf("k%02d", i), Start: 0, End: 10}
	}
	latest := map[WindowKey]*Row{}   // the store's rows, as the test made them
	logged := map[WindowKey][]byte{} // the changelog replayed
	records, dropped := 0, 0
	for step := range 5000 {
		k := keys[rng.IntN(len(keys))]
		switch op := rng.IntN(10); {
		case op < 5:
			r := testRow(float64(step))
			if latest[k] == nil {
				ts.PutNew(k, r)
			} else {
				ts.Put(k, r)
			}
			latest[k] = r
		case op < 8:
			if latest[k] != nil {
				ts.Delete(k)
				latest[k] = nil
			}
		default:
			snap := ts.Dirty()
			for _, ch := range snap {
				records++
				if ch.Value == nil {
					delete(logged, ch.Key)
				} else {
					logged[ch.Key] = ch.Value
				}
			}
			for _, k := range keys {
				want := latest[k]
				got, ok := logged[k]
				switch {
				case want == nil && ok:
					t.Fatalf("step %d: the changelog restores %v, deleted in the store", step, k)
				case want != nil && !ok:
					t.Fatalf("step %d: the changelog lacks %v", step, k)
				case want != nil && !bytes.Equal(got, want.AppendBinary(nil)):
					t.Fatalf("step %d: the changelog restores an old row of %v", step, k)
				}
			}
			if rng.IntN(4) != 0 {
				if err := ts.Commit(snap, Checkpoint{FlushSeq: uint64(step)}); err != nil {
					t.Fatal(err)
				}
			} else {
				dropped++
			}
		}
	}
	t.Logf("%d changelog records, %d snapshots not committed", records, dropped)
}

// BenchmarkDirtyFewOfMany: a commit's Dirty when 1,000 of 100,000 cached
// rows changed since the last one (the dirty list reads the 1,000).
func BenchmarkDirtyFewOfMany(b *testing.B) {
	db := openDB(b, b.TempDir())
	defer db.Close()
	ts := db.TaskStore("windows", 0, testSpecs, 200_000)
	for i := range 100_000 {
		ts.Put(WindowKey{Key: fmt.Sprintf("k%06d", i), End: 10}, testRow(float64(i)))
	}
	if err := ts.Commit(ts.Dirty(), Checkpoint{}); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for n := range b.N {
		for i := range 1000 {
			ts.Put(WindowKey{Key: fmt.Sprintf("k%06d", (n*1000+i)%100_000), End: 10}, testRow(float64(n)))
		}
		ch := ts.Dirty()
		ts.markClean(ch)
	}
}
