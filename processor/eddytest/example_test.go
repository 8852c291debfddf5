package eddytest_test

import (
	"fmt"
	"time"

	"github.com/eddy-streams/eddy/processor/eddytest"
	"github.com/eddy-streams/eddy/topology"
)

// A pipeline driven step by step: records in, the wall clock moved, the
// results and alerts out.
func Example() {
	spec, err := topology.Parse([]byte(`
app: checkout-errors
source: {topics: [requests]}
time: {field: ts}
key: [endpoint]
window: {type: tumbling, size: 1m, grace: 10s}
aggregates:
  - {name: requests, op: count}
  - {name: errors, op: count, where: 'status >= 500'}
output: {topic: errors-1m}
idle_timeout: 30s
alerts:
  rules:
    - {name: silent, kind: absence, for: 2m, summary: '{{.endpoint}}: {{.reason}}'}
`))
	if err != nil {
		panic(err)
	}
	d, err := eddytest.New(spec) // the wall clock starts at eddytest.DefaultStart
	if err != nil {
		panic(err)
	}
	defer d.Close()
	t0 := d.Now()
	req := func(endpoint string, status int, at time.Duration) eddytest.Record {
		return eddytest.Record{Value: eddytest.JSON(map[string]any{
			"endpoint": endpoint, "status": status, "ts": t0.Add(at).UnixMilli()})}
	}
	if err := d.Pipe(req("/pay", 200, 5*time.Second), req("/pay", 503, 20*time.Second), req("/cart", 200, 30*time.Second)); err != nil {
		panic(err)
	}
	// Nothing more arrives: after the idle timeout stream time follows the
	// wall clock, the minute closes, and the absence alerts fire: /pay's
	// first (its last request is the older).
	if err := d.AdvanceWallClock(3 * time.Minute); err != nil {
		panic(err)
	}
	for _, r := range d.Results() {
		fmt.Printf("%s %s: %v requests, %v errors\n", r.Key["endpoint"], r.WindowStart.Format("15:04"), *r.Values["requests"], *r.Values["errors"])
	}
	for _, a := range d.Alerts() {
		fmt.Printf("%s %s %s\n", a.Rule, a.State, a.Key["endpoint"])
	}
	// Output:
	// /cart 00:00: 1 requests, 0 errors
	// /pay 00:00: 2 requests, 1 errors
	// silent firing /pay
	// silent firing /cart
}
