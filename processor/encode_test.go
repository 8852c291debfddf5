package processor

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/eddy-streams/eddy/state"
	"github.com/eddy-streams/eddy/topology"
)

// TestResultEncoderMatchesJSON: the append encoder writes the same bytes
// as encoding/json over the result map (encodeResultMap), for keys with
// characters JSON escapes, key fields and aggregates sorting around "key"
// and "window_*", empty aggregates (null) and floats of every magnitude.
func TestResultEncoderMatchesJSON(t *testing.T) {
	spec, err := topology.Parse([]byte(`app: a
source: {topics: [in]}
key: [zz, endpoint, aa]
window: {type: tumbling, size: 10s}
aggregates:
  - {name: requests, op: count}
  - {name: b_sum, op: sum, field: v}
  - {name: x_p99, op: p99, field: v}
  - {name: mean, op: mean, field: w}
  - {name: lo, op: min, field: v}
  - {name: users, op: distinct, field: u}
output: {topic: out}
`))
	if err != nil {
		t.Fatal(err)
	}
	p, err := newPipeline(spec)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(3, 4))
	alphabet := []string{"a", "Z", "0", " ", "/", "-", "\"", "\\", "<", ">", "&", "\n", "\t", "\x01", "\x7f", "é", "日本", "\u2028", "\u2029", "😀", "\xff", "'"}
	str := func() string {
		var b strings.Builder
		for range r.IntN(8) {
			b.WriteString(alphabet[r.IntN(len(alphabet))])
		}
		return b.String()
	}
	floats := []float64{0, 1, -1, 0.5, 1e-7, -1e-7, 1e-6, 123456789.123, 1e20, 1e21, 1e300, 5e-324, 3.14159, -2.5e-9, 42}
	for i := range 5000 {
		fields := map[string]any{"zz": str(), "endpoint": str(), "aa": str()}
		key, _, err := groupKey(fields, spec.Key)
		if err != nil {
			t.Fatal(err)
		}
		ref, _ := json.Marshal([]string{fields["zz"].(string), fields["endpoint"].(string), fields["aa"].(string)})
		if key != string(ref) {
			t.Fatalf("groupKey %q, encoding/json %q", key, ref)
		}
		row := state.NewRow(p.aggSpecs)
		for range r.IntN(4) { // 0 values: every aggregate but count is null
			row.Add(0, 1)
			row.Add(1, floats[r.IntN(len(floats))])
			row.Add(2, floats[r.IntN(len(floats))])
			row.Add(3, floats[r.IntN(len(floats))])
			row.Add(4, floats[r.IntN(len(floats))])
			row.AddString(5, str())
		}
		start := int64(r.IntN(1 << 40))
		res := result{Window: state.WindowKey{Key: key, Start: start, End: start + 10_000}, Row: row}
		got, ok, err := p.resEnc.encode(res)
		if !ok || err != nil {
			t.Fatalf("encode %s: ok=%v err=%v", key, ok, err)
		}
		want, err := p.encodeResultMap(res)
		if err != nil {
			t.Fatal(err)
		}
		if utf8.ValidString(key) && !strings.Contains(key, `\ufffd`) {
			if !bytes.Equal(got, want) {
				t.Fatalf("record %d:\n got %s\nwant %s", i, got, want)
			}
			continue
		}
		// A key part with invalid UTF-8 is written as \ufffd by groupKey;
		// encoding/json writes the decoded U+FFFD back as UTF-8: the
		// same JSON value, other bytes.
		var g, w any
		if err := json.Unmarshal(got, &g); err != nil {
			t.Fatalf("invalid JSON %s: %v", got, err)
		}
		_ = json.Unmarshal(want, &w)
		if !reflect.DeepEqual(g, w) {
			t.Fatalf("record %d:\n got %s\nwant %s", i, got, want)
		}
	}
}

func TestResultEncoderRejectsNonFinite(t *testing.T) {
	for _, f := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
		if _, err := appendJSONFloat(nil, f); err == nil {
			t.Errorf("%v encoded", f)
		}
	}
}
