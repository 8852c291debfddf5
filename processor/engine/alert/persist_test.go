package alert

import (
	"bytes"
	"testing"

	"github.com/eddy-streams/eddy/state"
	"github.com/eddy-streams/eddy/topology"
)

// legacyAuxKey builds by hand the changelog key an eddy before aux key
// kinds wrote for alert state: a window key (key length, key, start,
// end) whose key is 0x00, the rule, 0x00, the grouping key; start and end
// 0 with their sign bit flipped.
func legacyAuxKey(rule, key string) []byte {
	k := "\x00" + rule + "\x00" + key
	b := []byte{byte(len(k) >> 8), byte(len(k))}
	b = append(b, k...)
	zero := []byte{0x80, 0, 0, 0, 0, 0, 0, 0}
	b = append(b, zero...)
	return append(b, zero...)
}

// Alert state restored from a changelog an older eddy wrote (built here
// by hand: the old key form, the JSON value it stored) loads into a
// State on a real task store: the firing alert is firing, and a record of
// its key resolves it. The flush that follows writes the state under the
// aux key kind and no longer as a window: restored again, it is the same.
func TestLoadLegacyAlertState(t *testing.T) {
	spec, err := topology.Parse([]byte(`app: a
source: {topics: [in]}
key: [k]
window: {type: tumbling, size: 10s}
aggregates:
  - {name: n, op: count}
output: {topic: out}
alerts:
  rules:
    - {name: quiet, kind: absence, for: 20s}
`))
	if err != nil {
		t.Fatal(err)
	}
	rules, err := New(spec, spec.Window.Rule())
	if err != nil {
		t.Fatal(err)
	}
	db, err := state.OpenMem()
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	const t0 = 1_700_000_000_000
	old := []byte(`{"s":"firing","since":1700000020000,"n":1700000020000,"seen":1700000000000}`)
	keys := [][]byte{legacyAuxKey("quiet", `["x"]`)}
	values := [][]byte{old}
	ts := db.TaskStore("windows", 0, nil, 0)
	if err := ts.ApplyRestored(keys, values, state.Checkpoint{ChangelogNext: 2, StreamTime: t0 + 25_000}, true); err != nil {
		t.Fatal(err)
	}
	st := rules.NewState()
	if err := st.Load(ts); err != nil {
		t.Fatal(err)
	}
	if f := st.Firing(); len(f) != 1 || f[0].Rule != "quiet" {
		t.Fatalf("firing after loading the legacy state: %+v, want the quiet alert", f)
	}
	// The next flush: the old key's tombstone, then the state in the new
	// form (not a window key: it begins with the aux kind byte).
	changes := ts.Dirty()
	if len(changes) != 2 || changes[0].Value != nil || !bytes.Equal(changes[0].AppendKey(nil), keys[0]) ||
		changes[1].AppendKey(nil)[0] != 0xfe || !bytes.Equal(changes[1].Value, old) {
		t.Fatalf("flush after the legacy load: %+v", changes)
	}
	var logK, logV [][]byte
	logK, logV = append(logK, keys[0]), append(logV, old)
	for _, ch := range changes {
		logK, logV = append(logK, ch.AppendKey(nil)), append(logV, ch.Value)
	}
	if err := ts.Commit(changes, state.Checkpoint{ChangelogNext: 5}); err != nil {
		t.Fatal(err)
	}
	// Restored again from the whole log into another task: the same alert.
	ts2 := db.TaskStore("windows", 1, nil, 0)
	if err := ts2.ApplyRestored(logK, logV, state.Checkpoint{ChangelogNext: 5}, true); err != nil {
		t.Fatal(err)
	}
	again := rules.NewState()
	if err := again.Load(ts2); err != nil {
		t.Fatal(err)
	}
	if f := again.Firing(); len(f) != 1 || f[0].Rule != "quiet" {
		t.Fatalf("firing after restoring the migrated log: %+v", f)
	}
	if d := ts2.Dirty(); len(d) != 0 {
		t.Errorf("state in the new form queued %+v when loaded", d)
	}
	tr := again.OnRecord(nil, `["x"]`, t0+30_000, t0+30_000)
	if len(tr) != 1 || tr[0].Alert.State != "resolved" {
		t.Fatalf("record after silence: %+v, want resolved", tr)
	}
}
