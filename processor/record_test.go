package processor

import (
	"errors"
	"math"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eddy-streams/eddy/topology"
)

// TestEventTimeEdges: every value that is not a time a Kafka timestamp can
// hold is an error (dead-lettered with class event_time by prepareFields),
// and the bounds themselves are accepted.
func TestEventTimeEdges(t *testing.T) {
	const maxMS = 253402300799999 // 9999-12-31T23:59:59.999Z, computed by hand
	if got := time.Date(9999, 12, 31, 23, 59, 59, 999e6, time.UTC).UnixMilli(); got != maxMS {
		t.Fatalf("test constant: %d != %d", got, maxMS)
	}
	cases := []struct {
		name    string
		v       any
		want    int64
		bad     bool
		inRange bool // the error is errEventTimeRange
	}{
		{name: "ms", v: 1700000000123.0, want: 1700000000123},
		{name: "fraction truncated", v: 1700000000123.9, want: 1700000000123},
		{name: "zero", v: 0.0, want: 0},
		{name: "max", v: float64(maxMS), want: maxMS},
		{name: "max fraction", v: float64(maxMS) + 0.5, want: maxMS},
		{name: "above max", v: float64(maxMS) + 1, bad: true, inRange: true},
		{name: "1e300", v: 1e300, bad: true, inRange: true},
		{name: "-1e300", v: -1e300, bad: true, inRange: true},
		{name: "max float", v: math.MaxFloat64, bad: true, inRange: true},
		{name: "2^63", v: math.Pow(2, 63), bad: true, inRange: true},
		{name: "negative", v: -1.0, bad: true, inRange: true},
		{name: "tiny negative", v: -0.5, bad: true, inRange: true},
		{name: "NaN", v: math.NaN(), bad: true},
		{name: "+Inf", v: math.Inf(1), bad: true},
		{name: "-Inf", v: math.Inf(-1), bad: true},
		{name: "float32", v: float32(1024), want: 1024},
		{name: "int64", v: int64(1700000000123), want: 1700000000123},
		{name: "int64 max", v: int64(math.MaxInt64), bad: true, inRange: true},
		{name: "int64 min", v: int64(math.MinInt64), bad: true, inRange: true},
		{name: "int64 -1", v: int64(-1), bad: true, inRange: true},
		{name: "int32", v: int32(5), want: 5},
		{name: "int", v: 7, want: 7},
		{name: "rfc3339", v: "2024-05-01T10:00:00.250Z", want: 1714557600250},
		{name: "rfc3339 offset", v: "2024-05-01T12:00:00.250+02:00", want: 1714557600250},
		{name: "rfc3339 epoch", v: "1970-01-01T00:00:00Z", want: 0},
		{name: "rfc3339 before 1970", v: "1969-12-31T23:59:59.999Z", bad: true, inRange: true},
		{name: "rfc3339 year 1", v: "0001-01-01T00:00:00Z", bad: true, inRange: true},
		{name: "rfc3339 9999", v: "9999-12-31T23:59:59.999Z", want: maxMS},
		{name: "rfc3339 9999 offset past max", v: "9999-12-31T23:59:59.999-01:00", bad: true, inRange: true},
		{name: "not a time", v: "yesterday", bad: true},
		{name: "numeric string", v: "1700000000000", bad: true},
		{name: "time.Time", v: time.UnixMilli(42).UTC(), want: 42},
		{name: "time.Time before 1970", v: time.UnixMilli(-42).UTC(), bad: true, inRange: true},
		{name: "bool", v: true, bad: true},
		{name: "nil", v: nil, bad: true},
	}
	for _, c := range cases {
		got, err := eventTime(map[string]any{"ts": c.v}, "ts", &kgo.Record{})
		switch {
		case c.bad && err == nil:
			t.Errorf("%s: eventTime(%v) = %d, want an error", c.name, c.v, got)
		case !c.bad && err != nil:
			t.Errorf("%s: eventTime(%v): %v, want %d", c.name, c.v, err, c.want)
		case !c.bad && got != c.want:
			t.Errorf("%s: eventTime(%v) = %d, want %d", c.name, c.v, got, c.want)
		case c.inRange && !errors.Is(err, errEventTimeRange):
			t.Errorf("%s: eventTime(%v): %v, want a range error", c.name, c.v, err)
		}
	}
	if _, err := eventTime(map[string]any{}, "ts", &kgo.Record{}); err == nil {
		t.Errorf("missing field: no error")
	}
	// From the record timestamp: the same range.
	for _, c := range []struct {
		ts  time.Time
		bad bool
	}{{time.UnixMilli(1700000000123), false}, {time.UnixMilli(-1), true}, {time.UnixMilli(maxMS + 1), true}} {
		_, err := eventTime(nil, "", &kgo.Record{Timestamp: c.ts})
		if (err != nil) != c.bad {
			t.Errorf("record timestamp %d: err = %v, want error %v", c.ts.UnixMilli(), err, c.bad)
		}
	}
}

// TestBadEventTimeClass: a record whose event time overflows is dead-
// lettered with class event_time (it was read as 1970 and sent to the late
// topic), and one in range but far ahead is future_timestamp.
func TestBadEventTimeClass(t *testing.T) {
	spec, err := topology.Parse([]byte(`app: t
source: {topics: [in]}
time: {field: ts}
key: [k]
window: {type: tumbling, size: 1m}
aggregates:
  - {name: requests, op: count}
output: {topic: out}
`))
	if err != nil {
		t.Fatal(err)
	}
	p, err := newPipeline(spec)
	if err != nil {
		t.Fatal(err)
	}
	now := time.UnixMilli(1_700_000_000_000)
	for _, c := range []struct {
		ts    any
		class error
	}{
		{1e300, ErrEventTime}, {math.NaN(), ErrEventTime}, {math.Inf(-1), ErrEventTime}, {-1e300, ErrEventTime},
		{-5.0, ErrEventTime}, {"10000-01-01T00:00:00Z", ErrEventTime}, {"1969-07-20T20:17:00Z", ErrEventTime},
		{float64(maxEventTime), ErrFutureTimestamp},
		{1_700_000_000_000.0, nil},
	} {
		_, re := p.prepareFields(map[string]any{"ts": c.ts, "k": "a"}, &kgo.Record{}, now)
		switch {
		case c.class == nil && re != nil:
			t.Errorf("ts %v: %v, want no error", c.ts, re)
		case c.class != nil && (re == nil || !errors.Is(re, c.class)):
			t.Errorf("ts %v: %v, want class %v", c.ts, re, c.class)
		}
	}
}
