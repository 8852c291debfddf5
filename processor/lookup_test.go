package processor

import (
	"errors"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eddy-streams/eddy/topology"
)

// testTable opens a lookup table in a temporary directory, without Kafka:
// apply stands in for the loader.
func testTable(t *testing.T, l topology.Lookup) (*lookupTables, *lookupTable) {
	t.Helper()
	db, err := pebble.Open(filepath.Join(t.TempDir(), "t"), &pebble.Options{Logger: lookupLogger{}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	tb := &lookupTable{spec: l, db: db, cache: make(map[string]lookupEntry), cacheMax: lookupCacheEntries}
	return &lookupTables{tables: []*lookupTable{tb}}, tb
}

func tableRec(key, value string) *kgo.Record {
	r := &kgo.Record{Key: []byte(key)}
	if value != "" {
		r.Value = []byte(value)
	}
	return r
}

// TestLookupSemantics: a match sets the lookup's fields (null for those
// the entry lacks); a miss sets the defaults, numbers as JSON numbers, or
// dead-letters with class lookup_miss naming the join field; a missing
// or null join field is a miss; numbers are looked up as text; a
// tombstone deletes; a value that is not a JSON object is skipped; and an
// update is seen by the next lookup even when the key was cached.
func TestLookupSemantics(t *testing.T) {
	lt, tb := testTable(t, topology.Lookup{Name: "o", Topic: "t", On: "endpoint", Fields: []string{"team", "tier"},
		OnMiss: topology.OnMissDefault, Defaults: map[string]any{"team": "unowned", "tier": 3}})
	bad, err := tb.apply([]*kgo.Record{
		tableRec("/pay", `{"team":"payments","tier":1,"other":"x"}`),
		tableRec("/search", `{"team":"discovery"}`),
		tableRec("404", ` {"team":"errors"}`),
		tableRec("/old", `{"team":"old"}`),
		tableRec("/old", ""),
		tableRec("/bad", `"just a string"`),
	})
	if err != nil || bad != 1 {
		t.Fatalf("apply: %d bad, %v", bad, err)
	}
	look := func(v any, present bool) string {
		f := map[string]any{}
		if present {
			f["endpoint"] = v
		}
		if re := lt.lookup(0, f); re != nil {
			return "error: " + re.Error()
		}
		return fmt.Sprintf("%v/%v", f["team"], f["tier"])
	}
	for _, c := range []struct {
		v       any
		present bool
		want    string
	}{
		{"/pay", true, "payments/1"},
		{"/search", true, "discovery/<nil>"},
		{404.0, true, "errors/<nil>"}, // a JSON number, looked up as "404"
		{int64(404), true, "errors/<nil>"},
		{"/old", true, "unowned/3"},
		{"/bad", true, "unowned/3"},
		{"/nope", true, "unowned/3"},
		{nil, true, "unowned/3"},
		{nil, false, "unowned/3"},
	} {
		if got := look(c.v, c.present); got != c.want {
			t.Errorf("%v (present %v): %s, want %s", c.v, c.present, got, c.want)
		}
	}
	f := map[string]any{}
	lt.lookup(0, f)
	if _, ok := f["tier"].(float64); !ok {
		t.Errorf("default tier is %T, want a float64 like a JSON number", f["tier"])
	}

	// Updates after a cached lookup (hit and miss) are seen.
	if _, err := tb.apply([]*kgo.Record{tableRec("/pay", `{"team":"checkout"}`), tableRec("/nope", `{"team":"found"}`), tableRec("/search", "")}); err != nil {
		t.Fatal(err)
	}
	for v, want := range map[string]string{"/pay": "checkout/<nil>", "/nope": "found/<nil>", "/search": "unowned/3"} {
		if got := look(v, true); got != want {
			t.Errorf("after the update, %s: %s, want %s", v, got, want)
		}
	}

	// on_miss dead_letter.
	lt.tables[0].spec.OnMiss = topology.OnMissDeadLetter
	re := lt.lookup(0, map[string]any{"endpoint": "/zzz"})
	if re == nil || !errors.Is(re.Class, ErrLookupMiss) || re.Field != "endpoint" {
		t.Fatalf("dead-letter miss: %v", re)
	}
}

// TestLookupCacheBounded: the cache of decoded entries stays within its
// bound, and every lookup still gives the stored value.
func TestLookupCacheBounded(t *testing.T) {
	lt, tb := testTable(t, topology.Lookup{Name: "o", Topic: "t", On: "k", Fields: []string{"v"}, OnMiss: topology.OnMissDefault})
	tb.cacheMax = 100
	n := 3 * tb.cacheMax
	recs := make([]*kgo.Record, 0, n)
	for i := 0; i < n; i++ {
		recs = append(recs, tableRec(fmt.Sprint(i), fmt.Sprintf(`{"v":%d}`, i)))
	}
	if _, err := tb.apply(recs); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		f := map[string]any{"k": fmt.Sprint(i)}
		if re := lt.lookup(0, f); re != nil || f["v"] != float64(i) {
			t.Fatalf("key %d: %v %v", i, f["v"], re)
		}
	}
	if len(tb.cache) > tb.cacheMax {
		t.Fatalf("cache holds %d entries, bound %d", len(tb.cache), tb.cacheMax)
	}
}
