package processor

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/hamba/avro/v2"

	"github.com/eddy-streams/eddy/schema"
	"github.com/eddy-streams/eddy/state"
	"github.com/eddy-streams/eddy/topology"
)

func topKPipeline(t *testing.T, format string) *pipeline {
	t.Helper()
	spec, err := topology.Parse([]byte(`app: a
source: {topics: [in]}
key: [endpoint]
window: {type: tumbling, size: 10s}
aggregates:
  - {name: requests, op: count}
  - {name: top_agents, op: top_k, k: 2, field: agent}
output: {topic: out, format: ` + format + `}
`))
	if err != nil {
		t.Fatal(err)
	}
	p, err := newPipeline(spec)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// topKResult is a result whose top_agents saw agents (as given) and
// whose requests counted them.
func topKResult(p *pipeline, agents ...string) result {
	row := state.NewRow(p.aggSpecs)
	for _, a := range agents {
		row.Add(0, 1)
		row.AddString(1, a)
	}
	return result{Window: state.WindowKey{Key: `["/pay"]`, Start: 10_000, End: 20_000}, Row: row}
}

// TestTopKResultJSON: a top_k result is a JSON list of {count, value},
// most frequent first (ties by value), at most k long, empty when the
// window saw no value; the append encoder writes the same bytes as
// encoding/json over the result map.
func TestTopKResultJSON(t *testing.T) {
	p := topKPipeline(t, "json")
	for _, c := range []struct {
		agents []string
		want   string
	}{
		{[]string{"curl", "go", "curl", "wget", "go", "curl", "\"q\""}, `[{"count":3,"value":"curl"},{"count":2,"value":"go"}]`},
		{[]string{"b", "a"}, `[{"count":1,"value":"a"},{"count":1,"value":"b"}]`},
		{nil, `[]`},
	} {
		r := topKResult(p, c.agents...)
		fast, ok, err := p.resEnc.encode(r)
		if !ok || err != nil {
			t.Fatalf("encode: ok %v, %v", ok, err)
		}
		slow, err := p.encodeResultMap(r)
		if err != nil {
			t.Fatal(err)
		}
		if string(fast) != string(slow) {
			t.Fatalf("append encoder %s\nencoding/json   %s", fast, slow)
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(fast, &m); err != nil {
			t.Fatal(err)
		}
		if got := string(m["top_agents"]); got != c.want {
			t.Errorf("%v: top_agents %s, want %s", c.agents, got, c.want)
		}
	}
}

// TestTopKResultAvro: with output.format avro, a top_k aggregate is an
// array of records {value: string, count: long} in the derived schema,
// and a result decodes back to the same list with the schema alone.
func TestTopKResultAvro(t *testing.T) {
	p := topKPipeline(t, "avro")
	text, err := OutputSchema(p.spec, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"name":"top_agents","type":{"type":"array","items":{"type":"record","name":"top_agents_entry"`,
		`{"name":"value","type":"string"}`, `{"name":"count","type":"long"`, `"default":[]`} {
		if !strings.Contains(text, want) {
			t.Errorf("schema lacks %s:\n%s", want, text)
		}
	}
	parsed, err := schema.ParseSchema(text)
	if err != nil {
		t.Fatal(err)
	}
	if p.enc, err = schema.NewEncoderFor(&schema.Schema{ID: 9, Text: text, Avro: parsed}); err != nil {
		t.Fatal(err)
	}
	for _, agents := range [][]string{{"curl", "go", "curl", "wget", "go", "curl"}, nil} {
		b, err := p.encodeResult(topKResult(p, agents...))
		if err != nil {
			t.Fatal(err)
		}
		var got map[string]any
		if err := avro.Unmarshal(parsed, b[5:], &got); err != nil {
			t.Fatal(err)
		}
		// The reference: count in plain loops, sort, keep two.
		counts := map[string]int{}
		for _, a := range agents {
			counts[a]++
		}
		var want []string
		for len(want) < 2 && len(counts) > 0 {
			best := ""
			for a, n := range counts {
				if best == "" || n > counts[best] || n == counts[best] && a < best {
					best = a
				}
			}
			want = append(want, fmt.Sprintf("%s=%d", best, counts[best]))
			delete(counts, best)
		}
		var have []string
		for _, e := range got["top_agents"].([]any) {
			m := e.(map[string]any)
			have = append(have, fmt.Sprintf("%s=%d", m["value"], m["count"]))
		}
		if fmt.Sprint(have) != fmt.Sprint(want) {
			t.Errorf("%v: decoded %v, want %v", agents, have, want)
		}
	}
}

// TestTopKCapacityMatchesState: describe's capacity rule (topology) is the
// sketch's (state).
func TestTopKCapacityMatchesState(t *testing.T) {
	for k := 1; k <= topology.MaxTopK; k++ {
		if a, b := topology.TopKCapacity(k), state.TopKCapacity(k); a != b {
			t.Fatalf("k %d: topology says %d counters, state keeps %d", k, a, b)
		}
	}
}
