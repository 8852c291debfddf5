package processor

import (
	"context"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eddy-streams/eddy/internal/kafkatest"
	"github.com/eddy-streams/eddy/state"
	"github.com/eddy-streams/eddy/topology"
)

// restoredBehind: a committed offset past the restored position is
// "behind" only when a committed data record lies between them, not when
// only transaction markers or aborted records do, and never when the
// restored state names no position (after eddy reset).
func TestRestoredBehind(t *testing.T) {
	brokers := kafkatest.Kfake(t)
	kafkatest.CreateTopic(t, brokers, "in", 1)
	ctx := context.Background()
	txn := kafkatest.Client(t, brokers, kgo.TransactionalID("producer"), kgo.DefaultProduceTopic("in"))
	// offsets returns the offsets of the records of one transaction.
	write := func(commit kgo.TransactionEndTry, values ...string) []int64 {
		t.Helper()
		if err := txn.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		var offs []int64
		for _, v := range values {
			r, err := txn.ProduceSync(ctx, &kgo.Record{Value: []byte(v)}).First()
			if err != nil {
				t.Fatal(err)
			}
			offs = append(offs, r.Offset)
		}
		if err := txn.EndTransaction(ctx, commit); err != nil {
			t.Fatal(err)
		}
		return offs
	}
	first := write(kgo.TryCommit, "a", "b", "c") // then a commit marker
	second := write(kgo.TryCommit, "d")          // then a commit marker
	aborted := write(kgo.TryAbort, "x")          // then an abort marker
	end := aborted[0] + 2

	spec, err := topology.Parse([]byte(`app: a
source: {topics: [in], keyed_by_group_key: true}
key: [k]
window: {type: tumbling, size: 10s}
aggregates:
  - {name: requests, op: count}
output: {topic: out}
`))
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(Config{Spec: spec, Brokers: brokers, StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	a.restorers = []*state.Restorer{state.NewRestorer(kafkatest.Client(t, brokers,
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords()))}

	applied := func(last int64) state.Checkpoint {
		return state.Checkpoint{InputNext: last + 1, Upstream: map[state.SourcePartition]int64{{Topic: "in", Partition: 0}: last}}
	}
	committedAt := func(at int64) kadm.OffsetResponses {
		return kadm.OffsetResponses{"in": {0: {Offset: kadm.Offset{Topic: "in", Partition: 0, At: at}}}}
	}
	cases := []struct {
		name      string
		cp        state.Checkpoint
		committed int64
		behind    bool
	}{
		{"at the committed offset", applied(first[2]), first[2] + 1, false},
		{"only a commit marker between", applied(first[2]), second[0], false},
		{"a committed record between", applied(first[2]), second[0] + 1, true},
		{"a marker, an aborted record and its marker between", applied(second[0]), end, false},
		{"committed below the restored position", applied(second[0]), first[0], false},
		{"no position restored (after a reset)", state.Checkpoint{}, end, false},
	}
	for _, c := range cases {
		why := a.restoredBehind(ctx, 0, c.cp, committedAt(c.committed))
		if (why != "") != c.behind {
			t.Errorf("%s: restoredBehind = %q, want behind=%v", c.name, why, c.behind)
		}
	}
}
