package engine

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestRebuildFromRestoredKeys: after a restore from scratch, the index
// built from the keys the restore recorded (no scan of Pebble) is the
// index a scan builds, for tumbling, hopping and session windows (whose
// merges delete rows in the log), and the two tasks then close the same
// windows with the same results.
func TestRebuildFromRestoredKeys(t *testing.T) {
	for _, win := range []string{
		"{type: tumbling, size: 10s, grace: 5s}",
		"{type: hopping, size: 20s, advance: 10s, grace: 5s}",
		"{type: session, gap: 4s, grace: 5s}",
	} {
		t.Run(win, func(t *testing.T) {
			spec := `app: t
source: {topics: [in]}
key: [k]
window: ` + win + `
aggregates:
  - {name: requests, op: count}
  - {name: total, op: sum, field: v}
output: {topic: out}
`
			h := mustHarness(t, spec)
			// The changelog: every commit's changes, in order.
			var keys, values [][]byte
			rng := rand.New(rand.NewPCG(3, 4))
			ts := int64(1_000_000)
			for i := range 3000 {
				ts += int64(rng.IntN(40))
				if err := h.record(map[string]any{"k": fmt.Sprintf("k%d", rng.IntN(150)), "v": float64(i)}, ts-int64(rng.IntN(3000))); err != nil {
					t.Fatal(err)
				}
				if i%100 == 99 {
					changes, ok, err := h.t.Flush(&h.fx)
					if err != nil || !ok {
						t.Fatalf("flush: %v, %v", ok, err)
					}
					for _, ch := range changes {
						keys, values = append(keys, ch.AppendKey(nil)), append(values, ch.Value)
					}
					if err := h.t.store.Commit(changes, h.t.Checkpoint()); err != nil {
						t.Fatal(err)
					}
					h.t.Flushed()
				}
			}
			cp := h.t.Checkpoint()
			restored := func(record bool) *harness {
				r := mustHarness(t, spec)
				ts := r.t.store
				if record {
					ts.RecordRestored()
				}
				if err := ts.Wipe(); err != nil {
					t.Fatal(err)
				}
				if err := ts.ApplyRestored(keys, values, cp, true); err != nil {
					t.Fatal(err)
				}
				r.t, r.off = NewTask(r.p, ts, cp, r.now), h.off
				if err := r.t.Rebuild(false); err != nil {
					t.Fatal(err)
				}
				return r
			}
			fromKeys, fromScan := restored(true), restored(false)
			want := h.stored()
			slices.SortFunc(want, cmpWindowKey)
			if len(want) < 50 {
				t.Fatalf("only %d windows open at the restore: the test checks little", len(want))
			}
			if got := fromKeys.openWindows(); !slices.Equal(got, want) {
				t.Fatalf("index from the recorded keys: %d windows, the store holds %d", len(got), len(want))
			}
			if got := fromScan.openWindows(); !slices.Equal(got, want) {
				t.Fatalf("index from a scan: %d windows, the store holds %d", len(got), len(want))
			}
			for _, r := range []*harness{fromKeys, fromScan} {
				if err := r.record(map[string]any{"k": "last", "v": 1.0}, ts+3_600_000); err != nil {
					t.Fatal(err)
				}

			}
			if len(fromKeys.emitted) != len(want) || len(fromScan.emitted) != len(fromKeys.emitted) {
				t.Fatalf("closed %d windows from the recorded keys, %d from a scan, of %d open", len(fromKeys.emitted), len(fromScan.emitted), len(want))
			}
			for i, r := range fromKeys.emitted {
				s := fromScan.emitted[i]
				if r.Window != s.Window || !slices.Equal(r.Row.AppendBinary(nil), s.Row.AppendBinary(nil)) {
					t.Fatalf("result %d: %v from the recorded keys, %v from a scan", i, r.Window, s.Window)
				}
			}
		})
	}
}
