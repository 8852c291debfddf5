package processor

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eddy-streams/eddy/topology"
)

// TestAggDecodeCarriesNothingOver: the aggregation task decodes every
// record into one reused map. A record without the key field that follows
// one with it must be a missing_key_field dead letter, not counted under
// the previous record's key; counts per window equal the test's own count
// of the records that have the key.
func TestAggDecodeCarriesNothingOver(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "in"))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	brokers := cluster.ListenAddrs()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	const n, window = 300, int64(10_000)
	base := int64(1_700_000_000_000)
	want := map[string]int{}
	withoutKey := 0
	pcl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic("in"))
	if err != nil {
		t.Fatal(err)
	}
	produce := func(m map[string]any) {
		v, _ := json.Marshal(m)
		if err := pcl.ProduceSync(ctx, &kgo.Record{Key: []byte(`["u1"]`), Value: v}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		ts := base + int64(i)*100
		m := map[string]any{"ts": ts}
		if i%3 != 1 { // every third record, after one with a user, has none
			m["user"] = "u1"
			want[fmt.Sprintf("u1@%d", ts-ts%window)]++
		} else {
			withoutKey++
		}
		produce(m)
	}
	produce(map[string]any{"ts": base + int64(n)*100 + 60_000, "user": "u1"}) // closes every window above
	pcl.Close()

	spec, err := topology.Parse([]byte(`app: reuse
source: {topics: [in], keyed_by_group_key: true}
time: {field: ts}
key: [user]
window: {type: tumbling, size: 10s, grace: 0s}
aggregates: [{name: requests, op: count}]
output: {topic: out}
commit_interval: 200ms
idle_timeout: 24h
`))
	if err != nil {
		t.Fatal(err)
	}
	app, err := New(Config{Spec: spec, Brokers: brokers, StateDir: t.TempDir(), Parallelism: 1,
		SessionTimeout: 6 * time.Second, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("app: %v", err)
		}
	}()

	ccl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics("out", "reuse-dlq"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer ccl.Close()
	got, dead := map[string]int{}, 0
	deadline := time.Now().Add(60 * time.Second)
	for len(got) < len(want) || dead < withoutKey {
		if time.Now().After(deadline) {
			t.Fatalf("after 60s: %d of %d results, %d of %d dead letters", len(got), len(want), dead, withoutKey)
		}
		pctx, pcancel := context.WithTimeout(ctx, 500*time.Millisecond)
		fs := ccl.PollFetches(pctx)
		pcancel()
		fs.EachRecord(func(r *kgo.Record) {
			if r.Topic == "reuse-dlq" {
				for _, h := range r.Headers {
					if h.Key == "eddy.error.class" && string(h.Value) != "missing_key_field" {
						t.Errorf("dead letter of class %s: %s", h.Value, r.Value)
					}
				}
				dead++
				return
			}
			var v struct {
				User     string `json:"user"`
				Start    string `json:"window_start"`
				Requests int    `json:"requests"`
			}
			if err := json.Unmarshal(r.Value, &v); err != nil {
				t.Fatalf("result %s: %v", r.Value, err)
			}
			st, _ := time.Parse(time.RFC3339Nano, v.Start)
			got[fmt.Sprintf("%s@%d", v.User, st.UnixMilli())] = v.Requests
		})
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s: %d requests, want %d", k, got[k], w)
		}
	}
	if dead != withoutKey {
		t.Errorf("%d dead letters, want %d (the records without a user)", dead, withoutKey)
	}
}
