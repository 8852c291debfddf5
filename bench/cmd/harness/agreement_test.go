package main

import (
	"os"
	"testing"

	"github.com/hamba/avro/v2"
	"go.uber.org/goleak"

	"github.com/eddy-streams/eddy/topology"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestEddySpec checks that every mode's pipeline parses, and that the p99
// mode adds the p99 of latency_ms to the count.
func TestEddySpec(t *testing.T) {
	for _, mode := range []string{"count", "filter", "latency", "p99"} {
		pl := pipeline{mode: mode, windowMs: 10_000, graceMs: 5_000, commitMs: 1000, guarantee: "at_least_once"}
		spec, err := topology.Parse([]byte(eddySpec(pl, "b-test", "in-u100k", "b-test-out")))
		if err != nil {
			t.Fatalf("%s: %v", mode, err)
		}
		want := 1
		if mode == "latency" || mode == "p99" {
			want = 2
		}
		if len(spec.Aggregates) != want {
			t.Fatalf("%s: %d aggregates, want %d", mode, len(spec.Aggregates), want)
		}
		if mode == "p99" {
			a := spec.Aggregates[1]
			if a.Name != "p99_latency_ms" || a.Quantile != 0.99 || a.Field != "latency_ms" {
				t.Fatalf("p99 aggregate: %+v", a)
			}
			if spec.Emit != "close" {
				t.Fatalf("p99 emits on %q, want close", spec.Emit)
			}
		}
	}
}

// TestCompareSamples feeds results as each system writes them (eddy: the
// key field as a string, window bounds with milliseconds; Kafka Streams:
// the grouping key as an array, bounds without them).
func TestCompareSamples(t *testing.T) {
	eddy, ks := resultSample{}, resultSample{}
	add := func(s resultSample, key, value string) {
		t.Helper()
		if err := s.add([]byte(key), []byte(value)); err != nil {
			t.Fatal(err)
		}
	}
	k1, k2, k3 := `["k-0000001"]`, `["k-0000002"]`, `["k-0000003"]`
	add(eddy, k1, `{"key":"k-0000001","window_start":"2026-11-26T14:20:10.000Z","window_end":"2026-11-26T14:20:20.000Z","requests":1,"p99_latency_ms":123.45}`)
	add(ks, k1, `{"key":["k-0000001"],"window_start":"2026-11-26T14:20:10Z","window_end":"2026-11-26T14:20:20Z","requests":1,"p99_latency_ms":123.45}`)
	// Within 2%: agrees.
	add(eddy, k2, `{"key":"k-0000002","window_start":"2026-11-26T14:20:10.000Z","requests":3,"p99_latency_ms":100}`)
	add(ks, k2, `{"key":["k-0000002"],"window_start":"2026-11-26T14:20:10Z","requests":3,"p99_latency_ms":101.5}`)
	// Beyond 2%, and a count mismatch in the next window.
	add(eddy, k3, `{"key":"k-0000003","window_start":"2026-11-26T14:20:10.000Z","requests":2,"p99_latency_ms":100}`)
	add(ks, k3, `{"key":["k-0000003"],"window_start":"2026-11-26T14:20:10Z","requests":2,"p99_latency_ms":103}`)
	add(eddy, k3, `{"key":"k-0000003","window_start":"2026-11-26T14:20:20.000Z","requests":2,"p99_latency_ms":1E-4}`)
	add(ks, k3, `{"key":["k-0000003"],"window_start":"2026-11-26T14:20:20Z","requests":1,"p99_latency_ms":1.0E-4}`)
	// A window only eddy emitted.
	add(eddy, k1, `{"key":"k-0000001","window_start":"2026-11-26T14:20:30.000Z","requests":1,"p99_latency_ms":5}`)

	a := compareSamples("p99-u100k", 1, eddy, ks, nil)
	if a.Compared != 4 || a.OnlyEddy != 1 || a.OnlyKS != 0 {
		t.Fatalf("compared %d, only eddy %d, only KS %d; want 4, 1, 0", a.Compared, a.OnlyEddy, a.OnlyKS)
	}
	if a.CountBad != 1 || a.P99Compared != 4 || a.P99Multi != 2 || a.P99Equal != 2 || a.P99Bad != 1 {
		t.Fatalf("got %+v", a)
	}
	if a.ok() || len(a.Mismatches) != 2 {
		t.Fatalf("want two mismatches, got %q", a.Mismatches)
	}
	if d := 3.0 / 103; a.P99MaxRel != d {
		t.Fatalf("max relative difference %v, want %v", a.P99MaxRel, d)
	}
}

// TestCompareSamplesCount: results without a p99 compare counts only.
func TestCompareSamplesCount(t *testing.T) {
	eddy, ks := resultSample{}, resultSample{}
	k := `["k-0000001"]`
	if err := eddy.add([]byte(k), []byte(`{"window_start":"2026-11-26T14:20:10.000Z","requests":4}`)); err != nil {
		t.Fatal(err)
	}
	if err := ks.add([]byte(k), []byte(`{"window_start":"2026-11-26T14:20:10Z","requests":4}`)); err != nil {
		t.Fatal(err)
	}
	if a := compareSamples("count-u100k", 1, eddy, ks, nil); !a.ok() || a.Compared != 1 || a.P99Compared != 0 {
		t.Fatalf("got %+v", a)
	}
}

// TestExactSample: the exact results from the generated records, and the
// comparison of each system with them.
func TestExactSample(t *testing.T) {
	k := `["k-0000001"]`
	w0 := int64(1_790_000_000_000) // a multiple of 10 s
	var evs []sampledEvent
	// 101 values 1..101 in the first window: rank ⌊0.99·100⌋ = 99, the value 100.
	for i := 0; i < 101; i++ {
		evs = append(evs, sampledEvent{key: k, ts: w0 + int64(i), latency: float64(101 - i)})
	}
	evs = append(evs, sampledEvent{key: k, ts: w0 + 10_000, latency: 7})
	exact := exactSample(evs, 10_000, "p99")
	if x := exact[sampleKey{k, w0}]; x.count != 101 || x.p99 != 100 {
		t.Fatalf("first window: %+v, want count 101, p99 100", x)
	}
	if x := exact[sampleKey{k, w0 + 10_000}]; x.count != 1 || x.p99 != 7 {
		t.Fatalf("second window: %+v, want count 1, p99 7", x)
	}
	if exactSample(evs, 10_000, "filter") != nil {
		t.Fatal("filter has no exact results")
	}
	if x := exactSample(evs, 10_000, "count")[sampleKey{k, w0}]; x.hasP99 || x.count != 101 {
		t.Fatalf("count mode: %+v", x)
	}

	eddy := resultSample{{k, w0}: {count: 101, p99: 100.9, hasP99: true}, {k, w0 + 10_000}: {count: 1, p99: 7, hasP99: true}}
	ks := resultSample{{k, w0}: {count: 101, p99: 101.5, hasP99: true}, {k, w0 + 10_000}: {count: 1, p99: 7, hasP99: true}}
	a := compareSamples("p99-u100k", 1, eddy, ks, exact)
	if a.ExactCompared != 2 || a.EddyOff != 0 || a.KSOff != 1 || a.P99Bad != 0 || a.ok() {
		t.Fatalf("got %+v", a)
	}
	if a.EddyMaxErr != relErr(100.9, 100) || a.KSMaxErr != relErr(101.5, 100) {
		t.Fatalf("max errors %v, %v", a.EddyMaxErr, a.KSMaxErr)
	}
}

// TestMergeDir: the jar cache only gains files.
func TestMergeDir(t *testing.T) {
	dir := t.TempDir()
	src, dst := dir+"/libs.tmp", dir+"/libs"
	for _, d := range []string{src, dst} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(f, s string) {
		if err := os.WriteFile(f, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(src+"/a.jar", "new a")
	write(src+"/b.jar", "new b")
	write(dst+"/a.jar", "old a")
	if err := mergeDir(src, dst); err != nil {
		t.Fatal(err)
	}
	for f, want := range map[string]string{"a.jar": "old a", "b.jar": "new b"} {
		if b, err := os.ReadFile(dst + "/" + f); err != nil || string(b) != want {
			t.Fatalf("%s: %q, %v; want %q", f, b, err, want)
		}
	}
	if _, err := os.Stat(src); !os.IsNotExist(err) {
		t.Fatalf("%s still there: %v", src, err)
	}
}

// eventTime reads ts back from an event in the Confluent wire format, as
// the pass-through baseline does, for times before and after 1970.
func TestEventTime(t *testing.T) {
	s := avro.MustParse(eventSchema)
	for _, ts := range []int64{0, 1, -1, 1_764_158_400_123, -62_135_596_800_000} {
		body, err := avro.Marshal(s, map[string]any{"ts": ts, "key": "k", "service": "", "endpoint": "", "status": 0,
			"latency_ms": 0.0, "region": "", "user_agent": "", "tags": []string{}, "request_id": ""})
		if err != nil {
			t.Fatal(err)
		}
		got, ok := eventTime(append([]byte{0, 0, 0, 0, 7}, body...))
		if !ok || got != ts {
			t.Errorf("eventTime of ts %d = %d, %v", ts, got, ok)
		}
	}
	if _, ok := eventTime([]byte{1, 0, 0, 0, 7, 2}); ok {
		t.Error("eventTime accepted a value without the magic byte")
	}
}
