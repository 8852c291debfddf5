package groupkey

import (
	"encoding/json"
	"reflect"
	"slices"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Build writes what encoding/json writes for the array of values, and
// Parts and SplitJSON read it back.
func TestRoundTrip(t *testing.T) {
	fields := map[string]any{"svc": "check<out>", "ep": "/pay\"x", "n": 42.0, "ok": true, "u": "é"}
	keyFields := []string{"svc", "ep", "n", "ok", "u"}
	key, _, err := Build(fields, keyFields)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := json.Marshal([]string{"check<out>", "/pay\"x", "42", "true", "é"})
	if key != string(want) {
		t.Errorf("Build = %s, encoding/json writes %s", key, want)
	}
	parts, ok := Parts(key)
	if !ok || !slices.Equal(parts, []string{"check<out>", "/pay\"x", "42", "true", "é"}) {
		t.Errorf("Parts(%s) = %q, %v", key, parts, ok)
	}
	raw, ok := SplitJSON(key, nil)
	if !ok || len(raw) != len(keyFields) {
		t.Fatalf("SplitJSON(%s) = %q, %v", key, raw, ok)
	}
	for i, r := range raw {
		var s string
		if err := json.Unmarshal([]byte(r), &s); err != nil || s != parts[i] {
			t.Errorf("element %d: %s decodes to %q (%v), want %q", i, r, s, err, parts[i])
		}
	}
	if _, field, err := Build(map[string]any{"svc": "a"}, []string{"svc", "ep"}); err == nil || field != "ep" {
		t.Errorf("missing field: %q, %v; want ep and an error", field, err)
	}
}

func TestSplitJSON(t *testing.T) {
	for _, tc := range []struct {
		key  string
		want []string
		ok   bool
	}{
		{`["a"]`, []string{`"a"`}, true},
		{`["a","b\"c",""]`, []string{`"a"`, `"b\"c"`, `""`}, true},
		{`["a\\","b"]`, []string{`"a\\"`, `"b"`}, true},
		{`[]`, nil, true},
		{`["a",]`, nil, false},
		{`["a"`, nil, false},
		{`[1]`, nil, false},
		{`["a""b"]`, nil, false},
	} {
		got, ok := SplitJSON(tc.key, nil)
		if ok != tc.ok || (ok && !reflect.DeepEqual(got, tc.want)) {
			t.Errorf("SplitJSON(%s) = %q, %v; want %q, %v", tc.key, got, ok, tc.want, tc.ok)
		}
	}
}
