package processor_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eddy-streams/eddy/processor"
	"github.com/eddy-streams/eddy/topology"
)

// Example runs a pipeline from Go: parse a spec, make an App, run it until
// its context ends. Here on kfake, an in-process Kafka; with a real
// cluster, Brokers is its bootstrap list.
func Example() {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "requests"))
	if err != nil {
		panic(err)
	}
	defer cluster.Close()

	spec, err := topology.Parse([]byte(`
app: example
source: {topics: [requests]}
time: {field: ts}
key: [endpoint]
window: {type: tumbling, size: 10s, grace: 0s}
aggregates:
  - {name: requests, op: count}
  - {name: errors, op: count, where: "status >= 500"}
output: {topic: requests-per-10s}
`))
	if err != nil {
		panic(err) // the errors name each bad key, with its line
	}
	dir, err := os.MkdirTemp("", "eddy-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	app, err := processor.New(processor.Config{
		Spec:     spec,
		Brokers:  cluster.ListenAddrs(),
		StateDir: dir,
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx) }()

	// Three requests in the window [00:00:00, 00:00:10), then one at
	// 00:00:10 that moves stream time past its end: the window closes.
	cl, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...),
		kgo.ConsumeTopics("requests-per-10s"), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		panic(err)
	}
	defer cl.Close()
	for _, v := range []string{
		`{"ts": 1000, "endpoint": "/pay", "status": 200}`,
		`{"ts": 4000, "endpoint": "/pay", "status": 503}`,
		`{"ts": 9999, "endpoint": "/pay", "status": 200}`,
		`{"ts": 10000, "endpoint": "/pay", "status": 200}`,
	} {
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "requests", Value: []byte(v)}).FirstErr(); err != nil {
			panic(err)
		}
	}
	pctx, pcancel := context.WithTimeout(ctx, 30*time.Second)
	defer pcancel()
	fs := cl.PollRecords(pctx, 1)
	fs.EachRecord(func(r *kgo.Record) { fmt.Println(string(r.Value)) })
	fmt.Println("ready:", app.Ready())

	cancel() // soft shutdown: a last commit, then Run returns
	if err := <-done; err != nil && err != context.Canceled {
		panic(err)
	}
	// Output:
	// {"endpoint":"/pay","errors":1,"key":{"endpoint":"/pay"},"requests":3,"window_end":"1970-01-01T00:00:10.000Z","window_start":"1970-01-01T00:00:00.000Z"}
	// ready: true
}
