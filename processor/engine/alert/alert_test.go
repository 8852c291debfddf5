package alert

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/eddy-streams/eddy/topology"
)

// TestMain fails the package's tests if any of them leaves a goroutine
// running (STYLE.md: every test checks for leaked goroutines).
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// mapStore is a Store in memory.
type mapStore map[string][]byte

func (m mapStore) PutAux(id string, v []byte) { m[id] = append([]byte(nil), v...) }
func (m mapStore) DeleteAux(id string)        { delete(m, id) }
func (m mapStore) ScanAux(fn func(id string, v []byte) error) error {
	for id, v := range m {
		if err := fn(id, v); err != nil {
			return err
		}
	}
	return nil
}

// The rules run on their own, without a task: an absence rule fires when
// stream time passes the key's last record plus "for", its state survives
// Flush and Load, and a record of the key resolves it.
func TestAbsenceThroughInterface(t *testing.T) {
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
	st := rules.NewState()
	const t0 = 1_700_000_000_000
	if tr := st.OnRecord(nil, `["x"]`, t0, t0); len(tr) != 0 {
		t.Fatalf("first record: %v", tr)
	}
	if !st.Dirty() {
		t.Fatal("a new key's state is not dirty")
	}
	if tr := st.Tick(nil, t0+19_999); len(tr) != 0 {
		t.Fatalf("before for: %v", tr)
	}
	tr := st.Tick(nil, t0+25_000)
	if len(tr) != 1 || tr[0].Alert.State != "firing" || tr[0].At != t0+20_000 || tr[0].Key != `["x"]` {
		t.Fatalf("after for: %+v, want one firing at t0+20s", tr)
	}
	store := mapStore{}
	st.Flush(store)
	if st.Dirty() || len(store) != 1 {
		t.Fatalf("after Flush: dirty %v, %d entries stored", st.Dirty(), len(store))
	}
	again := rules.NewState()
	if err := again.Load(store); err != nil {
		t.Fatal(err)
	}
	if f := again.Firing(); len(f) != 1 || f[0].Rule != "quiet" {
		t.Fatalf("loaded firing alerts %+v", f)
	}
	tr = again.OnRecord(nil, `["x"]`, t0+30_000, t0+30_000)
	if len(tr) != 1 || tr[0].Alert.State != "resolved" {
		t.Fatalf("record after silence: %+v, want resolved", tr)
	}
}
